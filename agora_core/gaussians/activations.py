"""Gaussian attribute activations: raw generator channels -> Gaussian attributes.

Main branch (paper sec. 3.5, "activation functions similar to GGHEAD"): a tanh-bounded position
offset from the template mesh, a softplus-bounded log-scale, sigmoid opacity, a normalised
quaternion and bounded SH colour.

Deformation branch residuals (sec. 3.4): every residual activation is **zero-centred** — a zero raw
residual (e.g. a masked-out Gaussian, or the branch at initialisation) leaves the composed attribute
exactly unchanged: Δμ = 0, Δlog s = 0, Δq = identity. (The authors' code feeds the residual
log-scale through the same bounded activation as the main branch, which maps 0 to ≈ −3.97 and so
shrinks every Gaussian by e^−3.97 ≈ 1/53 even where the residual is masked; we do not.)

All functions are elementwise or per-Gaussian and pure; quaternions are (w, x, y, z).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from agora_core.gaussians.gaussian_set import SH_C0
from agora_core.gaussians.quaternions import (
    axis_angle_to_quat,
    normalize_quat,
    quat_multiply,
    quat_to_rotmat,
    rotmat_to_quat,
)

__all__ = [
    "position_offset", "log_scale", "log_scale_at_zero", "opacity", "opacity_logit", "rotation",
    "colour_sh", "position_residual", "log_scale_residual", "rotation_residual",
    "axis_angle_to_quat", "normalize_quat", "quat_multiply", "quat_to_rotmat", "rotmat_to_quat",
    "rotation_axis_angle", "normalize_quat_columns",
]  # fmt: skip

GAMMA_POS = 0.25  # metres: max offset of a Gaussian from its template-mesh anchor (GGHEAD)
S_MAX = -3.0  # upper bound of the log-scale: scale <= e^-3 ≈ 5 cm (GGHEAD)
S_OFFSET = -5.0  # shift of the log-scale's linear regime (GGHEAD)
DEFORM_POS_ATTENUATION = 0.1  # deformation offsets are 10 % of the main range (authors' code)
LOG_SCALE_RESIDUAL_MAX = 1.0  # |Δ log s| < 1: an expression may grow/shrink a Gaussian ≤ e ≈ 2.7×
_SMALL_SQ = 1e-8  # squared norm below which series forms replace x/|x| (error O(x^4) ~ 1e-16)


# --- main branch (sec. 3.5) ------------------------------------------------------------------------


def position_offset(raw: Tensor, gamma_pos: float = GAMMA_POS) -> Tensor:
    """Position offset μ_δM from the template mesh (eq. 5): γ_pos · tanh(raw), |μ_δM| < γ_pos.

    Args:
        raw: [..., 3] raw position channels.
    Returns:
        [..., 3] offset in world units (metres), zero at raw = 0.
    """
    assert raw.shape[-1] == 3, raw.shape
    return gamma_pos * torch.tanh(raw)


def log_scale(raw: Tensor, s_max: float = S_MAX, s_offset: float = S_OFFSET) -> Tensor:
    """Bounded log-scale (sec. 3.5, GGHEAD): s_max − softplus(s_max − (raw + s_offset)).

    A smooth min(raw + s_offset, s_max): linear with slope ≈ 1 while raw + s_offset ≪ s_max, and
    never above s_max, so the scale is bounded by e^s_max (the paper's e^{-s_max} uses the opposite
    sign convention). At raw = 0 it gives the initial log-scale s_init = s_max − softplus(s_max −
    s_offset) ≈ −5.127 for the defaults (scale ≈ 5.9 mm), see `log_scale_at_zero`.

    Args:
        raw: [..., 3] raw scale channels.
    Returns:
        [..., 3] natural log of the per-axis standard deviations, < s_max.
    """
    assert raw.shape[-1] == 3, raw.shape
    return s_max - F.softplus(s_max - (raw + s_offset))


def log_scale_at_zero(s_max: float = S_MAX, s_offset: float = S_OFFSET) -> float:
    """s_init = log_scale(0) = s_max − softplus(s_max − s_offset) (sec. 3.5's initial scale)."""
    return s_max - math.log1p(math.exp(s_max - s_offset))


def opacity(raw: Tensor, overshoot: float = 0.0) -> Tensor:
    """Opacity α = sigmoid(raw)·(1 + 2o) − o in (−o, 1 + o) (sec. 3.5, as in 3DGS for o = 0).

    The authors' code uses o = 0.001 ("mip" sigmoid), so α = 0 and 1 are reachable.

    Args:
        raw: [...] opacity logits.
        overshoot: o.
    Returns:
        [...] opacities.
    """
    alpha = torch.sigmoid(raw)
    return alpha if overshoot == 0 else alpha * (1 + 2 * overshoot) - overshoot


def opacity_logit(alpha: Tensor, eps: float = 1e-6) -> Tensor:
    """Inverse of `opacity`: logit(clamp(α, eps, 1 − eps)); finite (|logit| ≤ 13.8) for α in {0, 1}.

    Args:
        alpha: [...] opacities in [0, 1].
    Returns:
        [...] logits.
    """
    return torch.logit(alpha, eps=eps)


def rotation(raw: Tensor) -> Tensor:
    """Rotation q = normalise(raw + (1, 0, 0, 0)).

    The identity bias makes raw = 0 the identity rotation with a well-conditioned gradient (a plain
    normalise(raw) is undefined at 0). raw = (−1, 0, 0, 0) sums to the zero quaternion, which maps to
    the identity too (see `normalize_quat`).

    Args:
        raw: [..., 4] raw rotation channels (w, x, y, z).
    Returns:
        [..., 4] unit quaternions (w, x, y, z).
    """
    assert raw.shape[-1] == 4, raw.shape
    bias = torch.zeros(4, dtype=raw.dtype, device=raw.device)
    bias[0] = 1.0
    return normalize_quat(raw + bias)


def colour_sh(raw: Tensor, degree: int, overshoot: float = 0.0) -> Tensor:
    """SH colour coefficients: (0.5 / C0) · tanh(raw), reshaped to [..., K, 3].

    Bounded like the authors' colour activation (without its ±0.1 % overshoot): the DC colour
    0.5 + C0 · sh_0 = 0.5 + 0.5 · tanh(raw_0) lies in (0, 1) exactly, raw = 0 is mid-grey, and the
    degree-1 bands share the same bound (≈ ±1.77), so no coefficient can explode early in GAN
    training. Channels are coefficient-major: raw[..., 3k + c] is coefficient k of colour c.

    Args:
        raw:    [..., 3K] raw colour channels, K = (degree + 1)^2.
        degree: SH degree, 0 or 1.
        overshoot: o; tanh(raw)·(1 + 2o) − o as in the authors' code (o = 0.001; the DC colour
            then spans (−1.5·o, 1 + 0.5·o)); 0 for the paper default.
    Returns:
        [..., K, 3] SH coefficients in the 3DGS convention (`GaussianSet.sh`).
    """
    assert degree in (0, 1), degree
    k = (degree + 1) ** 2
    assert raw.shape[-1] == 3 * k, (raw.shape, degree)
    t = torch.tanh(raw)
    if overshoot != 0:
        t = t * (1 + 2 * overshoot) - overshoot
    return ((0.5 / SH_C0) * t).reshape(*raw.shape[:-1], k, 3)


# --- deformation-branch residuals (sec. 3.4), zero-centred ----------------------------------------


def position_residual(raw: Tensor, gamma: float = GAMMA_POS * DEFORM_POS_ATTENUATION) -> Tensor:
    """Residual mean Δμ = γ · tanh(raw), added after activation (sec. 3.4); |Δμ| < γ = 2.5 cm.

    Args:
        raw: [..., 3] raw residual position channels.
    Returns:
        [..., 3], exactly 0 at raw = 0.
    """
    assert raw.shape[-1] == 3, raw.shape
    return gamma * torch.tanh(raw)


def log_scale_residual(raw: Tensor, max_abs: float = LOG_SCALE_RESIDUAL_MAX) -> Tensor:
    """Residual log-scale Δs = c · tanh(raw / c), c = max_abs, summed with the log-scale (sec. 3.4).

    Zero-centred (Δs(0) = 0, so a zero residual leaves the scale unchanged) with unit slope at 0
    (small residuals pass through as-is) and |Δs| < c, i.e. an expression scales a Gaussian by at
    most e^±c. c = 1 matches the authors' upward bound (their activation's sup minus its value at 0
    is ≈ 0.97) while also bounding shrinking, which theirs leaves unbounded.

    Args:
        raw: [..., 3] raw residual scale channels.
    Returns:
        [..., 3] log-scale residual in (−c, c).
    """
    assert raw.shape[-1] == 3, raw.shape
    assert max_abs > 0, max_abs
    return max_abs * torch.tanh(raw / max_abs)


def rotation_residual(raw: Tensor, max_angle: float = math.pi) -> Tensor:
    """Residual rotation Δq: axis raw/|raw|, angle max_angle · tanh(|raw|) (sec. 3.4).

    The bound applies to the angle (not per component), so Δq covers every rotation once for the
    default max_angle = π; Δq(0) is the identity with slope max_angle / 2 in the vector part.

    Args:
        raw: [..., 3] raw residual rotation channels (a rotation vector before squashing).
    Returns:
        [..., 4] unit quaternions (w, x, y, z), composed as q_main ⊗ Δq.
    """
    assert raw.shape[-1] == 3, raw.shape
    r_sq = (raw * raw).sum(-1, keepdim=True)
    small = r_sq < _SMALL_SQ
    r = torch.sqrt(torch.where(small, torch.ones_like(r_sq), r_sq))  # safe where unused
    tanh_r_over_r = torch.where(small, 1.0 - r_sq / 3.0, torch.tanh(r) / r)
    return axis_angle_to_quat(raw * (max_angle * tanh_r_over_r))


def rotation_axis_angle(raw: Tensor) -> Tensor:
    """The authors' rotation activation: q = axis-angle → quaternion of π·tanh(raw), per component.

    Each of the three components is squashed on its own (not the angle), so the angle is < π·√3.

    Args:
        raw: [..., 3] raw rotation channels.
    Returns:
        [..., 4] unit quaternions (w, x, y, z); identity at raw = 0.
    """
    assert raw.shape[-1] == 3, raw.shape
    return axis_angle_to_quat(math.pi * torch.tanh(raw))


def normalize_quat_columns(quats: Tensor, eps: float = 1e-12) -> Tensor:
    """The authors' renderer input: each quaternion component divided by its norm over all Gaussians
    (`F.normalize(q, dim=1)` on [B, N, 4]); the rasteriser then normalises each quaternion.

    Their released model was trained through this (it makes a Gaussian's rotation depend on all
    others), and their AGORA-M residuals live in this space, so imported models keep these
    non-unit quaternions; every renderer and file writer here normalises per Gaussian.

    Args:
        quats: [B, N, 4].
    Returns:
        [B, N, 4] quaternions whose columns have unit norm.
    """
    assert quats.ndim == 3 and quats.shape[-1] == 4, quats.shape
    columns = torch.linalg.vector_norm(quats, dim=1, keepdim=True).clamp_min(eps)
    return quats / columns
