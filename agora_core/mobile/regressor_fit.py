"""Fitting the coefficient regressor f_mlp (paper sec. 3.7, eq. 10; appendix 0.A.3 Table 6).

Targets are the coefficients c = ΔA Uᵀ of fresh residuals (the `FIT_MLP` tuple stream, new seeds)
projected on the extracted basis. With orthonormal U, ‖ΔA − ĉU‖² = ‖c − ĉ‖² + const per group,
so MSE on raw coefficients is the attribute reconstruction error the MLP adds. Groups live in
different units (metres, log-scale, quaternion, opacity), so the loss divides each group by its
RMS coefficient on the training split (the net learns c/s_g; s_g is folded into the last layer at
the end). Reported MSEs (Table 6) are on raw coefficients, mean over all 4K outputs.

Resumable: `<out>.data.safetensors` caches the projected dataset (keyed by the basis and the
sampling settings) and `<out>.state.pt` holds epoch, weights, best weights and the optimiser after
every epoch (atomic writes). A run asked for the same settings continues from the saved epoch and
ends where an uninterrupted run would: shuffling and the learning-rate schedule are functions of
(seed, epoch).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import torch
from torch import Tensor

from agora_core.errors import AgoraError, check_finite
from agora_core.gaussians.files import atomic_write
from agora_core.mobile.basis_file import GaussianBasis
from agora_core.mobile.coefficient_mlp import CoefficientMLP, join_groups, split_groups
from agora_core.mobile.files import save_tensors
from agora_core.mobile.residual_source import GeneratorResiduals
from agora_core.mobile.residuals import RESIDUAL_GROUPS
from agora_core.mobile.streaming_svd import chunk_ranges
from agora_core.mobile.tuples import FIT_MLP, ConditionPool, IdentityPrior, TupleSampler
from agora_core.models.agora_generator import AgoraGenerator

STATE_FORMAT = "agora-mlp-fit-state"
STATE_VERSION = 1


@dataclass(frozen=True)
class FitConfig:
    """Settings of `agora fit-mlp`."""

    n: int = 10_000  # fresh tuples projected on the basis
    expressions_per_identity: int = 10  # tuples per identity
    seed: int = 1  # tuple seed (the FIT_MLP stream is disjoint from extraction's anyway)
    truncation_psi: float = 0.7  # mapping truncation, as in extraction
    hidden: int = 256  # H, width of the hidden layer
    epochs: int = 300  # passes over the training split
    batch_size: int = 256  # minibatch
    lr: float = 1e-3  # Adam learning rate, cosine-annealed to lr_final (authors' schedule)
    lr_final: float = 1e-5  # ...
    val_fraction: float = 0.1  # held-out share for the val MSE (authors: 10 %)
    chunk_rows: int = 64  # tuples generated at a time


@dataclass
class RegressorData:
    inputs: Tensor  # [N, I] regressor inputs [w, ψ, jaw, eyelids]
    targets: Tensor  # [N, 4K] projected coefficients
    w_dim: int
    expr_dim: int


@dataclass
class FitReport:
    epoch: int = 0  # epochs done
    best_epoch: int = 0  # epoch of the weights written
    train_mse: float = math.nan  # raw-coefficient MSE at best_epoch
    val_mse: float = math.nan  # ...
    val_mse_groups: dict[str, float] = field(default_factory=dict)  # per group, at best_epoch
    history: list[dict] = field(default_factory=list)  # {epoch, train_mse, val_mse, lr}
    resumed_from: int = 0  # epoch a resumed run started after (0 = fresh)


def data_key(basis: GaussianBasis, config: FitConfig, source: str) -> str:
    """What the projected dataset depends on: the basis values, the sampling settings, the model."""
    h = hashlib.sha256()
    for g in RESIDUAL_GROUPS:
        flat = basis.basis[g].reshape(-1)
        h.update(flat[:: max(1, flat.numel() // 65536)].float().contiguous().numpy().tobytes())  # a sample
        h.update(basis.singular_values[g].float().contiguous().numpy().tobytes())
    h.update(repr((config.n, config.expressions_per_identity, config.seed, config.truncation_psi, source)).encode())
    return h.hexdigest()[:32]


@torch.no_grad()
def regressor_dataset(source: GeneratorResiduals, basis: GaussianBasis, chunk_rows: int,
                      progress: Callable[[int], None] | None = None) -> RegressorData:
    """Inputs and projected coefficients of every tuple of `source`."""
    dev_basis = basis.to(source.device)
    inputs, targets = [], []
    for a, b in chunk_ranges(source.num_rows, chunk_rows):
        chunk = source.chunk(a, b)
        inputs.append(chunk.conditions.float().cpu())
        targets.append(join_groups(dev_basis.project(chunk.residuals)).float().cpu())
        if progress is not None:
            progress(b - a)
    g = source.generator
    return RegressorData(torch.cat(inputs), torch.cat(targets), g.config.w_dim, g.config.expr_cond_dim)


def save_regressor_data(path: str | Path, data: RegressorData, key: str) -> None:
    save_tensors(path, {"inputs": data.inputs, "targets": data.targets},
                 {"format": "agora-mlp-data", "format_version": 1, "key": key, "w_dim": data.w_dim,
                  "expr_dim": data.expr_dim})


def load_regressor_data(path: str | Path, key: str) -> RegressorData | None:
    """The cached dataset if it exists and was made for `key`, else None."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        return None
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            if meta.get("key") != key:
                return None
            data = RegressorData(f.get_tensor("inputs"), f.get_tensor("targets"), int(meta["w_dim"]),
                                 int(meta["expr_dim"]))
        check_finite([data.inputs, data.targets], path, "cache tensor")
        return data
    except Exception:  # noqa: BLE001 - a damaged cache is regenerated, never trusted
        return None


