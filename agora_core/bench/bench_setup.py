"""Everything `agora bench` builds before timing: the model, one cached identity, its AGORA-M avatar.

Without a checkpoint the generator is a random initialisation of the chosen config; without a
basis / regressor, AGORA-M uses random ones of the right shapes. Neither changes the cost of a
frame (the same layers, the same matrix sizes), only the pixels, and the result says so. Random
blendshapes have rows of norm 0.01, so the blend moves attributes by ~1e-3 of their units: the
splats stay where the neutral's are and the rasterizer sees comparable work in both paths.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from agora_core.bench.reenactment import BenchConfig, BenchResult, benchmark_reenactment
from agora_core.devices import resolve_device
from agora_core.errors import AgoraError
from agora_core.mobile import CoefficientMLP, GaussianBasis, load_agora_model
from agora_core.mobile.residuals import RESIDUAL_GROUPS
from agora_core.mobile.tuples import EXTRACT, TupleSampler
from agora_core.mobile.blendshape_avatar import BlendshapeAvatar, check_basis_format
from agora_core.render import FLAME_CAMERA_RADIUS, orbit_cameras


def random_basis(num_gaussians: int, k: int, seed: int) -> GaussianBasis:
    """Random blendshapes [K, M·D_g] with rows of norm ≈ 0.01 (module docstring)."""
    gen = torch.Generator().manual_seed(seed)
    basis = {g: 0.01 * torch.randn(k, num_gaussians * d, generator=gen) / (num_gaussians * d) ** 0.5
             for g, d in RESIDUAL_GROUPS.items()}
    ones = {g: torch.ones(k) for g in RESIDUAL_GROUPS}
    return GaussianBasis(basis, ones, ones, num_gaussians, source_checkpoint="random")


def random_regressor(w_dim: int, expr_dim: int, k: int, hidden: int | tuple[int, ...], seed: int) -> CoefficientMLP:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        mlp = CoefficientMLP(w_dim, expr_dim, k, hidden)
    return mlp.eval()


def bench_identity(model, seed: int, truncation_psi: float, device: torch.device | str = "cpu"):
    """The one identity the benchmarks reenact (`IdentityCache`, and its FLAME shape [1, S]): tuple 0
    of the extract stream of `seed`, with the model's identity prior; `agora bench --device browser`
    bundles the same one."""
    g = model.generator
    sampler = TupleSampler(z_dim=g.config.z_dim, num_shape=g.head.num_shape, num_expr=g.head.num_expr,
                           expr_dim=g.config.expr_cond_dim, seed=seed, stream=EXTRACT, expressions_per_identity=1,
                           prior=model.prior)
    t = sampler.tuples(0, 1)
    with torch.no_grad():
        cache = g.identity(t.z.to(device), t.camera.to(device), t.shape.to(device), truncation_psi, noise_mode="const")
    return cache, t.shape.to(device)


def run_bench(checkpoint: str | Path | None, config: str | Path | None, device: str, bench: BenchConfig, *,
              gaussians: int | None = None, basis_path: str | Path | None = None, mlp_path: str | Path | None = None,
              k: int = 64, hidden: int = 256, executor: str = "torch", precision: str = "float32",
              basis_format: str = "float32") -> BenchResult:
    """Build (module docstring) and time `benchmark_reenactment`; `executor` (torch, onnxruntime or auto)
    runs AGORA's per-frame path in `precision` (float32, bfloat16 or auto), decided together by
    `export.onnx_executor.build_per_frame_path`; AGORA-M keeps its basis in `basis_format` (float32 or
    int16, `BlendshapeAvatar`); the result's model info records the three as they ran."""
    from agora_core.export.onnx_executor import build_per_frame_path, check_precision
    from agora_core.inference import imported_agora_m, is_imported_run

    check_precision(precision, executor)  # before any model is built
    dev = resolve_device(device)
    check_basis_format(basis_format, dev)
    if is_imported_run(checkpoint):  # AGORA-M from the run's imported pair unless --basis/--mlp say otherwise
        basis_path, mlp_path = imported_agora_m(checkpoint, basis_path, mlp_path)
    model = load_agora_model(checkpoint, config, device=dev, gaussians=gaussians, seed=bench.seed)
    g = model.generator
    if bench.resolution is None:
        bench = dataclasses.replace(bench, resolution=model.resolution)
    notes = []
    if model.random_init:
        notes.append(f"no checkpoint: AGORA is a randomly initialised model of {config}")
    if basis_path is not None:
        basis = GaussianBasis.load(basis_path)
        if basis.num_gaussians != g.num_gaussians:
            raise AgoraError(f"{basis_path}: basis of {basis.num_gaussians} Gaussians, the model has {g.num_gaussians} "
                             f"(drop --gaussians, or extract the basis at this grid)")
    else:
        basis = random_basis(g.num_gaussians, k, bench.seed)
        notes.append(f"no --basis: AGORA-M uses random K = {k} blendshapes (same cost, meaningless pixels)")
    if mlp_path is not None:
        mlp, _ = CoefficientMLP.load(mlp_path)
        if mlp.k != basis.k or mlp.w_dim != g.config.w_dim:
            raise AgoraError(f"{mlp_path}: regressor for K = {mlp.k}, w_dim = {mlp.w_dim}; the basis has K = {basis.k} "
                             f"and the model w_dim = {g.config.w_dim}")
    else:
        mlp = random_regressor(g.config.w_dim, g.config.expr_cond_dim, basis.k, hidden, bench.seed)
        notes.append(f"no --mlp: AGORA-M uses a random regressor (hidden {hidden})")
    cache, shape = bench_identity(model, bench.seed, bench.truncation_psi, dev)
    with torch.no_grad():
        avatar = BlendshapeAvatar.from_generator(g, cache, basis.to(dev), mlp.to(dev), basis_format=basis_format)
    if model.imported is not None:  # the authors' framing (DECA camera orbiting the root joint)
        camera = model.imported.cameras(shape)
    else:
        camera = orbit_cameras(torch.zeros(1), torch.zeros(1), radius=FLAME_CAMERA_RADIUS)
    onnx, deform_dtype = build_per_frame_path(executor, precision, g, cache, dev)
    info = {"executor": "onnxruntime" if onnx is not None else "torch",
            "precision": str(deform_dtype or cache.tap_features.dtype).removeprefix("torch."), "source": model.source,
            "random_init": model.random_init, "config": str(config) if config else None,
            "gaussians": g.num_gaussians, "uv_grid": g.config.gaussian_grid, "resolution": bench.resolution,
            "k": basis.k, "basis_format": basis_format, "mlp_hidden": mlp.hidden, "parameters": g.parameter_counts()}
    result = benchmark_reenactment(g, cache, avatar, camera, bench, dev, info, onnx, deform_dtype)
    result.notes.extend(notes)
    return result
