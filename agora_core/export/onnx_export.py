"""ONNX export of AGORA's per-frame path: deformation branch G_d + UV sampling + lifting (sec. 3.4-3.5).

What runs per frame in `AgoraGenerator.animate()` after FLAME is one graph here:

    e = [ψ, θ_jaw, eyelids]  ->  D_uv = G_d(w, e; f) (eq. 7)  ->  A_D = GridSample(D_uv, x_uv) (eq. 4)
    ->  𝒜 = compose(𝒜_M(A_M, Interpolate(M(β, ψ, θ), x_uv)), A_D · m) (eq. 5, sec. 3.4)

FLAME itself (LBS) stays outside (it is cheap, and every runtime already has it): the posed mesh's
points at the UV samples are an input, computed with `mesh_points_at_samples` (or any FLAME
implementation + `head.uv.interpolate` with the face indices and barycentrics of the sidecar file).
The identity branch runs once per avatar; its outputs are inputs: the 64² tap features f, the
styles ws and the raw identity attributes A_M at the UV samples. Our G_d starts its skip image
from zero; the authors' starts from the identity's, so a model imported from their release
(`attribute_layout="authors"`) has one more input, the tap's skip image.

Inputs (batch 1, float32):  tap_features [1, C_tap, T, T], ws [1, num_ws, w_dim],
raw_main [1, M, C_main], mesh_points [1, M, 3], expression [1, E] (E = expr_cond_dim, 50 for the
paper), jaw [1, 3], eyelids [1, 2]; imported models also tap_skip_image [1, C_img, T, T].
Outputs: means [1, M, 3], log_scales [1, M, 3], quats [1, M, 4] (wxyz unit; for imported models
the authors' column-normalised quaternions, normalised per Gaussian by the rasteriser), opacities [1, M].

Mesh points are Interpolate(M(β, ψ, θ), x_uv) as the generator anchors them (`mesh_points_at_samples`):
barycentric in the sample's face for our models (the sidecar's face indices and barycentrics), the
mesh's UV position map sampled bilinearly for imported ones (`uv_anchor="position_map"`, recorded
in the sidecar's metadata).

Noise inputs of G_d use each layer's constant buffer ("const"), as reenactment does. The batch is
fixed to 1: a browser or phone animates one avatar at a time.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from agora_core.errors import AgoraError
from agora_core.head import FlameParams
from agora_core.models.agora_generator import AgoraGenerator, IdentityCache
from agora_core.models.deformation_branch import expression_condition
from agora_core.models.lifting import lift_gaussians

OPSET = 17  # GridSample (bilinear, border) needs >= 16; 17 is onnxruntime-web's well-trodden opset
INPUT_NAMES = ("tap_features", "ws", "raw_main", "mesh_points", "expression", "jaw", "eyelids")
AUTHORS_INPUTS = ("tap_skip_image",)  # the authors' layout: G_d starts from the identity's skip image
OUTPUT_NAMES = ("means", "log_scales", "quats", "opacities")
SIDECAR_FORMAT = "agora-onnx-identity"
FORMAT_VERSION = 1


class DeformationLifting(nn.Module):
    """The per-frame graph of `AgoraGenerator.animate` after FLAME (see module docstring)."""

    def __init__(self, generator: AgoraGenerator):
        super().__init__()
        if generator.deformation_branch is None:
            raise AgoraError("generator.deformation_branch: this checkpoint is a single-branch model "
                             "(no deformation branch to export); animate it with FLAME alone")
        self.config = generator.config
        self.generator = generator  # only G_d, the UV sampling and lifting run (and so are traced)

    def forward(self, tap_features: Tensor, ws: Tensor, raw_main: Tensor, mesh_points: Tensor,
                expression: Tensor, jaw: Tensor, eyelids: Tensor, tap_skip_image: Tensor | None = None
                ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Animated Gaussian attributes (means, log_scales, quats, opacities), shapes as above."""
        cfg = self.config
        assert expression.shape[1] == cfg.expr_cond_dim, (expression.shape, cfg.expr_cond_dim)
        e = expression_condition(FlameParams(expression=expression, jaw=jaw, eyelids=eyelids), cfg.expr_cond_dim)
        deform = self.generator.deformation_attributes(tap_features, ws, e, tap_skip_image, noise_mode="const")
        gaussians, _ = lift_gaussians(raw_main, mesh_points, deform, self.generator.residual_mask, cfg)
        return gaussians.means, gaussians.log_scales, gaussians.quats, gaussians.opacities


