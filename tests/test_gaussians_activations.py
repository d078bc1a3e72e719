"""Activations (paper sec. 3.5), zero-centred residuals (sec. 3.4) and quaternion helpers.

Tolerances: float64 comparisons use 1e-12 — every pair compared is two exact formulas for the same
quantity, so only rounding (~1e-16 per op, a few dozen ops) separates them. gradcheck runs in
float64 with its default eps/atol (1e-6/1e-5): finite differences limit it, not the maths.
"""

from __future__ import annotations

import math

import pytest
import torch
from tolerances import assert_within, rounding_tol

from agora_core.gaussians import (
    SH_C0,
    axis_angle_to_quat,
    colour_sh,
    log_scale,
    log_scale_at_zero,
    log_scale_residual,
    normalize_quat,
    opacity,
    opacity_logit,
    position_offset,
    position_residual,
    quat_multiply,
    quat_to_rotmat,
    rotation,
    rotation_residual,
    rotmat_to_quat,
    sh0_to_rgb,
)

TIGHT = dict(rtol=0.0, atol=1e-12)
IDENTITY = torch.tensor([1.0, 0.0, 0.0, 0.0], dtype=torch.float64)


def random_unit_quats(*shape: int) -> torch.Tensor:
    return normalize_quat(torch.randn(*shape, 4, dtype=torch.float64))


def rodrigues(axis_angle: torch.Tensor) -> torch.Tensor:
    """Reference: R = I + sinθ K + (1 − cosθ) K², K the cross-product matrix of the unit axis."""
    theta = axis_angle.norm(dim=-1, keepdim=True)
    kx, ky, kz = (axis_angle / theta).unbind(-1)
    zero = torch.zeros_like(kx)
    k = torch.stack([zero, -kz, ky, kz, zero, -kx, -ky, kx, zero], -1).reshape(*kx.shape, 3, 3)
    s, c = torch.sin(theta)[..., None], torch.cos(theta)[..., None]
    return torch.eye(3, dtype=axis_angle.dtype) + s * k + (1 - c) * (k @ k)


# --- main branch -----------------------------------------------------------------------------------


def test_position_offset_is_zero_at_zero_and_bounded_by_gamma():
    assert torch.equal(position_offset(torch.zeros(5, 3)), torch.zeros(5, 3))
    big = position_offset(torch.randn(100, 3, dtype=torch.float64) * 100, gamma_pos=0.25)
    assert big.abs().max() <= 0.25


def test_log_scale_matches_ggHEAD_formula_and_its_bounds():
    raw = torch.linspace(-20, 20, 41, dtype=torch.float64)[:, None].expand(41, 3)
    expected = -3.0 - torch.log1p(torch.exp(-3.0 - (raw - 5.0)))  # s_max − softplus(s_max − (x + s_off))
    # torch's softplus returns x itself above x = 20, an error of at most e^-20 ≈ 2e-9 there.
    torch.testing.assert_close(log_scale(raw), expected, rtol=0.0, atol=3e-9)
    # raw = 0 gives s_init = −3 − softplus(2) ≈ −5.1269 (scale ≈ 5.9 mm).
    assert log_scale_at_zero() == pytest.approx(-3.0 - math.log1p(math.exp(2.0)), abs=1e-15)
    torch.testing.assert_close(log_scale(torch.zeros(1, 3, dtype=torch.float64)), torch.full((1, 3), log_scale_at_zero(), dtype=torch.float64), **TIGHT)
    assert log_scale(torch.full((1, 3), 1e4, dtype=torch.float64)).max() <= -3.0  # never above s_max
    # Linear regime: far below the bound, log-scale ≈ raw + s_offset.
    deep = torch.full((1, 3), -10.0, dtype=torch.float64)
    torch.testing.assert_close(log_scale(deep), deep - 5.0, rtol=0.0, atol=1e-5)


