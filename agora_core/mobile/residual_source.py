"""Chunks of eq. 9 residuals regenerated on demand from a generator and a `TupleSampler`.

The streamed SVD (`streaming_svd`) reads residual rows through the small `RowSource` protocol —
`num_rows`, `group_sizes`, `rows(start, stop)` — so the maths is tested on synthetic sources and run
on `GeneratorResiduals`, which evaluates AGORA with its identity/animate split: the identity
branch once per identity (`AgoraGenerator.identity`), then `animate` for the neutral
(ψ0 = 0, θ0 = 0) and every posed tuple. Noise is constant (`noise_mode="const"`), so a row range
gives identical numbers every time it is asked for with the same chunking.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch
from torch import Tensor

from agora_core.head import FlameParams
from agora_core.mobile.residuals import RESIDUAL_GROUPS, attribute_residuals, attribute_space, group_sizes
from agora_core.mobile.tuples import TupleBatch, TupleSampler
from agora_core.models.agora_generator import AgoraGenerator
from agora_core.models.deformation_branch import expression_condition
from agora_core.models.stylegan2_synthesis import block_resolutions, synthesis_channels


class RowSource(Protocol):
    """Rows of the residual matrices B_g [N, M·D_g], regenerated deterministically per range."""

    num_rows: int
    group_sizes: dict[str, int]

    def rows(self, start: int, stop: int) -> dict[str, Tensor]:
        """{group: [stop − start, M·D_g]} rows start … stop−1."""
        ...


@dataclass
class ResidualChunk:
    residuals: dict[str, Tensor]  # {group: [n, M·D_g]} float32 (eq. 9)
    conditions: Tensor  # [n, w_dim + expr_dim + 5] regressor input [w, ψ, jaw, eyelids] (eq. 10)


def regressor_input(w: Tensor, flame: FlameParams, expr_dim: int) -> Tensor:
    """[w, ψ[:expr_dim], jaw, eyelids]: the input of f_mlp (eq. 10). w [B, w_dim] -> [B, I]."""
    return torch.cat([w, expression_condition(flame, expr_dim).to(w.dtype)], dim=1)


class GeneratorResiduals:
    """`RowSource` of a generator's residuals over tuples 0 … num_rows−1 of `sampler`.

    Args:
        generator: AGORA generator (its device is used).
        sampler: the tuples (`tuples.TupleSampler`).
        num_rows: N.
        truncation_psi: ψ of the mapping network's truncation (authors: 0.7).
        batch_size: tuples per `animate` call (whole identities are kept together).
    """

    def __init__(self, generator: AgoraGenerator, sampler: TupleSampler, num_rows: int,
                 truncation_psi: float = 0.7, batch_size: int = 16):
        assert num_rows > 0 and batch_size > 0, (num_rows, batch_size)
        self.generator, self.sampler, self.num_rows = generator, sampler, num_rows
        self.truncation_psi, self.batch_size = truncation_psi, batch_size
        self.num_gaussians = generator.num_gaussians
        self.group_sizes = group_sizes(self.num_gaussians)
        self.device = next(generator.parameters()).device

    def rows(self, start: int, stop: int) -> dict[str, Tensor]:
        return self.chunk(start, stop).residuals

    @torch.no_grad()
    def chunk(self, start: int, stop: int) -> ResidualChunk:
        """Residuals and regressor inputs of tuples start … stop−1."""
        assert 0 <= start < stop <= self.num_rows, (start, stop, self.num_rows)
        t = self.sampler.tuples(start, stop)
        ids = t.identity.tolist()
        parts: list[ResidualChunk] = []
        lo = 0
        while lo < len(ids):  # batches of whole identities, about batch_size tuples each
            hi = lo + 1
            while hi < len(ids) and (ids[hi] == ids[hi - 1] or hi - lo < self.batch_size):
                hi += 1
            parts.append(self._batch(t, lo, hi))
            lo = hi
        if len(parts) == 1:
            return parts[0]
        return ResidualChunk({g: torch.cat([p.residuals[g] for p in parts]) for g in RESIDUAL_GROUPS},
                             torch.cat([p.conditions for p in parts]))

    def _batch(self, t: TupleBatch, lo: int, hi: int) -> ResidualChunk:
        g, dev = self.generator, self.device
        ident = t.identity[lo:hi]
        first = torch.cat([torch.ones(1, dtype=torch.bool), ident[1:] != ident[:-1]])
        rows_of = torch.cumsum(first.long(), 0) - 1  # row -> index of its identity in this batch
        pick = torch.nonzero(first)[:, 0] + lo
        cache = g.identity(t.z[pick].to(dev), t.camera[pick].to(dev), t.shape[pick].to(dev),
                           self.truncation_psi, noise_mode="const")
        neutral = g.animate(cache, FlameParams.zeros(cache.batch_size, n_expr=t.flame.num_expr, device=dev),
                            noise_mode="const").gaussians
        rows_of = rows_of.to(dev)
        posed_cache = cache.map(lambda x: x[rows_of])
        flame = t.flame[lo:hi].to(dev)
        posed = g.animate(posed_cache, flame, noise_mode="const").gaussians
        residuals = attribute_residuals(posed, neutral.map(lambda x: x[rows_of]), attribute_space(g))
        w = cache.ws[:, 0][rows_of]
        conditions = regressor_input(w, flame, g.config.expr_cond_dim)
        return ResidualChunk(residuals, conditions)

    def working_bytes(self) -> int:
        """Estimated peak bytes of one generator batch (no grad), on top of the chunk's rows.

        Per tuple: the deformation branch's activations (3 feature maps alive per block), the
        expanded identity cache and ~12 copies of the Gaussian attributes during lifting and
        residual taking; times `batch_size`. An estimate that sizes chunks;
        `benchmarks/extract_basis_memory.py` measures the real peak.
        """
        cfg = self.generator.config
        floats = 0
        for res in block_resolutions(cfg.tap_resolution, cfg.uv_resolution):
            floats += 3 * synthesis_channels(res, cfg.channel_base, cfg.channel_max) * res * res
        floats += cfg.main_channels * cfg.uv_resolution**2  # the cache's planes, expanded per row
        floats += 12 * self.num_gaussians * (sum(RESIDUAL_GROUPS.values()) + cfg.main_channels)
        return 4 * floats * self.batch_size
