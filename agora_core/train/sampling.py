"""What the loop draws from the dataset: real images, and generator conditions.

- `EndlessShardedSampler`: the real-image order -- an endless stream of seeded epoch permutations,
  each rank taking every world-th index (as `DistributedSampler` does), starting at a given
  position so a resumed run continues the exact same stream.
- `ConditionSampler`: generator conditions sampled *jointly* from the dataset (as the authors' training code does):
  a random dataset index supplies the camera label and the full FLAME parameters (shape
  included). It reads the index arrays only, never an image. Its rows are the dataset items, the
  x-flipped copies after them (row = index + flipped·N, as `rows_of` computes for a real batch).
- `CueCache`: the dual-discrimination cue per row, rendered the first time the row is used.
"""

from __future__ import annotations

from typing import Callable, Iterator

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Sampler

from agora_core.data.format import FLAME_KEYS, DatasetIndex
from agora_core.data.torch_dataset import mirror_camera_label
from agora_core.models.dual_discrimination import CUE_CHANNELS


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
        self.num_images = len(index)  # rows [0, num_images) are unflipped, the rest their flips
        self.cameras = torch.from_numpy(np.ascontiguousarray(cameras, dtype=np.float32))
        self.flame = {k: torch.from_numpy(np.ascontiguousarray(v, dtype=np.float32)) for k, v in flame.items()}
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return self.cameras.shape[0]

    def sample_rows(self, n: int) -> Tensor:
        """n random rows [n] (int64, CPU); `take` gives their conditions."""
        return torch.randint(0, len(self), (n,), generator=self.generator)

    def rows_of(self, batch: dict[str, Tensor]) -> Tensor:
        """The rows [B] of a `HeadImageDataset` batch (its ``index`` and ``flipped``)."""
        return batch["index"].long() + batch["flipped"].long() * self.num_images

    def take(self, idx: Tensor, device: torch.device | str = "cpu") -> tuple[Tensor, dict[str, Tensor]]:
        """The items at `idx` [n] (no randomness)."""
        return self.cameras[idx].to(device), {k: v[idx].to(device) for k, v in self.flame.items()}

    def state(self) -> Tensor:
        return self.generator.get_state()

    def set_state(self, state: Tensor) -> None:
        self.generator.set_state(state.cpu())


CueRender = Callable[[dict[str, Tensor], Tensor, bool], Tensor | None]  # (flame, camera labels, enabled)


class CueCache:
    """The dual-discrimination cue S(ψ) (sec. 3.6) of condition rows, each rendered once.

    Both the fakes' conditions and the real batch are dataset rows, and a row's cue depends only on
    its FLAME parameters and camera, so it is rendered the first time the row is used (lazily: no
    delay at the start, nothing before `start_dual_kimg`) into a [rows, 3, R, R] table on the
    training device, and read from there afterwards. A row's cue does not depend on the rows
    rendered beside it (`cue_meshes` evaluates the head row by row, the rasteriser each camera on its
    own), so cached cues equal fresh ones bit for bit and a resumed run (empty cache) continues
    exactly. The cache is used only when the whole table fits `budget_mb` MiB; otherwise, or with
    a budget of 0 or no image cue, every call renders (`render`, e.g. `build.CueRenderer`).
    """

    def __init__(self, render: CueRender, conditions: ConditionSampler, resolution: int, budget_mb: float,
                 device: torch.device | str = "cpu"):
        self.render, self.conditions, self.device = render, conditions, torch.device(device)
        self.row_shape = (CUE_CHANNELS, resolution, resolution)
        self.megabytes = len(conditions) * CUE_CHANNELS * resolution * resolution * 4 / 2**20  # float32
        self.enabled = 0 < self.megabytes <= budget_mb
        self.table: Tensor | None = None  # [rows, 3, R, R], allocated by the first cached call
        self.filled = torch.zeros(len(conditions), dtype=torch.bool)  # [rows] rendered yet

    def __call__(self, rows: Tensor, flame: dict[str, Tensor], camera: Tensor, enabled: bool = True) -> Tensor | None:
        """Cue [B, 3, R, R] (or None: no image cue) of `rows` [B], whose conditions `flame`, `camera`
        [B, 25] are (used only when not cached); zeros when not `enabled` (before `start_dual_kimg`)."""
        assert rows.shape == camera.shape[:1], (rows.shape, camera.shape)
        if not (self.enabled and enabled):
            return self.render(flame, camera, enabled)
        rows = rows.cpu().long()
        missing = torch.unique(rows[~self.filled[rows]])
        if len(missing):  # rendered from the sampler's own tables: the row alone decides the value
            missing_c, missing_flame = self.conditions.take(missing, self.device)
            fresh = self.render(missing_flame, missing_c, True)
            if fresh is None:  # D takes no image cue
                self.enabled = False
                return None
            if self.table is None:
                self.table = fresh.new_zeros(len(self.conditions), *self.row_shape)
            assert fresh.shape[1:] == self.row_shape, (fresh.shape, self.row_shape)
            self.table[missing.to(self.device)] = fresh
            self.filled[missing] = True
        return self.table[rows.to(self.device)]