def test_opacity_logit_inverts_opacity_and_is_finite_at_0_and_1():
    raw = (torch.randn(1000, dtype=torch.float64) * 5).clamp(-13, 13)  # inside the ±13.8 clamp
    torch.testing.assert_close(opacity_logit(opacity(raw)), raw, rtol=0.0, atol=1e-9)
    ends = opacity_logit(torch.tensor([0.0, 1.0], dtype=torch.float64))
    # 1 − (1 − 1e-6) cancels ~10 digits in float64: agreement to ~1e-10, hence atol 1e-9.
    expected = torch.tensor([-1.0, 1.0], dtype=torch.float64) * math.log((1 - 1e-6) / 1e-6)
    torch.testing.assert_close(ends, expected, rtol=0.0, atol=1e-9)


def test_rotation_zero_raw_is_identity_and_outputs_are_unit():
    assert torch.equal(rotation(torch.zeros(2, 4, dtype=torch.float64)), IDENTITY.expand(2, 4))
    q = rotation(torch.randn(500, 4, dtype=torch.float64))
    torch.testing.assert_close(q.norm(dim=-1), torch.ones(500, dtype=torch.float64), **TIGHT)
    # raw = (−1, 0, 0, 0) sums to the zero quaternion: identity, finite gradient.
    raw = torch.tensor([[-1.0, 0.0, 0.0, 0.0]], dtype=torch.float64, requires_grad=True)
    q = rotation(raw)
    q.sum().backward()
    assert torch.equal(q.detach(), IDENTITY[None]) and torch.isfinite(raw.grad).all()


def test_colour_sh_layout_bounds_and_grey_at_zero():
    raw = torch.randn(7, 12, dtype=torch.float64) * 10
    sh = colour_sh(raw, degree=1)
    assert sh.shape == (7, 4, 3)
    torch.testing.assert_close(sh[:, 2, 1], (0.5 / SH_C0) * torch.tanh(raw[:, 3 * 2 + 1]), **TIGHT)  # coef-major
    rgb = sh0_to_rgb(sh)
    assert rgb.min() >= 0.0 and rgb.max() <= 1.0
    torch.testing.assert_close(sh0_to_rgb(colour_sh(torch.zeros(1, 3), 0)), torch.full((1, 3), 0.5))
    with pytest.raises(AssertionError):
        colour_sh(raw, degree=0)


# --- residuals: zero-centred -----------------------------------------------------------------------


def test_residuals_are_exactly_neutral_at_zero():
    zeros = torch.zeros(4, 3, dtype=torch.float64)
    assert torch.equal(position_residual(zeros), zeros)
    assert torch.equal(log_scale_residual(zeros), zeros)  # the authors' activation gives ≈ −3.97 here
    assert torch.equal(rotation_residual(zeros), IDENTITY.expand(4, 4))


def test_position_residual_bound_is_a_tenth_of_the_main_range():
    out = position_residual(torch.randn(100, 3, dtype=torch.float64) * 100)
    assert out.abs().max() <= 0.025


def test_log_scale_residual_is_bounded_with_unit_slope_at_zero():
    raw = torch.zeros(1, 3, dtype=torch.float64, requires_grad=True)
    log_scale_residual(raw, max_abs=0.7).sum().backward()
    torch.testing.assert_close(raw.grad, torch.ones(1, 3, dtype=torch.float64), **TIGHT)
    big = log_scale_residual(torch.randn(100, 3, dtype=torch.float64) * 100, max_abs=0.7)
    assert big.abs().max() <= 0.7


def test_rotation_residual_angle_is_pi_tanh_of_the_norm_about_the_raw_axis():
    raw = torch.randn(200, 3, dtype=torch.float64) * 2
    q = rotation_residual(raw)
    torch.testing.assert_close(q.norm(dim=-1), torch.ones(200, dtype=torch.float64), **TIGHT)
    angle = 2 * torch.atan2(q[:, 1:].norm(dim=-1), q[:, 0])
    torch.testing.assert_close(angle, math.pi * torch.tanh(raw.norm(dim=-1)), rtol=0.0, atol=1e-10)
    axis = q[:, 1:] / q[:, 1:].norm(dim=-1, keepdim=True)
    torch.testing.assert_close(axis, raw / raw.norm(dim=-1, keepdim=True), rtol=0.0, atol=1e-10)