def split_train_val(n: int, val_fraction: float, seed: int) -> tuple[Tensor, Tensor]:
    """Disjoint index sets (train, val), val = round(val_fraction·n) ≥ 1 (if n > 1)."""
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    n_val = min(n - 1, max(1, round(val_fraction * n))) if n > 1 else 0
    return perm[n_val:], perm[:n_val]


def cosine_lr(epoch: int, config: FitConfig) -> float:
    """Learning rate of epoch (0-based), cosine from lr to lr_final over config.epochs."""
    t = min(epoch / max(config.epochs - 1, 1), 1.0)
    return config.lr_final + 0.5 * (config.lr - config.lr_final) * (1 + math.cos(math.pi * t))


def _atomic_torch_save(obj: dict, path: Path) -> None:
    with atomic_write(path) as f:
        torch.save(obj, f)


def _load_state(path: Path, key: str, config: FitConfig) -> dict | None:
    """The saved fit state when it belongs to this data and these settings, else None."""
    if not path.is_file():
        return None
    from agora_core.torch_files import read_torch_file

    state = read_torch_file(path, "fit-mlp state", "delete it to start the fit afresh")
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT or state.get("format_version") != STATE_VERSION:
        raise AgoraError(f"{path}: not an agora fit-mlp state file; delete it or choose another --out")
    check_finite({k: state.get(k) for k in ("model", "optimizer", "best_model")}, path, "fit-mlp state entry")
    same = {k: v for k, v in asdict(config).items() if k != "epochs"}
    if state.get("data_key") != key or state.get("config") != same:
        return None  # other data or settings: start afresh (the file is overwritten)
    return state


