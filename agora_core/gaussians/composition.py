"""Composition of the canonical Gaussians with the deformation branch's residuals (paper sec. 3.4).

"We use post-activation summation for means, quaternion multiplication for rotations, and summation
for log-scales." Opacity may optionally receive a residual in logit space (the authors' code keeps
an opacity residual; the paper lists only {Δμ, Δs, Δq}). Colour is never changed.

`compose_residuals` is the fast path (one quaternion product); `compose_residuals_reference` is its
slow twin through rotation matrices, R = R_base · R_delta, used by the tests.
"""

from __future__ import annotations

from torch import Tensor

from agora_core.gaussians.activations import opacity, opacity_logit
from agora_core.gaussians.gaussian_set import GaussianSet
from agora_core.gaussians.quaternions import normalize_quat, quat_multiply, quat_to_rotmat, rotmat_to_quat


def _check_residual_shapes(
    base: GaussianSet, delta_means: Tensor, delta_log_scales: Tensor, delta_quats: Tensor, delta_opacity_logit
) -> None:
    b, n = base.batch_size, base.num_gaussians
    assert delta_means.shape == (b, n, 3), (delta_means.shape, (b, n))
    assert delta_log_scales.shape == (b, n, 3), (delta_log_scales.shape, (b, n))
    assert delta_quats.shape == (b, n, 4), (delta_quats.shape, (b, n))
    assert delta_opacity_logit is None or delta_opacity_logit.shape == (b, n), delta_opacity_logit.shape


def _compose_opacity(base_opacities: Tensor, delta_opacity_logit: Tensor | None) -> Tensor:
    """α = sigmoid(logit(α_base) + Δ); the base logit is clamped so α_base ∈ {0, 1} stays finite."""
    if delta_opacity_logit is None:
        return base_opacities
    return opacity(opacity_logit(base_opacities) + delta_opacity_logit)


def compose_residuals(
    base: GaussianSet,
    delta_means: Tensor,  # [B, N, 3] post-activation offsets (`position_residual`)
    delta_log_scales: Tensor,  # [B, N, 3] (`log_scale_residual`)
    delta_quats: Tensor,  # [B, N, 4] unit quaternions, wxyz (`rotation_residual`)
    delta_opacity_logit: Tensor | None = None,  # [B, N] added to the base opacity's logit
) -> GaussianSet:
    """Final Gaussian attributes 𝒜 from the canonical 𝒜_M and the residuals 𝒜_D (sec. 3.4).

    μ = μ_base + Δμ;  log s = log s_base + Δs;  q = normalise(q_base ⊗ Δq) (Δq acts in the
    Gaussian's local frame first: R = R_base · R_Δ);  α = sigmoid(logit α_base + Δα) if Δα is given.

    Returns:
        A new `GaussianSet` of the same shape; `sh` is the base's tensor (colour is not deformed).
    """
    _check_residual_shapes(base, delta_means, delta_log_scales, delta_quats, delta_opacity_logit)
    return GaussianSet(
        means=base.means + delta_means,
        log_scales=base.log_scales + delta_log_scales,
        quats=normalize_quat(quat_multiply(base.quats, delta_quats)),
        sh=base.sh,
        opacities=_compose_opacity(base.opacities, delta_opacity_logit),
    )


def compose_residuals_reference(
    base: GaussianSet,
    delta_means: Tensor,
    delta_log_scales: Tensor,
    delta_quats: Tensor,
    delta_opacity_logit: Tensor | None = None,
) -> GaussianSet:
    """Slow twin of `compose_residuals`: rotations composed as matrices, R_base @ R_Δ, then back.

    The quaternion it returns may differ from the fast path's by an overall sign (same rotation).
    """
    _check_residual_shapes(base, delta_means, delta_log_scales, delta_quats, delta_opacity_logit)
    rot = quat_to_rotmat(base.quats) @ quat_to_rotmat(delta_quats)
    return GaussianSet(
        means=base.means + delta_means,
        log_scales=base.log_scales + delta_log_scales,
        quats=rotmat_to_quat(rot),
        sh=base.sh,
        opacities=_compose_opacity(base.opacities, delta_opacity_logit),
    )
