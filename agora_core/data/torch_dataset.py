"""`HeadImageDataset`: (image, camera label, FLAME parameters) from a dataset folder."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from agora_core.data.format import FLAME_KEYS, DatasetIndex, read_dataset_index
from agora_core.errors import AgoraError

# x -> -x in world and camera x axis: c2w' = M c2w M with M = diag(-1, 1, 1, 1) keeps a proper
# rotation and mirrors the camera about the x = 0 plane (EG3D's convention for flipped images).
_MIRROR = np.diag([-1.0, 1.0, 1.0, 1.0]).astype(np.float32)


def mirror_camera_label(label: np.ndarray) -> np.ndarray:
    """[..., 25] EG3D label -> label of the horizontally flipped image (intrinsics cx -> 1 - cx)."""
    label = np.asarray(label, dtype=np.float32)
    c2w = label[..., :16].reshape(*label.shape[:-1], 4, 4)
    k = label[..., 16:].reshape(*label.shape[:-1], 3, 3).copy()
    c2w = _MIRROR @ c2w @ _MIRROR
    k[..., 0, 2] = 1.0 - k[..., 0, 2]
    return np.concatenate([c2w.reshape(*label.shape[:-1], 16), k.reshape(*label.shape[:-1], 9)], axis=-1)


def load_image_rgb(path: Path) -> np.ndarray:
    """[H, W, 3] uint8 RGB; `AgoraError` naming the file when it cannot be decoded."""
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise AgoraError(f"{path}: missing or not a decodable image")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


class HeadImageDataset(Dataset):
    """Images with their camera label and FLAME parameters.

    Item: dict with ``image`` [3,R,R] float in [0,1], ``camera`` [25] float, and FLAME tensors
    ``shape`` [S], ``expression`` [E], ``jaw`` [3], ``neck`` [3], ``eyes`` [6], ``eyelids`` [2],
    plus ``index`` and ``flipped``.

    With ``xflip=True`` the dataset doubles: items N..2N-1 are the x-flipped images with the
    mirrored camera and the FLAME estimate *of the flipped image* (stored by prep-data as
    ``mirrored_*``), since FLAME's expression space is not mirror-symmetric per component.
    """

    def __init__(self, root: str | Path, xflip: bool = False, resolution: int | None = None):
        self.index: DatasetIndex = read_dataset_index(root)
        self.root = Path(root)
        self.xflip = xflip
        self.resolution = resolution or self.index.header.resolution
        if xflip and self.index.mirrored_flame is None:
            raise AgoraError(
                f"{self.root / 'flame.npz'}: no FLAME estimates of mirrored images; "
                "rebuild the dataset with `agora prep-data --mirror` or train with `--set xflip=false`"
            )

    def __len__(self) -> int:
        return len(self.index) * (2 if self.xflip else 1)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        n = len(self.index)
        flipped = i >= n
        j = i - n if flipped else i
        img = load_image_rgb(self.root / self.index.files[j])
        if img.shape[0] != self.resolution or img.shape[1] != self.resolution:
            img = cv2.resize(img, (self.resolution, self.resolution), interpolation=cv2.INTER_AREA)
        camera = self.index.cameras[j]
        flame_src = self.index.flame
        if flipped:
            img = img[:, ::-1]
            camera = mirror_camera_label(camera)
            flame_src = self.index.mirrored_flame
        item = {
            "image": torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1).float() / 255.0,
            "camera": torch.from_numpy(np.asarray(camera, dtype=np.float32)),
            "index": torch.tensor(j),
            "flipped": torch.tensor(flipped),
        }
        for key in FLAME_KEYS:
            item[key] = torch.from_numpy(flame_src[key][j])
        return item
