"""What the loop draws from the dataset: real images, and generator conditions.

- `EndlessShardedSampler`: the real-image order -- an endless stream of seeded epoch permutations,
  each rank taking every world-th index (as `DistributedSampler` does), starting at a given
  position so a resumed run continues the exact same stream.
- `ConditionSampler`: generator conditions sampled *jointly* from the dataset (AGORA code facts §2):
  a random dataset index supplies the camera label and the full FLAME parameters (shape
  included). It reads the index arrays only, never an image.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Sampler

from agora_core.data.format import FLAME_KEYS, DatasetIndex
from agora_core.data.torch_dataset import mirror_camera_label


class EndlessShardedSampler(Sampler[int]):
    """Indices of epoch permutations (epoch e: `randperm(n, seed + e)`), rank r gets positions
    r, r + world, …; the first `start` of this rank's indices are skipped (resume)."""

    def __init__(self, n: int, seed: int, rank: int = 0, world_size: int = 1, start: int = 0):
        assert n > 0 and 0 <= rank < world_size, (n, rank, world_size)
        self.n, self.seed, self.rank, self.world_size, self.start = n, seed, rank, world_size, start

    def __iter__(self) -> Iterator[int]:
        k, epoch, perm = self.start, -1, None
        while True:
            e, offset = divmod(k * self.world_size + self.rank, self.n)  # this rank's k-th global position
            if e != epoch:
                epoch, perm = e, torch.randperm(self.n, generator=torch.Generator().manual_seed(self.seed + e))
            yield int(perm[offset])
            k += 1


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
        self.cameras = torch.from_numpy(np.ascontiguousarray(cameras, dtype=np.float32))
        self.flame = {k: torch.from_numpy(np.ascontiguousarray(v, dtype=np.float32)) for k, v in flame.items()}
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return self.cameras.shape[0]

    def sample(self, n: int, device: torch.device | str = "cpu") -> tuple[Tensor, dict[str, Tensor]]:
        """n random items -> camera labels [n, 25] and FLAME dict (dataset keys, [n, D] each)."""
        idx = torch.randint(0, len(self), (n,), generator=self.generator)
        return self.take(idx, device)

    def take(self, idx: Tensor, device: torch.device | str = "cpu") -> tuple[Tensor, dict[str, Tensor]]:
        """The items at `idx` [n] (no randomness)."""
        return self.cameras[idx].to(device), {k: v[idx].to(device) for k, v in self.flame.items()}

    def state(self) -> Tensor:
        return self.generator.get_state()

    def set_state(self, state: Tensor) -> None:
        self.generator.set_state(state.cpu())