def input_names(generator: AgoraGenerator) -> tuple[str, ...]:
    """The graph's inputs for `generator` (module docstring)."""
    return INPUT_NAMES + (AUTHORS_INPUTS if generator.config.attribute_layout == "authors" else ())


@dataclass
class OnnxInputs:
    """One set of named inputs of `DeformationLifting` (batch 1)."""

    tap_features: Tensor
    ws: Tensor
    raw_main: Tensor
    mesh_points: Tensor
    expression: Tensor
    jaw: Tensor
    eyelids: Tensor
    tap_skip_image: Tensor | None = None  # imported models only

    @property
    def names(self) -> tuple[str, ...]:
        return INPUT_NAMES + (AUTHORS_INPUTS if self.tap_skip_image is not None else ())

    def as_tuple(self) -> tuple[Tensor, ...]:
        return tuple(getattr(self, n) for n in self.names)

    def as_numpy(self) -> dict[str, np.ndarray]:
        return {n: getattr(self, n).detach().cpu().numpy().astype(np.float32) for n in self.names}


def mesh_points_at_samples(generator: AgoraGenerator, flame: FlameParams) -> Tensor:
    """Interpolate(M(β, ψ, θ), x_uv) (eq. 5) as `animate` computes it: [B, M, 3], global pose zero.
    The graph animates expression, jaw and eyelids only: neck and eyes are taken as zero."""
    return generator.mesh_points(generator.head(flame.replace(neck=None, eyes=None)))


def frame_inputs(generator: AgoraGenerator, cache: IdentityCache, flame: FlameParams) -> OnnxInputs:
    """Inputs for one frame: cached identity (batch 1) + one frame's expression, jaw and eyelids."""
    assert cache.batch_size == 1 and flame.batch_size == 1, (cache.batch_size, flame.batch_size)
    points = mesh_points_at_samples(generator, flame.replace(shape=cache.shape))
    expr = flame.padded(n_expr=generator.config.expr_cond_dim).expression
    skip = cache.tap_skip_image if generator.config.attribute_layout == "authors" else None
    return OnnxInputs(cache.tap_features, cache.ws, cache.raw_main, points.to(cache.raw_main.dtype),
                      expr, flame.jaw, flame.eyelids, skip)


def export_deformation_onnx(generator: AgoraGenerator, cache: IdentityCache, path: str | Path,
                            opset: int = OPSET) -> Path:
    """Write `DeformationLifting(generator)` to `path` (legacy TorchScript exporter) and check it.

    Args:
        cache: a batch-1 identity (its tensors give the example inputs' shapes).
    Returns:
        the written path; `onnx.checker.check_model` has passed on it.
    """
    import onnx

    if opset < 16:
        raise AgoraError(f"--opset {opset}: GridSample needs ONNX opset >= 16 (use 17)")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    module = DeformationLifting(generator).eval()
    b = 1
    e = generator.config.expr_cond_dim
    example = frame_inputs(generator, cache.detach(),
                           FlameParams.zeros(b, n_expr=e, device=cache.raw_main.device, dtype=cache.raw_main.dtype))
    with torch.no_grad(), warnings.catch_warnings():
        # Shape asserts become trace-time constants (batch 1 is fixed anyway); the legacy exporter is
        # deprecated in favour of dynamo, which needs onnxscript (not a dependency).
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(module, example.as_tuple(), str(path), input_names=list(example.names),
                          output_names=list(OUTPUT_NAMES), opset_version=opset, dynamo=False,
                          do_constant_folding=True, external_data=False)
    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)
    meta = {"format": "agora-deform-onnx", "format_version": str(FORMAT_VERSION),
            "num_gaussians": str(generator.num_gaussians), "expr_cond_dim": str(e),
            "inputs": ",".join(example.names),
            "config": json.dumps(_config_dict(generator))}
    for key, value in meta.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(model, str(path))
    return path


