"""Streamed SVD (agora_core.mobile.streaming_svd) against `torch.linalg.svd` of the full matrix.

Problems have a decaying spectrum (σ_i = 0.75^i times a random orthonormal pair), as residuals do.
Tolerances: principal angles < 1e-4 rad and singular values within 1e-5 relative (the issue's
bounds). The exact Gram path meets them by construction (float64 round-off ~1e-12 here); the
randomized path converges like (σ_{K+p+1}/σ_K)^(2·passes−1) = 0.75^(16·7) ≈ 1e-14.
"""

from __future__ import annotations

import pytest
import torch
from test_mobile_tinyhead import single_thread  # noqa: F401  (fixture)

from agora_core.errors import AgoraError
from agora_core.mobile.streaming_svd import (
    full_svd_basis,
    gather_rows,
    gram_basis,
    plan_stream,
    principal_angles,
    randomized_basis,
    stream_basis,
)

ANGLE_TOL, SIGMA_RTOL = 1e-4, 1e-5


class LowRankSource:
    """B_g = A_g diag(σ) V_gᵀ with σ_i = decay^i; rows served in chunks, counted per call."""

    def __init__(self, n_rows: int, sizes: dict[str, int], rank: int = 40, decay: float = 0.75, seed: int = 0):
        gen = torch.Generator().manual_seed(seed)
        self.num_rows, self.group_sizes, self.calls = n_rows, sizes, 0
        self.matrices = {}
        for i, (g, n) in enumerate(sizes.items()):
            r = min(rank, n, n_rows)
            a = torch.linalg.qr(torch.randn(n_rows, r, generator=gen, dtype=torch.float64))[0]
            v = torch.linalg.qr(torch.randn(n, r, generator=gen, dtype=torch.float64))[0]
            sigma = (3.0 + i) * decay ** torch.arange(r, dtype=torch.float64)
            self.matrices[g] = ((a * sigma) @ v.T).float()
        if "opacity" in sizes:  # a group without any energy, as the generator's opacity residual
            self.matrices["opacity"].zero_()

    def rows(self, start: int, stop: int) -> dict[str, torch.Tensor]:
        self.calls += 1
        return {g: m[start:stop].clone() for g, m in self.matrices.items()}


SIZES = {"xyz": 300, "scale": 240, "rotation": 400, "opacity": 100}


def assert_same_basis(streamed, reference, k_check: int):
    for g, ref in reference.items():
        got = streamed[g]
        assert got.basis.shape == ref.basis.shape
        eye = torch.eye(got.basis.shape[0], dtype=torch.float64)
        torch.testing.assert_close(got.basis @ got.basis.T, eye, atol=1e-10, rtol=0)  # orthonormal rows
        if ref.energy == 0:
            assert got.energy == 0 and got.singular_values.abs().max() < 1e-9
            assert torch.all(got.explained_variance == 1)
            continue
        torch.testing.assert_close(got.singular_values, ref.singular_values, rtol=SIGMA_RTOL, atol=0)
        angles = principal_angles(got.basis[:k_check], ref.basis[:k_check])
        assert angles.max() < ANGLE_TOL, (g, angles.max())
        assert got.energy == pytest.approx(ref.energy, rel=1e-10)


@pytest.mark.parametrize("chunk_rows", [7, 64])
def test_randomized_basis_matches_full_svd(chunk_rows):
    src = LowRankSource(150, SIZES)
    ref = full_svd_basis(src.matrices, 12)
    got = randomized_basis(src, 12, chunk_rows=chunk_rows, oversample=16, passes=4, seed=3)
    assert_same_basis(got, ref, 12)
    assert src.calls == 4 * -(-150 // chunk_rows)  # 4 passes over the chunks


@pytest.mark.parametrize("slab_columns", [97, 10_000])
def test_gram_basis_matches_full_svd(slab_columns):
    src = LowRankSource(90, SIZES)
    ref = full_svd_basis(src.matrices, 12)
    got = gram_basis(src, 12, chunk_rows=16, slab_columns=slab_columns)
    assert_same_basis(got, ref, 12)


def test_gram_basis_beyond_rank_and_beyond_n():
    """K larger than the rank and than N: the extra components are σ = 0 and still orthonormal."""
    src = LowRankSource(30, {"xyz": 120, "opacity": 60}, rank=10)
    got = gram_basis(src, 40, chunk_rows=8, slab_columns=50)
    ref = full_svd_basis(src.matrices, 10)
    assert_same_basis({g: type(b)(b.basis[:10], b.singular_values[:10], b.energy) for g, b in got.items()}, ref, 10)
    for b in got.values():
        torch.testing.assert_close(b.basis @ b.basis.T, torch.eye(40, dtype=torch.float64), atol=1e-10, rtol=0)
        assert b.singular_values[10:].abs().max() < 1e-6
    assert got["xyz"].explained_variance[9] == pytest.approx(1.0, abs=1e-10)


def test_principal_angles_are_accurate_for_small_angles():
    a = torch.linalg.qr(torch.randn(50, 3, dtype=torch.float64))[0].T
    assert principal_angles(a, a).max() < 1e-12
    tilt = torch.linalg.qr(torch.randn(50, 3, dtype=torch.float64))[0].T
    b = torch.linalg.qr((a + 1e-6 * tilt).T)[0].T
    assert 1e-8 < principal_angles(a, b).max() < 1e-5


def test_plan_picks_gram_for_small_n_and_randomized_for_large_n():
    mb = 2**20
    sizes = {"xyz": 30_000, "scale": 30_000, "rotation": 40_000, "opacity": 10_000}
    small = plan_stream("auto", 500, sizes, 64, 512 * mb, overhead_bytes=32 * mb)
    large = plan_stream("auto", 20_000, sizes, 64, 512 * mb, overhead_bytes=32 * mb)
    assert small.method == "gram" and large.method == "randomized"
    for plan, n in ((small, 500), (large, 20_000)):  # accumulators + chunk (+ Gram slab) fit the budget
        assert plan.fixed_bytes + plan.chunk_rows * 12 * 110_000 + plan.slab_columns * 4 * n <= 512 * mb
    # the randomized plan does not depend on N (once N exceeds a chunk)
    assert plan_stream("randomized", 2_000, sizes, 64, 512 * mb, 32 * mb) == \
        plan_stream("randomized", 20_000, sizes, 64, 512 * mb, 32 * mb)
    with pytest.raises(AgoraError, match="--memory-budget 16 MB") as refused:
        plan_stream("randomized", 2_000, sizes, 64, 16 * mb, 32 * mb, overhead_hint="is the batch")
    assert "is the batch" not in str(refused.value)  # 32 MB is not what makes 16 MB too little
    with pytest.raises(AgoraError, match=r"at least \d+ MB \(4096 MB of it is the batch\)"):
        plan_stream("randomized", 2_000, sizes, 64, 512 * mb, 4096 * mb, overhead_hint="is the batch")
    with pytest.raises(AgoraError, match="--memory-budget 512 MB.*Gram"):
        plan_stream("gram", 20_000, sizes, 64, 512 * mb, 32 * mb)


def test_stream_basis_runs_a_plan():
    src = LowRankSource(60, {"xyz": 90, "opacity": 30})
    plan = plan_stream("auto", 60, src.group_sizes, 8, 64 * 2**20, overhead_bytes=1000)
    got = stream_basis(src, 8, plan)
    assert_same_basis(got, full_svd_basis(gather_rows(src, 13), 8), 8)