def fit_coefficient_mlp(data: RegressorData, k: int, config: FitConfig, state_path: str | Path | None = None,
                        key: str = "", on_epoch: Callable[[FitReport], None] | None = None
                        ) -> tuple[CoefficientMLP, FitReport]:
    """Train f_mlp on (inputs, coefficients), resuming from `state_path` when it matches.

    Returns the best-validation weights with the output scale folded in (raw coefficients).
    """
    n = data.inputs.shape[0]
    assert data.targets.shape == (n, len(RESIDUAL_GROUPS) * k), (data.targets.shape, k)
    train_idx, val_idx = split_train_val(n, config.val_fraction, config.seed)
    x_train, y_train = data.inputs[train_idx], data.targets[train_idx]
    x_val, y_val = data.inputs[val_idx], data.targets[val_idx]
    # group RMS of the training coefficients: the loss weighs groups by relative error
    rms = {g: c.square().mean().sqrt().clamp(min=1e-12) for g, c in split_groups(y_train, k).items()}
    scale = join_groups({g: rms[g].expand(k) for g in RESIDUAL_GROUPS})

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        model = CoefficientMLP(data.w_dim, data.expr_dim, k, config.hidden)
    model.set_input_normalisation(x_train)
    opt = torch.optim.Adam(model.parameters(), lr=config.lr)
    report = FitReport()
    best_state = {name: t.clone() for name, t in model.state_dict().items()}
    best_val = math.inf
    state_path = Path(state_path) if state_path is not None else None
    same = {kk: v for kk, v in asdict(config).items() if kk != "epochs"}
    state = _load_state(state_path, key, config) if state_path is not None else None
    if state is not None:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        best_state, best_val = state["best_model"], state["best_val"]
        report = FitReport(**{**state["report"], "history": list(state["report"]["history"])})
        report.resumed_from = report.epoch

    def mse(x: Tensor, y: Tensor, m: CoefficientMLP) -> tuple[float, dict[str, float]]:
        with torch.no_grad():
            err = (m(x) * scale - y).square()
        groups = {g: float(e.mean()) for g, e in split_groups(err, k).items()}
        return float(err.mean()), groups

    for epoch in range(report.epoch, config.epochs):
        lr = cosine_lr(epoch, config)
        for group in opt.param_groups:
            group["lr"] = lr
        model.train()
        perm = torch.randperm(x_train.shape[0], generator=torch.Generator().manual_seed(config.seed * 100_003 + epoch))
        for i in range(0, x_train.shape[0], config.batch_size):
            idx = perm[i:i + config.batch_size]
            loss = (model(x_train[idx]) - y_train[idx] / scale).square().mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        model.eval()
        train_mse, _ = mse(x_train, y_train, model)
        if not math.isfinite(train_mse):
            raise AgoraError(f"fit-mlp: the training MSE became {train_mse} at epoch {epoch + 1}; lower --lr")
        val_mse, val_groups = mse(x_val, y_val, model) if len(val_idx) else (train_mse, {})
        report.epoch = epoch + 1
        report.history.append({"epoch": epoch + 1, "train_mse": train_mse, "val_mse": val_mse, "lr": lr})
        if val_mse < best_val:
            best_val = val_mse
            best_state = {name: t.clone() for name, t in model.state_dict().items()}
            report.best_epoch, report.train_mse, report.val_mse = epoch + 1, train_mse, val_mse
            report.val_mse_groups = val_groups
        if state_path is not None:
            _atomic_torch_save({"format": STATE_FORMAT, "format_version": STATE_VERSION, "data_key": key,
                                "config": same, "model": model.state_dict(), "optimizer": opt.state_dict(),
                                "best_model": best_state, "best_val": best_val, "report": asdict(report)},
                               state_path)
        if on_epoch is not None:
            on_epoch(report)
    model.load_state_dict(best_state)
    model.fold_output_scale(scale)
    return model.eval(), report


def fit_paths(out: str | Path) -> tuple[Path, Path]:
    """(dataset cache, fit state) beside the output `mlp.safetensors`."""
    out = Path(out)
    return out.with_name(out.name + ".data.safetensors"), out.with_name(out.name + ".state.pt")


def fit_mlp(generator: AgoraGenerator, basis: GaussianBasis, config: FitConfig, out: str | Path, *,
            pool: ConditionPool | None = None, prior: IdentityPrior | None = None, source: str = "",
            data_progress: Callable[[int], None] | None = None,
            on_epoch: Callable[[FitReport], None] | None = None) -> tuple[CoefficientMLP, FitReport]:
    """Project fresh tuples on `basis`, train f_mlp (resumably) and write `out` (mlp.safetensors)."""
    if basis.num_gaussians != generator.num_gaussians:
        raise AgoraError(f"basis of {basis.num_gaussians} Gaussians, but the model has {generator.num_gaussians}; "
                         f"extract the basis from this checkpoint (agora extract-basis)")
    data_path, state_path = fit_paths(out)
    key = data_key(basis, config, source)
    data = load_regressor_data(data_path, key)
    if data is None:
        sampler = TupleSampler(z_dim=generator.config.z_dim, num_shape=generator.head.num_shape,
                               num_expr=generator.head.num_expr, expr_dim=generator.config.expr_cond_dim,
                               seed=config.seed, stream=FIT_MLP, expressions_per_identity=config.expressions_per_identity,
                               pool=pool, prior=prior)
        residuals = GeneratorResiduals(generator, sampler, config.n, config.truncation_psi)
        data = regressor_dataset(residuals, basis, config.chunk_rows, data_progress)
        save_regressor_data(data_path, data, key)
    elif data_progress is not None:
        data_progress(config.n)
    model, report = fit_coefficient_mlp(data, basis.k, config, state_path, key, on_epoch)
    model.save(out, report.train_mse, report.val_mse,
               extra={"best_epoch": report.best_epoch, "epochs": report.epoch, "n": config.n, "seed": config.seed,
                      "source_checkpoint": source})
    return model, report


def write_fit_report(path: str | Path, config: FitConfig, report: FitReport, source: str, basis_path: str) -> Path:
    """`<mlp>.json` beside the regressor: the resolved config, its inputs and the Table-6 report."""
    import json

    path = Path(path)
    path.write_text(json.dumps({"config": asdict(config), "source": source, "basis": str(basis_path),
                                "report": asdict(report)}, indent=2))
    return path
