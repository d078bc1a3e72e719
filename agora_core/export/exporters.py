"""The three exports `agora export` runs: ONNX of the per-frame path, the web bundle, neutral .ply/.splat."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch

from agora_core.errors import AgoraError
from agora_core.export.onnx_export import (
    OnnxInputs,
    OnnxParity,
    check_onnx_parity,
    export_deformation_onnx,
    frame_inputs,
    write_identity_sidecar,
)
from agora_core.export.sources import load_avatar_source
from agora_core.export.web_bundle import write_web_bundle
from agora_core.gaussians import GaussianSet, write_ply, write_splat
from agora_core.gaussians.io_spz import write_spz
from agora_core.head import FlameParams
from agora_core.inference import imported_agora_m, is_imported_run
from agora_core.mobile.basis_file import GaussianBasis
from agora_core.mobile.coefficient_mlp import CoefficientMLP

PARITY_TUPLES = 3  # random (ψ, θ, eyelids) tuples checked through onnxruntime after export
PARITY_MAX_RELATIVE = 1e-4  # max abs error / max |value| per output (float32 graph vs float32 eager)


@dataclass
class OnnxReport:
    onnx_path: Path
    sidecar_path: Path
    num_gaussians: int
    parity: list[OnnxParity] = field(default_factory=list)

    @property
    def max_abs_error(self) -> float:
        return max(p.max_abs_error for p in self.parity)

    @property
    def max_relative_error(self) -> float:
        return max(p.max_relative_error for p in self.parity)


def random_frame_inputs(generator, cache, seed: int) -> OnnxInputs:
    """Inputs of one random frame: expression ~ N(0, 1), jaw ~ N(0, 0.1²), eyelids ~ U(0, 1), and the
    identity's tap features / styles with N(0, 0.1²) noise (so the check is not tied to one avatar)."""
    g = torch.Generator().manual_seed(seed)
    noisy = cache.map(lambda t: t + 0.1 * torch.randn(t.shape, generator=g) if t.is_floating_point() else t)
    expression = torch.randn(1, generator.head.num_expr, generator=g)
    jaw = 0.1 * torch.randn(1, 3, generator=g)
    return frame_inputs(generator, noisy, FlameParams(expression=expression, jaw=jaw, eyelids=torch.rand(1, 2, generator=g)))


def export_onnx(source: str | Path, out: str | Path, seed: int | None = None, truncation: float = 0.7,
                opset: int = 17) -> OnnxReport:
    """`deform.onnx` (+ `<out>.identity.safetensors`) for an avatar; checked and compared with PyTorch."""
    avatar = load_avatar_source(source, seed, truncation)
    out = Path(out)
    export_deformation_onnx(avatar.generator, avatar.cache, out, opset)
    sidecar = write_identity_sidecar(avatar.generator, avatar.cache, out.with_suffix(".identity.safetensors"),
                                     {"source": avatar.description})
    report = OnnxReport(out, sidecar, avatar.generator.num_gaussians)
    try:
        for i in range(PARITY_TUPLES):
            inputs = random_frame_inputs(avatar.generator, avatar.cache, i)
            report.parity.append(check_onnx_parity(avatar.generator, out, inputs))
        if not report.max_relative_error <= PARITY_MAX_RELATIVE:
            raise AgoraError(f"{out}: onnxruntime differs from PyTorch by {report.max_relative_error:.2e} (relative, "
                             f"> {PARITY_MAX_RELATIVE:g}); the exported graph is wrong, please report it")
    except AgoraError:  # a graph that failed its check is not left behind
        out.unlink(missing_ok=True)
        sidecar.unlink(missing_ok=True)
        raise
    return report


def read_agora_m(basis: str | Path, mlp: str | Path) -> tuple[GaussianBasis, CoefficientMLP]:
    """The AGORA-M pair named by --basis / --mlp (one-line errors naming the flag)."""
    for flag, path in (("--basis", Path(basis)), ("--mlp", Path(mlp))):
        if not path.is_file():
            raise AgoraError(f"{flag} {path}: file not found")
    return GaussianBasis.load(basis), CoefficientMLP.load(mlp)[0]


def export_web(source: str | Path, basis: str | Path | None, mlp: str | Path | None, out: str | Path,
               seed: int | None = None, truncation: float = 0.7, sequence: str | Path | None = None) -> Path:
    """The static AGORA-M viewer bundle in `out` (see `web_bundle`). Without --basis/--mlp an imported
    run's own AGORA-M pair is used."""
    if basis is None or mlp is None:
        if not is_imported_run(source):
            raise AgoraError("--basis and --mlp are required (the AGORA-M files of agora extract-basis / fit-mlp)")
        basis, mlp = imported_agora_m(source, basis, mlp)
    b, m = read_agora_m(basis, mlp)  # cheap checks before the generator runs
    seq = None
    if sequence is not None:
        path = Path(sequence)
        if not path.is_file():
            raise AgoraError(f"--sequence {path}: file not found")
        try:
            seq = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise AgoraError(f"--sequence {path}: not JSON ({exc.msg} at line {exc.lineno})") from None
    avatar = load_avatar_source(source, seed, truncation)
    return write_web_bundle(out, avatar.neutral, avatar.w, b, m, seq,
                            {"avatar": avatar.description, "basis": str(basis), "mlp": str(mlp)})


def export_neutral(source: str | Path, out: str | Path, kind: Literal["ply", "splat", "spz"], seed: int | None = None,
                   truncation: float = 0.7, sh_degree: int | None = None) -> Path:
    """The avatar's neutral Gaussians as an INRIA .ply, an antimatter15 .splat or a Niantic .spz."""
    return write_gaussians(out, load_avatar_source(source, seed, truncation).neutral, kind, sh_degree)


def write_gaussians(out: str | Path, gaussians: GaussianSet, kind: Literal["ply", "splat", "spz"],
                    sh_degree: int | None = None) -> Path:
    """One set of Gaussians (batch 1) as a file of `kind`; `sh_degree` (ply only) pads to 0–3."""
    if sh_degree is not None and kind != "ply":
        raise AgoraError(f"--sh-degree applies to .ply only, not .{kind}")
    if sh_degree is not None and not gaussians.sh_degree <= sh_degree <= 3:
        raise AgoraError(f"--sh-degree {sh_degree}: must be {gaussians.sh_degree} to 3 (the model's SH degree is "
                         f"{gaussians.sh_degree}; higher bands are written as zeros)")
    if kind == "ply":
        return write_ply(out, gaussians, sh_degree=sh_degree)
    if kind == "splat":
        return write_splat(out, gaussians)
    return write_spz(out, gaussians)
