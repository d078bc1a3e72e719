"""Generator conditions drawn from a dataset: what training and the metrics condition G on.

`ConditionSampler`: (camera label, FLAME) pairs sampled *jointly* from the dataset (as the authors'
training code does): a random dataset index supplies the camera label and the full FLAME parameters
(shape included). It reads the index arrays only, never an image. Its rows are the dataset items,
the x-flipped copies after them (row = index + flipped·N, as `rows_of` computes for a real batch).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from agora_core.data.format import FLAME_KEYS, DatasetIndex
from agora_core.data.torch_dataset import mirror_camera_label
from agora_core.head.flame_params import FlameParams


class ConditionSampler:
    """Random (camera label, FLAME) pairs of the dataset; own seeded generator (checkpointable).

    With `xflip` the x-flipped copies count as items too (mirrored camera, FLAME of the flip).
    """

    def __init__(self, index: DatasetIndex, xflip: bool, seed: int):
        cameras, flame = index.cameras, index.flame
        if xflip:
            assert index.mirrored_flame is not None, "xflip needs mirrored FLAME estimates"
            cameras = np.concatenate([cameras, mirror_camera_label(cameras)], axis=0)
            flame = {k: np.concatenate([flame[k], index.mirrored_flame[k]], axis=0) for k in FLAME_KEYS}
        self.num_images = len(index)  # rows [0, num_images) are unflipped, the rest their flips
        self.cameras = torch.from_numpy(np.ascontiguousarray(cameras, dtype=np.float32))
        self.flame = FlameParams.from_dict({k: np.ascontiguousarray(v, dtype=np.float32) for k, v in flame.items()})
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return self.cameras.shape[0]

    def sample_rows(self, n: int) -> Tensor:
        """n random rows [n] (int64, CPU); `take` gives their conditions."""
        return torch.randint(0, len(self), (n,), generator=self.generator)

    def rows_of(self, batch: dict[str, Tensor]) -> Tensor:
        """The rows [B] of a `HeadImageDataset` batch (its ``index`` and ``flipped``)."""
        return batch["index"].long() + batch["flipped"].long() * self.num_images

    def take(self, idx: Tensor, device: torch.device | str = "cpu") -> tuple[Tensor, FlameParams]:
        """The items at `idx` [n] (no randomness): camera labels [n, 25] and their FLAME parameters."""
        return self.cameras[idx].to(device), self.flame[idx].to(device)

    def state(self) -> Tensor:
        return self.generator.get_state()

    def set_state(self, state: Tensor) -> None:
        self.generator.set_state(state.cpu())
