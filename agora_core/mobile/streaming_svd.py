"""Top-K right singular vectors of residual matrices that are never built (paper sec. 3.7, eq. 9).

B_g [N, M·D_g] is 10 000 × 786 000 floats for the paper's xyz group (31 GB); the authors' low-rank
SVD of the full matrix ran out of memory at N = 20 000 or K = 128 (appendix 0.A.3). Here rows are
streamed from a `RowSource` in chunks regenerated deterministically on every pass, and B is
factorised without centring (eq. 9 factorises B itself). Two methods, one reference:

- `randomized_basis` (default for large N): block subspace iteration on BᵀB with a final
  Rayleigh–Ritz step. Each pass accumulates Z = Σ_chunks B_Iᵀ(B_I Q) — BᵀB splits over row chunks,
  so one pass is one power iteration — then Q ← orth(Z). The last pass also gives H = QᵀBᵀBQ
  (= YᵀY for Y = BQ); its eigenpairs (W, λ) give σ = √λ and V = QW. Memory: Q and Z
  [M·D, K + p] per group + one chunk; nothing grows with N. Subspace error shrinks like
  (σ_{K+p+1} / σ_K)^(2·passes−1) (Halko, Martinsson & Tropp 2011, sec. 4.5), so a decaying
  spectrum converges in a few passes.
- `gram_basis` (exact, small N): G = BBᵀ [N, N] in float64, accumulated over column slabs (a pass
  keeps one slab of every row; cross-chunk terms need whole columns), eigendecomposed into U, Σ²,
  then a last pass forms V_K = Σ_K⁻¹ U_Kᵀ B chunk by chunk. Memory N² per group + a slab, flat in
  M; exact up to float64 round-off (relative error ~1e-16·σ_1²/σ_k² on σ_k²).
- `full_svd_basis`: `torch.linalg.svd` of the whole matrix; the slow, obviously correct reference
  used by the tests.

All accumulate in float64 (chunks are upcast). Components beyond the rank of B (σ = 0) are
completed to an orthonormal set, so `basis` rows are always orthonormal.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Literal

import torch
from torch import Tensor

from agora_core.errors import AgoraError
from agora_core.mobile.residual_source import RowSource

Method = Literal["auto", "gram", "randomized"]
Progress = Callable[[int], None]  # called with the number of rows just processed
DOUBLE = 8  # bytes per float64
RANK_RTOL = 1e-7  # Gram path: σ_k ≤ this · σ_1 counts as zero (σ_k² below ~1e-14 σ_1² is round-off)


@dataclass
class GroupBasis:
    """Top-K right singular vectors of one residual group."""

    basis: Tensor  # [K, M·D_g] float64, rows orthonormal (U_k of eq. 11)
    singular_values: Tensor  # [K] float64, descending
    energy: float  # ‖B_g‖_F², the total (uncentred) residual energy

    @property
    def explained_variance(self) -> Tensor:
        """[K] cumulative fraction of ‖B‖_F² captured by the first k components (Table 5)."""
        return explained_variance(self.singular_values, self.energy)


def explained_variance(singular_values: Tensor, energy: float) -> Tensor:
    """Cumulative Σ_{j≤k} σ_j² / ‖B‖_F² ([K]); all ones for a zero matrix (nothing to explain)."""
    if energy <= 0:
        return torch.ones_like(singular_values)
    return (singular_values.double().square().cumsum(0) / energy).clamp(max=1.0)


def chunk_ranges(num_rows: int, chunk_rows: int) -> list[tuple[int, int]]:
    """[(start, stop)] covering 0 … num_rows−1 in chunks of at most chunk_rows (fixed per plan)."""
    assert num_rows > 0 and chunk_rows > 0, (num_rows, chunk_rows)
    return [(a, min(a + chunk_rows, num_rows)) for a in range(0, num_rows, chunk_rows)]


def principal_angles(a: Tensor, b: Tensor) -> Tensor:
    """Principal angles (radians, ascending) between the row spaces of a [k, n] and b [k', n].

    Rows must be orthonormal. Computed as arcsin of the singular values of b's component
    orthogonal to a's span, which (unlike arccos of aᵀb's) stays accurate for tiny angles.
    """
    a, b = a.double(), b.double()
    assert a.ndim == b.ndim == 2 and a.shape[1] == b.shape[1], (a.shape, b.shape)
    residual = b - (b @ a.T) @ a
    sines = torch.linalg.svdvals(residual).clamp(max=1.0)
    return torch.arcsin(sines).flip(0)


def _orthonormal_completion(basis: Tensor, valid: Tensor, seed: int) -> Tensor:
    """Replace the rows of basis [K, n] where ~valid by unit rows orthogonal to all others.

    The valid rows must already be orthonormal; they are kept as they are.
    """
    if bool(valid.all()):
        return basis
    k, n = basis.shape
    gen = torch.Generator().manual_seed(seed)
    filler = torch.randn(n, int((~valid).sum()), generator=gen, dtype=basis.dtype).to(basis.device)
    q, r = torch.linalg.qr(torch.cat([basis[valid].T, filler], dim=1))
    out = basis.clone()
    n_valid = int(valid.sum())
    out[valid] = basis[valid]  # QR reproduces them only up to sign/round-off: keep the originals
    out[~valid] = q[:, n_valid:].T
    return out


def _check_k(k: int, sizes: dict[str, int]) -> None:
    smallest = min(sizes.values())
    if not 1 <= k <= smallest:
        raise AgoraError(f"--k {k}: must be between 1 and the smallest group size M·D = {smallest} "
                         f"(the opacity group has one value per Gaussian)")


# --------------------------------------------------------------------------- randomized (default)
def randomized_basis(source: RowSource, k: int, *, chunk_rows: int, oversample: int = 24, passes: int = 6,
                     seed: int = 0, progress: Progress | None = None) -> dict[str, GroupBasis]:
    """Top-k right singular vectors of every group by streamed subspace iteration (module doc).

    Args:
        source: the rows of B_g.
        k: components kept per group.
        chunk_rows: rows per chunk (the memory knob).
        oversample: p, extra columns of the iterated subspace (l = k + p).
        passes: P ≥ 1 passes over the data = P power iterations (the last one Rayleigh–Ritz).
        seed: seeds the starting subspace.
    """
    _check_k(k, source.group_sizes)
    assert passes >= 1 and oversample >= 0, (passes, oversample)
    gen = torch.Generator().manual_seed(seed)
    q = {}
    for g, n in source.group_sizes.items():
        start = torch.randn(n, min(k + oversample, n), generator=gen, dtype=torch.float64)
        q[g] = torch.linalg.qr(start)[0]
    energy = dict.fromkeys(source.group_sizes, 0.0)
    ranges = chunk_ranges(source.num_rows, chunk_rows)
    for p in range(passes):
        z = {g: torch.zeros_like(qg) for g, qg in q.items()}
        for a, b in ranges:
            rows = source.rows(a, b)
            for g, block in rows.items():
                block = block.double()
                if q[g].device != block.device:
                    q[g], z[g] = q[g].to(block.device), z[g].to(block.device)
                z[g].addmm_(block.T, block @ q[g])
                if p == 0:
                    energy[g] += float(block.square().sum())
            if progress is not None:
                progress(b - a)
        if p < passes - 1:
            q = {g: torch.linalg.qr(zg)[0] for g, zg in z.items()}
    out = {}
    for g in source.group_sizes:
        h = q[g].T @ z[g]  # QᵀBᵀBQ, symmetric PSD
        lam, w = torch.linalg.eigh((h + h.T) / 2)
        lam, w = lam.flip(0)[:k], w.flip(1)[:, :k]
        out[g] = GroupBasis((q[g] @ w).T.contiguous(), lam.clamp(min=0).sqrt(), energy[g])
    return out


# --------------------------------------------------------------------------- exact Gram (small N)
def gram_basis(source: RowSource, k: int, *, chunk_rows: int, slab_columns: int,
               progress: Progress | None = None, seed: int = 0) -> dict[str, GroupBasis]:
    """Exact top-k right singular vectors from the N×N Gram matrix (module doc).

    Args:
        source: the rows of B_g.
        k: components kept per group.
        chunk_rows: rows per chunk.
        slab_columns: columns (over all groups together) kept per Gram pass; passes =
            ⌈Σ_g M·D_g / slab_columns⌉ + 1.
        seed: seeds the completion of components beyond the rank of B.
    """
    _check_k(k, source.group_sizes)
    n_rows, sizes = source.num_rows, source.group_sizes
    offsets, total = {}, 0
    for g, n in sizes.items():
        offsets[g] = (total, total + n)
        total += n
    ranges = chunk_ranges(n_rows, chunk_rows)
    gram = {g: None for g in sizes}
    for c0 in range(0, total, slab_columns):
        c1 = min(c0 + slab_columns, total)
        parts = {g: (max(lo, c0) - lo, min(hi, c1) - lo) for g, (lo, hi) in offsets.items() if lo < c1 and hi > c0}
        slab = {g: None for g in parts}
        for a, b in ranges:
            rows = source.rows(a, b)
            for g, (lo, hi) in parts.items():
                block = rows[g][:, lo:hi]
                if slab[g] is None:
                    slab[g] = block.new_empty(n_rows, hi - lo)
                slab[g][a:b] = block
            if progress is not None:
                progress(b - a)
        for g, s in slab.items():
            for j in range(0, s.shape[1], 4096):  # upcast in column blocks: f64 copy stays small
                part = s[:, j:j + 4096].double()
                gram[g] = part @ part.T if gram[g] is None else gram[g].addmm_(part, part.T)
        del slab
    eig = {}
    for g, gg in gram.items():
        lam, u = torch.linalg.eigh(gg)
        lam, u = lam.flip(0)[:k].clamp(min=0), u.flip(1)[:, :k]
        sigma = lam.sqrt()
        valid = sigma > RANK_RTOL * sigma[0].clamp(min=torch.finfo(torch.float64).tiny)
        eig[g] = (u[:, valid] / sigma[valid], sigma, valid, float(gg.diagonal().sum()))
    del gram
    v = {g: torch.zeros(int(e[2].sum()), sizes[g], dtype=torch.float64, device=e[0].device) for g, e in eig.items()}
    for a, b in ranges:
        rows = source.rows(a, b)
        for g, (scaled_u, _, _, _) in eig.items():
            v[g].addmm_(scaled_u[a:b].T, rows[g].double())
        if progress is not None:
            progress(b - a)
    out = {}
    for g, (_, sigma, valid, energy) in eig.items():
        kk = sigma.shape[0]
        basis = torch.zeros(k, sizes[g], dtype=torch.float64, device=v[g].device)
        full_valid = torch.zeros(k, dtype=torch.bool)
        full_valid[:kk] = valid.cpu()
        basis[full_valid] = v[g]
        sig = torch.zeros(k, dtype=torch.float64, device=sigma.device)
        sig[:kk] = sigma
        out[g] = GroupBasis(_orthonormal_completion(basis, full_valid.to(basis.device), seed), sig, energy)
    return out


def gram_passes(group_sizes: dict[str, int], slab_columns: int) -> int:
    """Passes over the data `gram_basis` makes."""
    return math.ceil(sum(group_sizes.values()) / slab_columns) + 1


# --------------------------------------------------------------------------- reference
def full_svd_basis(matrices: dict[str, Tensor], k: int) -> dict[str, GroupBasis]:
    """Reference: `torch.linalg.svd` of each whole matrix B_g [N, M·D_g] in float64."""
    out = {}
    for g, b in matrices.items():
        b = b.double()
        _, s, vh = torch.linalg.svd(b, full_matrices=False)
        out[g] = GroupBasis(vh[:k].contiguous(), s[:k], float(b.square().sum()))
    return out


def gather_rows(source: RowSource, chunk_rows: int) -> dict[str, Tensor]:
    """The whole matrices B_g of a source (for the reference and for small held-out sets)."""
    parts = [source.rows(a, b) for a, b in chunk_ranges(source.num_rows, chunk_rows)]
    return {g: torch.cat([p[g] for p in parts]) for g in source.group_sizes}


# --------------------------------------------------------------------------- memory plan
@dataclass(frozen=True)
class StreamPlan:
    """How a basis extraction uses its memory budget."""

    method: Literal["gram", "randomized"]
    chunk_rows: int  # rows per chunk
    slab_columns: int  # gram: columns per Gram pass (0 for randomized)
    passes: int  # passes over the N tuples
    fixed_bytes: int  # accumulators (Q, Z or the Gram matrices) + the basis

    def describe(self) -> str:
        extra = f", {self.slab_columns} columns per Gram pass" if self.method == "gram" else ""
        return (f"{self.method} SVD, {self.passes} passes, {self.chunk_rows} tuples per chunk{extra}, "
                f"accumulators {self.fixed_bytes / 2**20:.0f} MB")


def plan_stream(method: Method, num_rows: int, group_sizes: dict[str, int], k: int, budget_bytes: int,
                overhead_bytes: int = 0, *, oversample: int = 24, passes: int = 6, max_chunk_rows: int = 512,
                flag: str = "--memory-budget", overhead_hint: str = "") -> StreamPlan:
    """Pick the method and chunking that fit `budget_bytes` (nothing grows with N for randomized).

    `auto` takes the exact Gram path when its N² matrices use at most half the budget and it
    needs no more passes than the randomized one, else the randomized range finder.

    Args:
        overhead_bytes: working memory of producing rows (the source's generator batch), counted
            once; each chunk row costs its float32 values and their float64 copy.
        overhead_hint: what sets overhead_bytes and how to lower it, named in the error when it is a
            quarter or more of the memory needed.
    """
    total = sum(group_sizes.values())
    row = total * (4 + DOUBLE)
    basis = k * total * DOUBLE + overhead_bytes
    l_cols = sum(min(k + oversample, n) for n in group_sizes.values())
    rand_fixed = basis + 3 * DOUBLE * sum(n * min(k + oversample, n) for n in group_sizes.values()) + l_cols**2
    gram_fixed = basis + 2 * DOUBLE * len(group_sizes) * num_rows**2

    def chunk_for(available: int) -> int:
        return min(max_chunk_rows, num_rows, max(0, available // row))

    if method in ("auto", "gram"):
        rows = chunk_for((budget_bytes - gram_fixed) // 2)  # half for the chunk, the rest for the slab
        slab = min(total, max(0, (budget_bytes - gram_fixed - rows * row) // (4 * num_rows)))
        gram_ok = rows >= 1 and slab >= 1
        if method == "gram":
            if not gram_ok:
                need = gram_fixed + row + 8 * num_rows
                raise AgoraError(f"{flag} {budget_bytes // 2**20} MB: the exact Gram SVD of N = {num_rows} needs "
                                 f"at least {need // 2**20 + 1} MB; raise it or use the randomized method")
            return StreamPlan("gram", rows, slab, gram_passes(group_sizes, slab), gram_fixed)
        if gram_ok and gram_fixed <= budget_bytes // 2 and gram_passes(group_sizes, slab) <= passes:
            return StreamPlan("gram", rows, slab, gram_passes(group_sizes, slab), gram_fixed)
    rows = chunk_for(budget_bytes - rand_fixed)
    if rows < 1:
        need = rand_fixed + row
        part = (f" ({overhead_bytes // 2**20} MB of it {overhead_hint})"
                if overhead_hint and 4 * overhead_bytes >= need else "")
        raise AgoraError(f"{flag} {budget_bytes // 2**20} MB: K = {k} over {total} residual values needs at least "
                         f"{need // 2**20 + 1} MB{part}; raise the budget or lower --k")
    return StreamPlan("randomized", rows, 0, passes, rand_fixed)


def stream_basis(source: RowSource, k: int, plan: StreamPlan, *, oversample: int = 24, seed: int = 0,
                 progress: Progress | None = None) -> dict[str, GroupBasis]:
    """Run `plan` (from `plan_stream`) on `source`."""
    if plan.method == "gram":
        return gram_basis(source, k, chunk_rows=plan.chunk_rows, slab_columns=plan.slab_columns,
                          progress=progress, seed=seed)
    return randomized_basis(source, k, chunk_rows=plan.chunk_rows, oversample=oversample, passes=plan.passes,
                            seed=seed, progress=progress)
