"""What the loop draws from the dataset: real images, and generator conditions.

- `EndlessShardedSampler`: the real-image order -- an endless stream of seeded epoch permutations,
  each rank taking every world-th index (as `DistributedSampler` does), starting at a given
  position so a resumed run continues the exact same stream.
- generator conditions: `data.conditions.ConditionSampler` (also what the metrics draw from).
- `CueCache`: the dual-discrimination cue per row, rendered the first time the row is used.
"""

from __future__ import annotations

from typing import Callable, Iterator

import torch
from torch import Tensor
from torch.utils.data import Sampler

from agora_core.data.conditions import ConditionSampler
from agora_core.head import FlameParams
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


CueRender = Callable[[FlameParams, Tensor, bool], Tensor | None]  # (flame, camera labels, enabled)


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

    def __call__(self, rows: Tensor, flame: FlameParams, camera: Tensor, enabled: bool = True) -> Tensor | None:
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
