"""Faces in photos: detection and crops, MODNet matting, SMIRK FLAME estimation, and cameras
derived from head rotations (paper sec. 4). Shared by prep-data, invert and reenact.

Images are RGB uint8 [H, W, 3]; real weights (SMIRK_em1.pt, MODNet ONNX) are user assets found
through `agora_core.assets` (`SmirkEstimator.from_asset`, `ModnetMatter.from_asset`).
"""

from agora_core.face.camera import (
    axis_angle_to_rotmat,
    camera_from_head_pose,
    head_pose_from_camera,
    rotmat_to_axis_angle,
)
from agora_core.face.crop import (
    CropTransform,
    crop_aligned_image,
    crop_dataset_image,
    crop_face,
    ffhq_aligned_box,
    is_ffhq_aligned,
)
from agora_core.face.detect import (
    Detection,
    FaceDetector,
    HaarDetector,
    MediapipeDetector,
    NoFaceError,
    default_detector,
    detect_largest_face,
)
from agora_core.face.matting import ModnetMatter, composite_on_white, modnet_input_size
from agora_core.face.pipeline import FaceAnalysis, analyse_face
from agora_core.face.smirk import SmirkEncoder, SmirkEstimator, load_smirk_encoder

__all__ = [
    "CropTransform",
    "Detection",
    "FaceAnalysis",
    "FaceDetector",
    "HaarDetector",
    "MediapipeDetector",
    "ModnetMatter",
    "NoFaceError",
    "SmirkEncoder",
    "SmirkEstimator",
    "analyse_face",
    "axis_angle_to_rotmat",
    "camera_from_head_pose",
    "composite_on_white",
    "crop_aligned_image",
    "crop_dataset_image",
    "crop_face",
    "default_detector",
    "detect_largest_face",
    "ffhq_aligned_box",
    "head_pose_from_camera",
    "is_ffhq_aligned",
    "load_smirk_encoder",
    "modnet_input_size",
    "rotmat_to_axis_angle",
]
