"""Offline basis extraction of AGORA-M (paper sec. 3.7, eq. 9; appendix 0.A.3 Tables 5-6).

`extract_basis` samples N tuples, streams their residuals through the SVD of `streaming_svd`
within a memory budget, and measures the basis on held-out tuples: per group and K, the
explained variance of the extraction set (Table 5's "avg. expl. var." is its mean over groups) and
the reconstruction MSE of held-out residuals projected onto the first K components.
"""

from __future__ import annotations

import json
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from agora_core.errors import AgoraWarning
from agora_core.mobile.basis_file import GaussianBasis
from agora_core.mobile.residual_source import GeneratorResiduals, RowSource
from agora_core.mobile.residuals import RESIDUAL_GROUPS, attribute_space
from agora_core.mobile.streaming_svd import Method, Progress, StreamPlan, chunk_ranges, plan_stream, stream_basis
from agora_core.mobile.tuples import EXTRACT, HELDOUT, ConditionPool, IdentityPrior, TupleSampler
from agora_core.models.agora_generator import AgoraGenerator

REPORT_KS = (8, 16, 32, 64, 128, 256)  # K values of the report table (those ≤ k, plus k)


@dataclass(frozen=True)
class ExtractConfig:
    """Settings of `agora extract-basis`."""

    n: int = 10_000  # tuples N (paper: 10 000)
    k: int = 64  # blendshapes per group K (paper: 64)
    seed: int = 0  # seeds the tuples and the SVD's start
    expressions_per_identity: int = 10  # tuples sharing one identity (identity branch once each)
    truncation_psi: float = 0.7  # mapping truncation (authors: 0.7)
    method: Method = "auto"  # gram (exact, N² memory), randomized (flat in N) or auto
    memory_budget_mb: int = 4096  # what the SVD and the residual chunks may use
    passes: int = 6  # randomized: passes over the tuples (= power iterations)
    oversample: int = 24  # randomized: extra subspace columns p
    heldout: int = 256  # held-out tuples for the reconstruction MSE
    batch_size: int = 16  # tuples per generator call


@dataclass
class ExtractReport:
    plan: str  # the StreamPlan, in words
    method: str
    passes: int
    chunk_rows: int
    rows: list[dict] = field(default_factory=list)  # {group, k, explained_variance, heldout_mse, heldout_explained, energy}
    average_explained: dict[int, float] = field(default_factory=dict)  # K -> mean over animated groups (Table 5)
    seconds: float = 0.0

    def to_dict(self) -> dict:
        out = asdict(self)
        out["average_explained"] = {str(k): v for k, v in self.average_explained.items()}
        return out


def report_ks(k: int) -> list[int]:
    return sorted({kk for kk in REPORT_KS if kk < k} | {k})


def heldout_errors(basis: GaussianBasis, source: RowSource, chunk_rows: int, ks: list[int],
                   progress: Progress | None = None) -> dict[str, dict[int, tuple[float, float]]]:
    """{group: {K: (MSE, explained fraction)}} of held-out residuals projected on the first K.

    Streams the rows; with orthonormal U, ‖r − c_K U_K‖² = ‖r‖² − ‖c_K‖² (float64 sums).
    """
    err = {g: {k: 0.0 for k in ks} for g in RESIDUAL_GROUPS}
    energy = dict.fromkeys(RESIDUAL_GROUPS, 0.0)
    dev_basis: dict[str, Tensor] = {}
    for a, b in chunk_ranges(source.num_rows, chunk_rows):
        rows = source.rows(a, b)
        for g in RESIDUAL_GROUPS:
            r = rows[g].double()
            u = dev_basis.setdefault(g, basis.basis[g].to(device=r.device, dtype=torch.float64))
            c2 = (r @ u.T).square().sum(0).cumsum(0)  # [K] cumulative captured energy
            total = float(r.square().sum())
            energy[g] += total
            for k in ks:
                err[g][k] += max(total - float(c2[k - 1]), 0.0)
        if progress is not None:
            progress(b - a)
    out = {}
    for g, d in RESIDUAL_GROUPS.items():
        count = source.num_rows * basis.num_gaussians * d
        out[g] = {k: (err[g][k] / count, 1.0 - err[g][k] / energy[g] if energy[g] > 0 else 1.0) for k in ks}
    return out