def _config_dict(generator: AgoraGenerator) -> dict:
    from dataclasses import asdict

    return asdict(generator.config)


def write_identity_sidecar(generator: AgoraGenerator, cache: IdentityCache, path: str | Path,
                           metadata: dict[str, str] | None = None) -> Path:
    """The per-avatar inputs of the ONNX graph + what a runtime needs around it (safetensors).

    Tensors: tap_features, ws, raw_main (and tap_skip_image for imported models: the graph's inputs), shape [1, S] (FLAME β),
    sample_face_idx [M] int64 + sample_bary [M, 3] (mesh points = Σ bary · V[faces[face_idx]]),
    sh [M, K, 3] (colours are not animated: the neutral SH of the avatar).
    """
    from agora_core.models.lifting import canonical_gaussians

    c = cache.detach()
    with torch.no_grad():
        neutral = FlameParams.zeros(1, n_expr=generator.config.expr_cond_dim, device=c.shape.device,
                                    dtype=c.shape.dtype)
        points = mesh_points_at_samples(generator, neutral.replace(shape=c.shape))
        sh = canonical_gaussians(c.raw_main, points.to(c.raw_main.dtype), generator.config).sh[0]
    tensors = {"tap_features": c.tap_features, "ws": c.ws, "raw_main": c.raw_main, "shape": c.shape,
               "sample_face_idx": generator.sample_face_idx.long(), "sample_bary": generator.sample_bary,
               "sh": sh}
    if generator.config.attribute_layout == "authors":
        tensors["tap_skip_image"] = c.tap_skip_image
    meta = {"format": SIDECAR_FORMAT, "format_version": str(FORMAT_VERSION), "uv_anchor": generator.config.uv_anchor,
            **(metadata or {})}
    path = Path(path)
    from agora_core.mobile.files import save_tensors

    return save_tensors(path, {k: v.float() if v.is_floating_point() else v for k, v in tensors.items()}, meta)


@dataclass
class OnnxParity:
    """PyTorch vs onnxruntime on one set of inputs: max abs error and its ratio to max |value|."""

    max_abs_error: float
    max_relative_error: float  # max abs error / max |reference| over each output, then the max
    per_output: dict[str, float]


def check_onnx_parity(generator: AgoraGenerator, path: str | Path, inputs: OnnxInputs) -> OnnxParity:
    """Run the exported graph through onnxruntime and `DeformationLifting` in PyTorch; compare."""
    import onnxruntime as ort

    module = DeformationLifting(generator).eval()
    with torch.no_grad():
        ref = [t.numpy() for t in module(*inputs.as_tuple())]
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(list(OUTPUT_NAMES), inputs.as_numpy())
    per, rel = {}, 0.0
    for name, r, g in zip(OUTPUT_NAMES, ref, got):
        assert r.shape == g.shape, (name, r.shape, g.shape)
        for runtime, values in (("PyTorch", r), ("onnxruntime", g)):  # NaN compares as "no error": refuse it
            if not np.isfinite(values).all():
                raise AgoraError(f"{path}: output '{name}' of {runtime} holds NaN or inf; the parity check fails")
        err = float(np.abs(r - g).max())
        per[name] = err
        rel = max(rel, err / max(float(np.abs(r).max()), 1e-12))
    return OnnxParity(max(per.values()), rel, per)
