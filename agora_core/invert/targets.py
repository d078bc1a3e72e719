"""What PTI fits: images of one person with their cameras and FLAME estimates.

Targets come from photos / video frames through face/ (`photo_inputs.py`) or, for the demo head
(which has no SMIRK model), from a dataset folder with exact labels (`target_from_dataset`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import Tensor

from agora_core.errors import AgoraError, file_error
from agora_core.head import FLAME_KEYS, FlameParams, HeadModel
from agora_core.render.images import to_uint8


@dataclass
class InversionTarget:
    """F frames of one identity.

    images:  [F, 3, R, R] float32 in [0, 1], composited on white.
    cameras: [F, 25] EG3D labels (the head stays unrotated; the camera carries the head pose).
    flame:   the F frames' FLAME estimates (each with its own shape estimate).
    sources: where each frame came from (file, file#frame, dataset:index).
    """

    images: Tensor
    cameras: Tensor
    flame: FlameParams
    sources: list[str]

    def __post_init__(self) -> None:
        f = self.images.shape[0]
        assert self.images.ndim == 4 and self.images.shape[1] == 3, self.images.shape
        assert self.images.shape[2] == self.images.shape[3], "square images"
        assert self.cameras.shape == (f, 25), self.cameras.shape
        assert self.flame.batch_size == f, (self.flame.batch_size, f)
        assert len(self.sources) == f

    @property
    def num_frames(self) -> int:
        return self.images.shape[0]

    @property
    def resolution(self) -> int:
        return self.images.shape[-1]

    def crops_uint8(self) -> Tensor:
        """[F, R, R, 3] uint8 (what the avatar file stores)."""
        return to_uint8(self.images).permute(0, 2, 3, 1)

    def to(self, device: torch.device | str) -> "InversionTarget":
        return InversionTarget(self.images.to(device), self.cameras.to(device),
                               self.flame.to(device), list(self.sources))

    def select(self, indices: list[int]) -> "InversionTarget":
        idx = torch.as_tensor(indices)
        return InversionTarget(self.images[idx], self.cameras[idx], self.flame[idx],
                               [self.sources[i] for i in indices])


def images_to_tensor(images: list[np.ndarray], resolution: int) -> Tensor:
    """uint8 RGB [H, W, 3] squares -> [F, 3, R, R] float in [0, 1] (INTER_AREA down, cubic up)."""
    out = []
    for img in images:
        if img.shape[0] != resolution or img.shape[1] != resolution:
            interp = cv2.INTER_AREA if img.shape[0] > resolution else cv2.INTER_CUBIC
            img = cv2.resize(img, (resolution, resolution), interpolation=interp)
        out.append(torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1).float() / 255.0)
    return torch.stack(out)


def flame_tensors(rows: list[dict[str, np.ndarray]], head: HeadModel) -> FlameParams:
    """Per-frame FLAME dicts (numpy, no batch dim, `FLAME_KEYS`) -> float32 `FlameParams`,
    shape/expression fitted to the head's sizes (e.g. SMIRK's 300 shape -> the head's)."""
    stacked = {k: np.stack([np.asarray(r[k], np.float32).reshape(-1) for r in rows]) for k in FLAME_KEYS}
    return FlameParams.from_dict(stacked).padded(head.num_shape, head.num_expr)


def read_rgb(path: str | Path) -> np.ndarray:
    """A photo as RGB uint8 [H, W, 3] (alpha dropped, grey expanded); `AgoraError` if unreadable."""
    path = Path(path)
    if not path.is_file():
        raise file_error(path, "no such file")
    data = np.fromfile(str(path), dtype=np.uint8)
    img = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if img is None:
        raise file_error(path, "not a readable image (expected .jpg, .png or .webp)")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def target_from_dataset(root: str | Path, indices: list[int], head: HeadModel, resolution: int) -> InversionTarget:
    """Images and their labels (camera, FLAME) from a dataset folder (`agora prep-data`).

    Synthetic demo-head datasets carry exact labels (the demo head has no SMIRK model to estimate
    FLAME with); prep-data datasets of photos carry SMIRK's estimates, already cropped and matted.
    """
    from agora_core.data.format import read_dataset_index

    index = read_dataset_index(root)
    if not indices:
        raise AgoraError("--index: give at least one dataset index")
    bad = [i for i in indices if not 0 <= i < len(index)]
    if bad:
        raise AgoraError(f"--index {bad[0]}: {root} has {len(index)} images (0..{len(index) - 1})")
    from agora_core.head.build import check_head_matches  # training's rule: "flame2020" data fit a FLAME pickle

    check_head_matches(index.header.head_model, head, root, head_is="the checkpoint's head is", fix="")
    images = [read_rgb(index.root / index.files[i]) for i in indices]
    rows = [index.record(i).flame for i in indices]
    cameras = torch.as_tensor(index.cameras[indices], dtype=torch.float32)
    return InversionTarget(images_to_tensor(images, resolution), cameras, flame_tensors(rows, head),
                           [f"{root}:{i}" for i in indices])
