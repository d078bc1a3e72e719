"""An imported run folder: the authors' generator as files every later stage can read.

    RUN/imported.json        format, version, source file, the GeneratorConfig, head id, render size
    RUN/generator.safetensors our generator's tensors (converted, `official_checkpoint`)
    RUN/head.safetensors     the FLAME-with-mouth head and UV tables from the checkpoint (the user's
                             copy of their arrays; never part of this repository)
    RUN/basis.safetensors    AGORA-M blendshapes and regressor converted from their svd_basis.pt and
    RUN/mlp.safetensors      mlp_regressor.pt (`import_official_agora_m`; optional)

`import_official_checkpoint` writes all three into a temporary folder beside RUN and renames it
into place, so an interrupted import leaves nothing behind and an existing RUN is never touched.
`load_imported_run` reads them back into an `AgoraGenerator`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.numpy import load_file as load_numpy, save as save_numpy
from safetensors.torch import load_file as load_torch, save as save_torch

from agora_core.errors import AgoraError, check_finite, file_error
from agora_core.gaussians.files import atomic_write_bytes, read_json_manifest
from agora_core.head import FlameAssets, HeadModel, UVTables
from agora_core.models.agora_generator import AgoraGenerator
from agora_core.models.generator_config import GeneratorConfig

FORMAT = "agora-imported-run"
FORMAT_VERSION = 1
MANIFEST, WEIGHTS, HEAD = "imported.json", "generator.safetensors", "head.safetensors"
BASIS, MLP = "basis.safetensors", "mlp.safetensors"  # AGORA-M, from their svd_basis.pt / mlp_regressor.pt
_HEAD_ARRAYS = ("v_template", "faces", "shapedirs", "exprdirs", "posedirs", "J_regressor", "weights",
                "kintree_table", "uv_coords", "uv_faces")
_UV_ARRAYS = ("grid", "raster_vertices", "raster_bary", "residual_mask")


@dataclass
class ImportedRun:
    """A generator loaded from an imported run folder (eval mode, no grad)."""

    generator: AgoraGenerator
    manifest: dict
    folder: Path

    @property
    def resolution(self) -> int:
        return int(self.manifest["resolution"])


def _head_tensors(assets: FlameAssets) -> dict[str, np.ndarray]:
    out = {k: np.ascontiguousarray(getattr(assets, k)) for k in _HEAD_ARRAYS}
    if assets.eyelid_dirs is not None:
        out["eyelid_dirs"] = np.ascontiguousarray(assets.eyelid_dirs)
    if assets.uv_tables is not None:
        out.update({f"uv_{k}": np.ascontiguousarray(getattr(assets.uv_tables, k)) for k in _UV_ARRAYS})
    return out


def _head_from_file(path: Path, meta: dict) -> FlameAssets:
    try:
        arrays = load_numpy(str(path))
    except (OSError, SafetensorError, ValueError) as exc:
        raise file_error(path, f"not a readable head file ({str(exc).splitlines()[0][:120]})") from None
    missing = [k for k in _HEAD_ARRAYS if k not in arrays]
    if missing:
        raise file_error(path, f"missing head arrays {missing}")
    check_finite(arrays, path, "head array")
    uv = None
    if all(f"uv_{k}" in arrays for k in _UV_ARRAYS):
        uv = UVTables(**{k: arrays[f"uv_{k}"] for k in _UV_ARRAYS})
    try:
        return FlameAssets(**{k: arrays[k] for k in _HEAD_ARRAYS}, eyelid_dirs=arrays.get("eyelid_dirs"),
                           model_id=str(meta.get("head_model", "unknown")),
                           eyelids_after_skinning=bool(meta.get("eyelids_after_skinning", False)), uv_tables=uv)
    except AssertionError as exc:
        raise file_error(path, f"head arrays of inconsistent shapes ({exc})") from None


def import_official_checkpoint(source: str | Path, out: str | Path,
                               progress: Callable[[str], None] | None = None) -> Path:
    """Convert an authors' `checkpoint-*.pkl` into the run folder `out` (which must not exist yet).

    Steps reported through `progress`: read, convert, verify (a forward of the converted
    generator must give finite Gaussians), write. Returns `out`.
    """
    from agora_core.importer.official_checkpoint import read_official_checkpoint

    say = progress or (lambda step: None)
    source, out = Path(source), Path(out)
    _check_out(out)
    say("read")
    ckpt = read_official_checkpoint(source)
    return write_imported_run(ckpt, source, out, say)


def _check_out(out: Path) -> None:
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise AgoraError(f"{out}: already exists and is not an empty folder; pass a new --out")
    if out.parent.exists() and not out.parent.is_dir():
        raise AgoraError(f"{out}: its parent {out.parent} is not a folder")


def write_imported_run(ckpt, source: Path, out: Path, say: Callable[[str], None] = lambda step: None) -> Path:
    """The convert, verify and write steps of `import_official_checkpoint`, on a checkpoint already
    read (`official_checkpoint.OfficialCheckpoint`; benchmarks/import_full_size.py edits one first)."""
    from agora_core.importer.official_checkpoint import (
        convert_official_state,
        official_generator_config,
        official_head_assets,
    )

    _check_out(out)
    say("convert")
    config = official_generator_config(ckpt)
    assets = official_head_assets(ckpt)
    generator = AgoraGenerator(config, HeadModel(assets))
    state = convert_official_state(ckpt, generator)
    generator.load_state_dict(state)
    say("verify")
    _check_forward(generator.eval(), source)
    say("write")
    resolution = int(ckpt.config.get("img_resolution") or ckpt.attributes.get("img_resolution") or 512)
    manifest = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "source": str(source.resolve()),
        "source_weights": ckpt.source, "generator": dataclasses.asdict(config),
        "head_model": assets.model_id, "eyelids_after_skinning": True, "resolution": resolution,
        "camera": "deca",  # c = [axis-angle 3, s, tx, ty]; mapping label `render.cameras.deca_mapping_label`
        "num_gaussians": generator.num_gaussians,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    tmp.mkdir()
    try:
        # through atomic_write: every output's permissions (safetensors' own file writer makes 0600)
        atomic_write_bytes(tmp / WEIGHTS, save_torch({k: v.contiguous() for k, v in state.items()},
                                                     metadata={"format": FORMAT, "format_version": str(FORMAT_VERSION)}))
        atomic_write_bytes(tmp / HEAD, save_numpy(_head_tensors(assets), metadata={"head_model": assets.model_id}))
        atomic_write_bytes(tmp / MANIFEST, (json.dumps(manifest, indent=1) + "\n").encode())
        if out.exists():
            out.rmdir()  # empty (checked above)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


@torch.no_grad()
def _check_forward(generator: AgoraGenerator, source: Path) -> None:
    """One neutral avatar from the converted weights must be finite."""
    cfg = generator.config
    z = torch.randn(1, cfg.z_dim, generator=torch.Generator().manual_seed(0))
    label = torch.zeros(1, cfg.c_dim)
    shape = torch.zeros(1, generator.head.num_shape)
    from agora_core.inference import neutral_gaussians

    out = neutral_gaussians(generator, generator.identity(z, label, shape, 0.7, noise_mode="const"))
    check_finite({name: getattr(out, name) for name in ("means", "log_scales", "quats", "sh", "opacities")},
                 source, "(the file is damaged) converted generator output")


def _read_manifest(folder: Path) -> dict:
    return read_json_manifest(folder, MANIFEST, FORMAT, FORMAT_VERSION, "not an imported run (make one with `agora import`)")


def load_imported_head(folder: str | Path) -> HeadModel:
    """The head of an imported run folder alone (what an avatar made from it needs)."""
    folder = Path(folder)
    return HeadModel(_head_from_file(folder / HEAD, _read_manifest(folder)))


def load_imported_run(folder: str | Path, device: str | torch.device = "cpu") -> ImportedRun:
    """The generator of an imported run folder (written by `import_official_checkpoint`)."""
    folder = Path(folder)
    manifest_path = folder / MANIFEST
    manifest = _read_manifest(folder)
    try:
        config = GeneratorConfig(**manifest["generator"])
    except (KeyError, TypeError) as exc:
        raise file_error(manifest_path, f"bad generator config ({exc})") from None
    head = HeadModel(_head_from_file(folder / HEAD, manifest))
    generator = AgoraGenerator(config, head)
    weights_path = folder / WEIGHTS
    try:
        state = load_torch(str(weights_path))
    except (OSError, SafetensorError, ValueError) as exc:
        raise file_error(weights_path, f"not readable safetensors ({str(exc).splitlines()[0][:120]})") from None
    check_finite(state, weights_path, "generator tensor")
    try:
        generator.load_state_dict(state)
    except RuntimeError as exc:
        raise file_error(weights_path, f"weights do not match {MANIFEST} ({str(exc).splitlines()[0][:160]})") from None
    return ImportedRun(generator.to(device).eval().requires_grad_(False), manifest, folder)


def import_official_agora_m(basis_path: str | Path, mlp_path: str | Path, run: str | Path) -> tuple[Path, Path]:
    """Convert the authors' AGORA-M pair into RUN/basis.safetensors and RUN/mlp.safetensors.

    RUN must be an imported run (its Gaussian count and w size are checked against the files);
    existing AGORA-M files in RUN are refused rather than replaced.
    """
    from agora_core.importer.official_agora_m import read_official_basis, read_official_mlp

    run = Path(run)
    imported = load_imported_run(run)
    g = imported.generator
    basis = read_official_basis(basis_path, g.num_gaussians)
    mlp, val_loss = read_official_mlp(mlp_path, g.config.w_dim, basis.k)
    if mlp.expr_dim != g.config.expr_cond_dim:
        raise file_error(Path(mlp_path), f"the regressor takes {mlp.expr_dim} expression coefficients, "
                                         f"the imported model {g.config.expr_cond_dim}")
    for name in (BASIS, MLP):
        if (run / name).exists():
            raise AgoraError(f"{run / name}: already exists; remove it to import another AGORA-M pair")
    basis_out = basis.save(run / BASIS)
    mlp_out = mlp.save(run / MLP, train_mse=float("nan"), val_mse=val_loss,  # their file keeps no train MSE
                       extra={"attribute_space": "authors", "imported_from": str(Path(mlp_path).resolve())})
    return basis_out, mlp_out
