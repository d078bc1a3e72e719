"""One photo -> what prep-data, invert and reenact need: the dataset-framed image (matted onto
white), FLAME parameters from SMIRK, and the camera derived from the head rotation (paper sec. 4).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from agora_core.errors import file_error
from agora_core.face.camera import camera_from_head_pose
from agora_core.face.crop import (
    DATASET_CROP_SIZE,
    CropTransform,
    crop_aligned_image,
    crop_dataset_image,
    crop_face,
    ffhq_aligned_box,
)
from agora_core.face.detect import Detection, FaceDetector, check_rgb_image, detect_largest_face
from agora_core.face.matting import composite_on_white
from agora_core.render.cameras import FLAME_CAMERA_RADIUS, Camera

NUM_NECK, NUM_EYES = 3, 6  # FLAME neck and eye poses; SMIRK estimates neither (zeros)


class FlameEstimator(Protocol):
    """``estimate(crops uint8 [B, 224, 224, 3]) -> {shape, expression, eyelids, jaw, global_pose,
    cam}`` as [B, ...] float arrays (`SmirkEstimator`)."""

    def estimate(self, crops: np.ndarray) -> dict[str, np.ndarray]: ...


class Matter(Protocol):
    """``matter(image_rgb uint8 [H, W, 3]) -> matte float [H, W] in [0, 1]`` (`ModnetMatter`)."""

    def __call__(self, image_rgb: np.ndarray) -> np.ndarray: ...


@dataclass(frozen=True)
class FaceAnalysis:
    """Everything derived from one photo.

    image:        [S, S, 3] uint8 dataset-framed crop, composited on white when matted.
    matte:        [S, S] float32 in [0, 1], or None without a matter.
    flame:        FLAME parameters, float32, no batch dim: shape [300], expression [50], jaw [3],
                  eyelids [2], neck [3] (zeros), eyes [6] (zeros), global_pose [3] (the head
                  rotation the camera absorbs), cam [3] (SMIRK's weak perspective s, tx, ty).
    camera_label: [25] float32 EG3D label of `camera_from_head_pose(global_pose)`.
    crop_transform:       source-image pixels -> ``image`` pixels.
    smirk_crop_transform: source-image pixels -> the 224² SMIRK crop.
    detection:    the face found, or None for FFHQ-aligned input.
    """

    image: np.ndarray
    matte: np.ndarray | None
    flame: dict[str, np.ndarray]
    camera_label: np.ndarray
    crop_transform: CropTransform
    smirk_crop_transform: CropTransform
    detection: Detection | None

    @property
    def camera(self) -> Camera:
        """The camera as a batch-of-one `Camera`."""
        return Camera.from_label(torch.from_numpy(self.camera_label)[None])

    def flame_vector(self) -> np.ndarray:
        """[358] float32 in AGORA's dataset order: shape 300 | expression 50 | global pose 3 |
        jaw 3 | eyelids 2."""
        f = self.flame
        return np.concatenate([f["shape"], f["expression"], f["global_pose"], f["jaw"], f["eyelids"]])


def analyse_face(
    image_rgb: np.ndarray,
    *,
    detector: FaceDetector | None,
    matter: Matter | None,
    estimator: FlameEstimator,
    aligned: bool = False,
    size: int = DATASET_CROP_SIZE,
    source: str | Path | None = None,
    pivot: torch.Tensor | None = None,
    camera_radius: float = FLAME_CAMERA_RADIUS,
) -> FaceAnalysis:
    """Detect (unless ``aligned``), crop, matte, estimate FLAME and derive the camera.

    Args:
        image_rgb: [H, W, 3] uint8 photo (square when ``aligned``).
        detector: face detector; unused (may be None) when ``aligned``.
        matter: MODNet matter, or None to keep the background (matte None).
        estimator: SMIRK estimator (or anything with its ``estimate``).
        aligned: the photo is FFHQ-aligned: no detection, the whole image is the dataset crop and
            the SMIRK crop is taken where alignment puts the face.
        size: side of the dataset crop.
        source: the photo's file, named in errors (`NoFaceError`).
        pivot, camera_radius: see `camera_from_head_pose`.
    """
    check_rgb_image(image_rgb)
    detection, box = None, None
    if aligned:
        h, w = image_rgb.shape[:2]
        if h != w:
            raise file_error(source or "image", f"{w}x{h} px is not square, so not FFHQ-aligned; drop --aligned")
        image, crop_transform = crop_aligned_image(image_rgb, size)
        box = ffhq_aligned_box(h, w)
    else:
        assert detector is not None, "a detector is needed unless aligned=True"
        detection = detect_largest_face(image_rgb, detector, source)
        box = detection.box
        image, crop_transform = crop_dataset_image(image_rgb, box, size)

    matte = None
    if matter is not None:
        matte = matter(image).astype(np.float32)
        image = composite_on_white(image, matte)

    smirk_crop, smirk_transform = crop_face(image_rgb, box)
    params = estimator.estimate(smirk_crop[None])
    flame = _flame_dict(params)
    camera = camera_from_head_pose(torch.from_numpy(flame["global_pose"])[None].double(), pivot, radius=camera_radius)
    label = camera.to_label()[0].float().numpy()
    return FaceAnalysis(image, matte, flame, label, crop_transform, smirk_transform, detection)


def _flame_dict(params: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """SMIRK's batch-of-one outputs -> FaceAnalysis.flame (float32, no batch dim, + neck/eyes)."""
    keys = ("shape", "expression", "jaw", "eyelids", "global_pose", "cam")
    flame = {k: np.asarray(params[k], dtype=np.float32)[0] for k in keys}
    flame["neck"] = np.zeros(NUM_NECK, np.float32)
    flame["eyes"] = np.zeros(NUM_EYES, np.float32)
    return flame


__all__ = ["FaceAnalysis", "FlameEstimator", "Matter", "analyse_face"]