@pytest.mark.parametrize("scale", [0.0, 1e-5, 1.01e-4, 0.3, 3.0])  # exactly 0, series branch, threshold, exact
def test_residual_and_axis_angle_gradients_are_finite_and_correct(scale):
    raw = (torch.randn(6, 3, dtype=torch.float64) * scale).requires_grad_()
    assert torch.autograd.gradcheck(rotation_residual, (raw,))
    assert torch.autograd.gradcheck(axis_angle_to_quat, (raw,))
    assert torch.autograd.gradcheck(log_scale_residual, (raw,))


# --- quaternions: fast paths vs rotation-matrix references ----------------------------------------


def test_axis_angle_to_quat_matches_rodrigues():
    aa = torch.randn(300, 3, dtype=torch.float64)
    torch.testing.assert_close(quat_to_rotmat(axis_angle_to_quat(aa)), rodrigues(aa), **TIGHT)


def test_quat_multiply_matches_matrix_product_values_and_gradients():
    q1 = random_unit_quats(64).requires_grad_()
    q2 = random_unit_quats(64).requires_grad_()
    weights = torch.randn(64, 3, 3, dtype=torch.float64)
    fast = quat_to_rotmat(quat_multiply(q1, q2))
    ref = quat_to_rotmat(q1) @ quat_to_rotmat(q2)
    torch.testing.assert_close(fast, ref, **TIGHT)
    g_fast = torch.autograd.grad((weights * fast).sum(), (q1, q2))
    g_ref = torch.autograd.grad((weights * ref).sum(), (q1, q2))
    for a, b in zip(g_fast, g_ref):
        torch.testing.assert_close(a, b, **TIGHT)


def test_rotmat_to_quat_inverts_quat_to_rotmat_for_every_pivot():
    # Near-180° rotations about x, y, z make x, y, z the largest component: all four Shepperd branches.
    special = torch.tensor(
        [[1, 0, 0, 0], [0.01, 1, 0.02, 0], [0.01, 0.02, 1, 0], [0.01, 0, 0.02, 1]], dtype=torch.float64
    )
    q = normalize_quat(torch.cat([special, torch.randn(200, 4, dtype=torch.float64)]))
    back = rotmat_to_quat(quat_to_rotmat(q))
    sign = torch.sign((back * q).sum(-1, keepdim=True))
    torch.testing.assert_close(back * sign, q, **TIGHT)


def test_normalize_quat_maps_zero_to_identity():
    assert torch.equal(normalize_quat(torch.zeros(3, 4)), IDENTITY.float().expand(3, 4))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_normalize_quat_matches_the_definition_on_any_layout(dtype):
    """q / |q| (as `torch.linalg.vector_norm` computes |q|) on a transposed [B, C, N] view, how the
    UV planes hand out attributes; gradients finite everywhere, zero at the zero quaternion."""
    g = torch.Generator().manual_seed(3)
    raw = torch.randn(2, 4, 50, generator=g, dtype=dtype)
    raw[0, :, 7] = 0.0
    q = raw.transpose(1, 2).requires_grad_()
    out = normalize_quat(q)
    norm = torch.linalg.vector_norm(q.detach(), dim=-1, keepdim=True)
    ref = torch.where(norm > 0, q.detach() / norm, IDENTITY.to(dtype))
    assert_within(out.detach(), ref, rounding_tol(dtype, 1.0, steps=8), "normalize_quat")
    (grad,) = torch.autograd.grad((out * torch.randn(out.shape, generator=g, dtype=dtype)).sum(), q)
    assert torch.isfinite(grad).all() and not grad[0, 7].any()
