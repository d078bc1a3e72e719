"""From UV planes to 3D Gaussians: sampling (eq. 4), 3D lifting (eq. 5), composition (sec. 3.4-3.5).

Channel layouts (raw, pre-activation):
- identity planes F_uv: position offset 3 | log-scale 3 | rotation 4 (wxyz) | colour 3·(deg+1)²
  (coefficient-major) | opacity 1;
- deformation planes D_uv: Δμ 3 | Δlog-scale 3 | Δq 3 (rotation vector) — the paper's
  A_D = {Δμ, Δs, Δq}: no colour or opacity residuals (sec. 3.4).

Composition: μ = Interpolate(M, x_uv) + position_offset(raw) + position_residual(Δ·m);
log s = log_scale(raw) + log_scale_residual(Δ·m); q = rotation(raw) ⊗ rotation_residual(Δ·m),
with m the facial residual mask (0/1 per Gaussian). All residual activations are zero-centred, so
a masked residual changes nothing (unlike the authors' log-scale residual, see
`gaussians.activations`).
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import Tensor

from agora_core.gaussians import (
    GaussianSet,
    colour_sh,
    compose_residuals,
    log_scale,
    log_scale_residual,
    normalize_quat,
    normalize_quat_columns,
    opacity,
    position_offset,
    position_residual,
    quat_multiply,
    rotation,
    rotation_axis_angle,
    rotation_residual,
)
from agora_core.head import UVSamples
from agora_core.models.generator_config import GeneratorConfig

DEFORM_CHANNELS = 9  # Δμ 3, Δlog-scale 3, Δq 3
BETA_LOSS_OFFSET = 2.20727  # -(log 0.1 + log 1.1): makes the Beta loss 0 at α ∈ {0, 1} (GGHEAD)


def main_channel_slices(sh_degree: int, rotation_channels: int = 4) -> dict[str, slice]:
    """Slices of the identity planes' channels: position, scale, rotation, colour, opacity.

    rotation_channels: 4 (quaternion, paper layout) or 3 (axis-angle, the authors' layout)."""
    k3, r = 3 * (sh_degree + 1) ** 2, 6 + rotation_channels
    return {"position": slice(0, 3), "scale": slice(3, 6), "rotation": slice(6, r),
            "colour": slice(r, r + k3), "opacity": slice(r + k3, r + k3 + 1)}


DEFORM_SLICES = {"position": slice(0, 3), "scale": slice(3, 6), "rotation": slice(6, 9)}


def sample_uv_attributes(planes: Tensor, samples: UVSamples, padding_mode: str = "border") -> Tensor:
    """A = GridSample(F_uv, x_uv) (eq. 4): bilinear, align_corners=False, border padding (the
    authors' code pads attributes with zeros and positions with the border).

    Args:
        planes: [B, C, R, R] UV planes (row 0 is v = 1).
        samples: the M UV sample points x_uv.
    Returns:
        [B, M, C] raw attributes per Gaussian.
    """
    assert planes.ndim == 4 and planes.shape[2] == planes.shape[3], planes.shape
    b, m = planes.shape[0], samples.num_samples
    grid = samples.grid_coords().to(device=planes.device, dtype=planes.dtype)
    grid = grid[None, None].expand(b, 1, m, 2)
    out = F.grid_sample(planes, grid, mode="bilinear", padding_mode=padding_mode, align_corners=False)
    return out[:, :, 0].transpose(1, 2)  # [B, C, 1, M] -> [B, M, C]


def _masked(raw: Tensor, mask: Tensor | None) -> Tensor:
    """raw [B, M, C] times mask [M] (None = no mask)."""
    return raw if mask is None else raw * mask.to(raw.dtype)[None, :, None]


def canonical_gaussians(raw_main: Tensor, mesh_points: Tensor, config: GeneratorConfig,
                        static: GaussianSet | None = None) -> GaussianSet:
    """The Gaussians of the identity branch alone, anchored to the mesh (eq. 5, sec. 3.5).

    Args:
        raw_main: [B, M, C] raw identity attributes (layout: `main_channel_slices`).
        mesh_points: [B, M, 3] Interpolate(M(β, ψ, θ), x_uv).
        static: `canonical_attributes(raw_main, config)` when already at hand (the same values).
    Returns:
        GaussianSet with μ = mesh point + γ_pos·tanh(raw), bounded log-scale, sigmoid opacity.
    """
    static = canonical_attributes(raw_main, config) if static is None else static
    return dataclasses.replace(static, means=mesh_points + static.means)


def canonical_attributes(raw_main: Tensor, config: GeneratorConfig) -> GaussianSet:
    """What `canonical_gaussians` computes from the identity alone, the expression not entering:
    `means` holds the offsets γ_pos·tanh(raw) from the mesh points (the rest is final). An
    avatar's frames share it (`IdentityCache.static_attributes`)."""
    sl = main_channel_slices(config.sh_degree, config.rotation_channels)
    rot = raw_main[..., sl["rotation"]]
    o = config.activation_overshoot
    return GaussianSet(
        means=position_offset(raw_main[..., sl["position"]], config.gamma_pos),
        log_scales=log_scale(raw_main[..., sl["scale"]], config.s_max, config.s_offset),
        quats=rotation_axis_angle(rot) if config.attribute_layout == "authors" else rotation(rot),
        sh=colour_sh(raw_main[..., sl["colour"]], config.sh_degree, o),
        opacities=opacity(raw_main[..., sl["opacity"]][..., 0], o),
    )


def opacity_beta_loss(alpha: Tensor) -> Tensor:
    """GGHEAD's Beta prior on opacities: mean(log(0.1 + α) + log(1.1 − α) + 2.20727) (sec. 3.8).

    Zero at α ∈ {0, 1}, largest (≈ 1.19) at α = 0.5; minimising it pushes opacities to 0 or 1.
    """
    return (torch.log(0.1 + alpha) + torch.log(1.1 - alpha) + BETA_LOSS_OFFSET).mean()


def lift_gaussians(raw_main: Tensor, mesh_points: Tensor, deform: Tensor | None, mask: Tensor | None,
                   config: GeneratorConfig, static: GaussianSet | None = None) -> tuple[GaussianSet, dict[str, Tensor]]:
    """Final Gaussians 𝒜 = canonical 𝒜_M composed with the residuals 𝒜_D (eq. 4-5, sec. 3.4-3.5).

    Args:
        raw_main: [B, M, C] raw identity attributes (eq. 4).
        mesh_points: [B, M, 3] anchors on the posed mesh (eq. 5).
        deform: [B, M, 9] raw residuals (Δμ, Δs, Δq), or None (single-branch model).
        mask: [M] 0/1 facial residual mask, or None (residuals everywhere).
        static: `canonical_attributes(raw_main, config)` when already at hand (the same values).
    Returns:
        (GaussianSet, regularizers) with scalar regularizers (sec. 3.8): "position", "scale"
        (mean squared raw identity position / scale channels, GGHEAD's L2), "deform_position",
        "deform_scale" (mean squared masked raw residuals; 0 without residuals) and
        "opacity_beta" (`opacity_beta_loss`).
    """
    b, m, c = raw_main.shape
    assert c == config.main_channels, (c, config.main_channels)
    assert mesh_points.shape == (b, m, 3), (mesh_points.shape, (b, m))
    if config.attribute_layout == "authors":
        gaussians, regs = _lift_authors(raw_main, mesh_points, deform, config, static)
    else:
        gaussians, regs = _lift_paper(raw_main, mesh_points, deform, mask, config, static)
    if config.quaternion_norm == "authors_columns":
        gaussians = dataclasses.replace(gaussians, quats=normalize_quat_columns(gaussians.quats))
    return gaussians, regs


def _identity_regularizers(raw_main: Tensor, sl: dict[str, slice]) -> dict[str, Tensor]:
    """Mean squared raw identity position / scale channels; residual terms start at zero."""
    zero = raw_main.new_zeros(())
    return {"position": raw_main[..., sl["position"]].square().mean(),
            "scale": raw_main[..., sl["scale"]].square().mean(),
            "deform_position": zero, "deform_scale": zero}


def _lift_paper(raw_main: Tensor, mesh_points: Tensor, deform: Tensor | None, mask: Tensor | None,
                config: GeneratorConfig, static: GaussianSet | None) -> tuple[GaussianSet, dict[str, Tensor]]:
    b, m, _ = raw_main.shape
    assert deform is None or deform.shape == (b, m, DEFORM_CHANNELS), None if deform is None else deform.shape
    assert mask is None or mask.shape == (m,), None if mask is None else mask.shape
    sl = main_channel_slices(config.sh_degree)
    gaussians = canonical_gaussians(raw_main, mesh_points, config, static)
    regs = _identity_regularizers(raw_main, sl)
    if deform is not None:
        d = _masked(deform, mask)
        d_pos, d_scale, d_rot = (d[..., DEFORM_SLICES[k]] for k in ("position", "scale", "rotation"))
        gaussians = compose_residuals(gaussians, position_residual(d_pos, config.deform_position_scale),
                                      log_scale_residual(d_scale), rotation_residual(d_rot))
        regs["deform_position"] = d_pos.square().mean()
        regs["deform_scale"] = d_scale.square().mean()
    regs["opacity_beta"] = opacity_beta_loss(gaussians.opacities)
    return gaussians, regs


def _lift_authors(raw_main: Tensor, mesh_points: Tensor, deform: Tensor | None, config: GeneratorConfig,
                  static: GaussianSet | None) -> tuple[GaussianSet, dict[str, Tensor]]:
    """The authors' composition (imported models): both branches share the 22-channel layout.

    μ = mesh + γ·tanh(p) + γ_d·tanh(p_d); log s = A(s) + A(s_d) with A the main log-scale
    activation (so a zero residual still adds A(0)); q = normalise(q(r) ⊗ q(r_d)) with
    `rotation_axis_angle`; opacity = mip-sigmoid(o + o_d); colour from the identity branch only.
    The residual planes arrive already masked (`DeformationBranch`, plane-level mask).
    """
    sl = main_channel_slices(config.sh_degree, config.rotation_channels)
    gaussians = canonical_gaussians(raw_main, mesh_points, config, static)
    regs = _identity_regularizers(raw_main, sl)
    if deform is not None:
        assert deform.shape == raw_main.shape, (deform.shape, raw_main.shape)
        d_pos, d_scale = deform[..., sl["position"]], deform[..., sl["scale"]]
        quats = normalize_quat(quat_multiply(gaussians.quats, rotation_axis_angle(deform[..., sl["rotation"]])))
        raw_opacity = raw_main[..., sl["opacity"]][..., 0] + deform[..., sl["opacity"]][..., 0]
        gaussians = dataclasses.replace(
            gaussians,
            means=gaussians.means + position_residual(d_pos, config.deform_position_scale),
            log_scales=gaussians.log_scales + log_scale(d_scale, config.s_max, config.s_offset),
            quats=quats, opacities=opacity(raw_opacity, config.activation_overshoot))
        regs["deform_position"] = d_pos.square().mean()
        regs["deform_scale"] = d_scale.square().mean()
    regs["opacity_beta"] = opacity_beta_loss(gaussians.opacities)
    return gaussians, regs
