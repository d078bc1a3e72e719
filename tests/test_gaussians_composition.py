"""Residual composition (paper sec. 3.4): quaternion fast path vs rotation-matrix reference.

Tolerances: the fast/reference comparison runs in float64 with atol 1e-12 — both are exact
formulas and Shepperd's conversion divides by at least 1, so rounding alone (~1e-15) separates
them. The zero-residual check runs in float32, where renormalising an already-unit quaternion and
the logit→sigmoid round trip of opacity move values by a few ulp (≤ 1e-6).
"""

from __future__ import annotations

import pytest
import torch

from agora_core.gaussians import (
    GaussianSet,
    compose_residuals,
    compose_residuals_reference,
    log_scale_residual,
    normalize_quat,
    opacity_logit,
    position_residual,
    quat_to_rotmat,
    rotation_residual,
)

TIGHT = dict(rtol=0.0, atol=1e-12)


def random_set(b: int, n: int, dtype=torch.float64, k: int = 4) -> GaussianSet:
    return GaussianSet(
        means=torch.randn(b, n, 3, dtype=dtype),
        log_scales=torch.randn(b, n, 3, dtype=dtype) - 4,
        quats=normalize_quat(torch.randn(b, n, 4, dtype=dtype)),
        sh=torch.randn(b, n, k, 3, dtype=dtype),
        opacities=torch.rand(b, n, dtype=dtype),
    )


def random_residuals(b: int, n: int, dtype=torch.float64):
    return (
        position_residual(torch.randn(b, n, 3, dtype=dtype)),
        log_scale_residual(torch.randn(b, n, 3, dtype=dtype)),
        rotation_residual(torch.randn(b, n, 3, dtype=dtype)),
        torch.randn(b, n, dtype=dtype),
    )


def test_zero_raw_residuals_leave_the_gaussians_unchanged():
    base = random_set(2, 50, dtype=torch.float32)
    zeros = torch.zeros(2, 50, 3)
    out = compose_residuals(
        base, position_residual(zeros), log_scale_residual(zeros), rotation_residual(zeros), torch.zeros(2, 50)
    )
    assert torch.equal(out.means, base.means) and torch.equal(out.log_scales, base.log_scales)
    torch.testing.assert_close(out.quats, base.quats, rtol=0.0, atol=1e-6)
    torch.testing.assert_close(out.opacities, base.opacities, rtol=0.0, atol=1e-6)
    assert out.sh is base.sh


def test_fast_path_matches_matrix_reference_values_and_gradients():
    base = random_set(3, 40)
    base = GaussianSet(**{name: t.requires_grad_() for name, t in vars(base).items()})
    d_mu, d_s, d_q, d_a = (t.requires_grad_() for t in random_residuals(3, 40))
    inputs = [base.means, base.log_scales, base.quats, base.opacities, d_mu, d_s, d_q, d_a]
    fast = compose_residuals(base, d_mu, d_s, d_q, d_a)
    ref = compose_residuals_reference(base, d_mu, d_s, d_q, d_a)
    # q and −q are the same rotation: align the reference's sign with the fast path (a constant).
    sign = torch.sign((fast.quats * ref.quats).sum(-1, keepdim=True)).detach()
    ref_quats = ref.quats * sign
    for a, b in [(fast.means, ref.means), (fast.log_scales, ref.log_scales), (fast.quats, ref_quats),
                 (fast.opacities, ref.opacities)]:  # fmt: skip
        torch.testing.assert_close(a, b, **TIGHT)

    weights = [torch.randn_like(t) for t in (fast.means, fast.log_scales, fast.quats, fast.opacities)]
    fast_terms = (fast.means, fast.log_scales, fast.quats, fast.opacities)
    ref_terms = (ref.means, ref.log_scales, ref_quats, ref.opacities)
    g_fast = torch.autograd.grad(sum((w * t).sum() for w, t in zip(weights, fast_terms)), inputs)
    g_ref = torch.autograd.grad(sum((w * t).sum() for w, t in zip(weights, ref_terms)), inputs)
    for a, b in zip(g_fast, g_ref):
        torch.testing.assert_close(a, b, **TIGHT)


def test_residual_rotation_acts_in_the_local_frame_first():
    base = random_set(1, 30)
    _, _, d_q, _ = random_residuals(1, 30)
    out = compose_residuals(base, torch.zeros(1, 30, 3, dtype=torch.float64), torch.zeros(1, 30, 3, dtype=torch.float64), d_q)
    v = torch.randn(1, 30, 3, 1, dtype=torch.float64)
    expected = quat_to_rotmat(base.quats) @ (quat_to_rotmat(d_q) @ v)
    torch.testing.assert_close(quat_to_rotmat(out.quats) @ v, expected, **TIGHT)


def test_means_and_log_scales_add_and_opacity_adds_in_logit_space():
    base = random_set(2, 20)
    d_mu, d_s, d_q, d_a = random_residuals(2, 20)
    out = compose_residuals(base, d_mu, d_s, d_q, d_a)
    assert torch.equal(out.means, base.means + d_mu)
    assert torch.equal(out.log_scales, base.log_scales + d_s)
    torch.testing.assert_close(out.opacities, torch.sigmoid(torch.logit(base.opacities) + d_a), **TIGHT)
    assert torch.equal(compose_residuals(base, d_mu, d_s, d_q).opacities, base.opacities)  # no Δα: unchanged


def test_saturated_base_opacity_stays_finite():
    base = random_set(1, 2)
    base.opacities = torch.tensor([[0.0, 1.0]], dtype=torch.float64)
    zeros3 = torch.zeros(1, 2, 3, dtype=torch.float64)
    out = compose_residuals(base, zeros3, zeros3, rotation_residual(zeros3), torch.tensor([[1.0, -1.0]], dtype=torch.float64))
    expected = torch.sigmoid(opacity_logit(base.opacities) + torch.tensor([[1.0, -1.0]], dtype=torch.float64))
    torch.testing.assert_close(out.opacities, expected, **TIGHT)
    assert torch.isfinite(out.opacities).all()


def test_wrong_residual_shapes_are_rejected():
    base = random_set(2, 10)
    d_mu, d_s, d_q, _ = random_residuals(2, 10)
    with pytest.raises(AssertionError):
        compose_residuals(base, d_mu[:1], d_s, d_q)
    with pytest.raises(AssertionError):
        compose_residuals(base, d_mu, d_s, d_q[..., :3])
