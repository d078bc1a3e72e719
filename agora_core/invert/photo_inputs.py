"""Photos or video frames of one person -> an `InversionTarget`, through face/ (detect, crop,
matte with MODNet, estimate FLAME with SMIRK, camera from the head rotation; paper sec. 4.2)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from agora_core.errors import AgoraError, file_error
from agora_core.head import HeadModel
from agora_core.invert.targets import InversionTarget, flame_tensors, images_to_tensor, read_rgb
from agora_core.invert.video_io import is_video, select_sharp_frames

DEFAULT_VIDEO_FRAMES = 3  # few-shot PTI from a video (appendix 0.A.2.1 shows three frames)


@dataclass(frozen=True)
class FaceTools:
    """The face/ models an analysis runs with (built once per command)."""

    estimator: object  # SmirkEstimator (or anything with its `estimate`)
    matter: object | None  # ModnetMatter, or None to keep the background
    detector: object | None  # FaceDetector; None with aligned inputs
    aligned: bool = False

    @staticmethod
    def load(smirk: str | None, modnet: str | None, aligned: bool, matting: bool = True,
             device: str | torch.device = "cpu") -> "FaceTools":
        from agora_core.face import ModnetMatter, SmirkEstimator, default_detector

        estimator = SmirkEstimator.from_asset(smirk, device)
        matter = ModnetMatter.from_asset(modnet) if matting else None
        return FaceTools(estimator, matter, None if aligned else default_detector(), aligned)


def collect_images(paths: list[Path], frames: int | None) -> tuple[list[np.ndarray], list[str]]:
    """Photos, or `frames` sharp frames spread over one video. Returns (RGB uint8 images, names)."""
    if not paths:
        raise AgoraError("invert: give one or more photos, or one video")
    for p in paths:
        if not Path(p).is_file():
            raise file_error(p, "no such file")
    videos = [p for p in paths if is_video(p)]
    if videos and len(paths) > 1:
        raise AgoraError(f"{videos[0]}: give either one video or photos, not both / several videos")
    if videos:
        n = DEFAULT_VIDEO_FRAMES if frames is None else frames
        if n < 1:
            raise AgoraError(f"--frames {n}: must be at least 1")
        indices, images = select_sharp_frames(videos[0], n)
        return images, [f"{videos[0]}#{i}" for i in indices]
    if frames is not None:
        raise AgoraError("--frames applies to a video input; with photos every photo is a frame")
    return [read_rgb(p) for p in paths], [str(p) for p in paths]


def target_from_images(images: list[np.ndarray], names: list[str], tools: FaceTools, head: HeadModel,
                       resolution: int) -> InversionTarget:
    """Analyse each image (one face each; `NoFaceError` names the file) and stack the results."""
    from agora_core.face import analyse_face

    results = [analyse_face(img, detector=tools.detector, matter=tools.matter, estimator=tools.estimator,
                            aligned=tools.aligned, size=resolution, source=name)
               for img, name in zip(images, names)]
    cameras = torch.as_tensor(np.stack([r.camera_label for r in results]), dtype=torch.float32)
    return InversionTarget(images_to_tensor([r.image for r in results], resolution), cameras,
                           flame_tensors([r.flame for r in results], head), list(names))