def residual_sources(generator: AgoraGenerator, config: ExtractConfig, pool: ConditionPool | None,
                     prior: IdentityPrior | None) -> tuple[GeneratorResiduals, GeneratorResiduals | None]:
    """(extraction source, held-out source or None) over disjoint tuple streams."""
    def source(stream: int, n: int) -> GeneratorResiduals:
        sampler = TupleSampler(z_dim=generator.config.z_dim, num_shape=generator.head.num_shape,
                               num_expr=generator.head.num_expr, expr_dim=generator.config.expr_cond_dim,
                               seed=config.seed, stream=stream,
                               expressions_per_identity=config.expressions_per_identity, pool=pool, prior=prior)
        return GeneratorResiduals(generator, sampler, n, config.truncation_psi, config.batch_size)

    return source(EXTRACT, config.n), source(HELDOUT, config.heldout) if config.heldout > 0 else None


def plan_extraction(source: GeneratorResiduals, config: ExtractConfig) -> StreamPlan:
    return plan_stream(config.method, source.num_rows, source.group_sizes, config.k,
                       config.memory_budget_mb * 2**20, source.working_bytes(), oversample=config.oversample,
                       passes=config.passes,
                       overhead_hint=f"is the generator's working memory at --batch-size {config.batch_size}: lower it")


def extract_basis(generator: AgoraGenerator, config: ExtractConfig, *, pool: ConditionPool | None = None,
                  prior: IdentityPrior | None = None, source_checkpoint: str = "",
                  progress: Progress | None = None, on_plan=None) -> tuple[GaussianBasis, ExtractReport]:
    """Sample, stream, factorise, evaluate (module docstring). `on_plan(plan)` is called first
    (the CLI sizes its progress bar with `plan.passes · n + heldout`)."""
    t0 = time.perf_counter()
    if config.k > config.n:  # n residual rows span at most n directions
        warnings.warn(AgoraWarning(f"--k {config.k} is more than --n {config.n} tuples: at most {config.n} "
                                   f"components carry information, the other {config.k - config.n} are zero"),
                      stacklevel=2)
    source, heldout = residual_sources(generator, config, pool, prior)
    plan = plan_extraction(source, config)
    if on_plan is not None:
        on_plan(plan)
    groups = stream_basis(source, config.k, plan, oversample=config.oversample, seed=config.seed, progress=progress)
    basis = GaussianBasis.from_groups(
        groups, source.num_gaussians, n=config.n, seed=config.seed, source_checkpoint=source_checkpoint,
        extra={"method": plan.method, "passes": str(plan.passes), "expressions_per_identity":
               str(config.expressions_per_identity), "truncation_psi": str(config.truncation_psi),
               "attribute_space": attribute_space(generator)})
    report = ExtractReport(plan.describe(), plan.method, plan.passes, plan.chunk_rows)
    ks = report_ks(config.k)
    errors = heldout_errors(basis, heldout, plan.chunk_rows, ks, progress) if heldout is not None else None
    active = [g for g in RESIDUAL_GROUPS if groups[g].energy > 0] or list(RESIDUAL_GROUPS)
    for k in ks:
        for g in RESIDUAL_GROUPS:
            mse, explained = errors[g][k] if errors else (float("nan"), float("nan"))
            report.rows.append({"group": g, "k": k, "explained_variance": float(basis.explained_variance[g][k - 1]),
                                "heldout_mse": mse, "heldout_explained": explained, "energy": groups[g].energy})
        # Table 5 averages the groups; a group the model never animates (zero energy) is left out
        report.average_explained[k] = sum(float(basis.explained_variance[g][k - 1]) for g in active) / len(active)
    report.seconds = time.perf_counter() - t0
    return basis, report


def write_extract_report(path: str | Path, config: ExtractConfig, report: ExtractReport, source: str) -> Path:
    """`<basis>.json` beside the basis: the resolved config, the source model and the report."""
    path = Path(path)
    path.write_text(json.dumps({"config": asdict(config), "source": source, "report": report.to_dict()}, indent=2))
    return path
