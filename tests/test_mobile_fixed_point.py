"""AGORA-M's 16-bit fixed-point basis (mobile/fixed_point_basis.py): the compiled blend against its
reference on random inputs, the quantisation bound against the float basis, and `BlendshapeAvatar`
with basis_format="int16" against the float32 avatar.

Tolerances (tests/tolerances.py): the kernel sums K float32 products in another order than the
float64 reference, so an output differs by at most ~(K + 2) float32 roundings of Σ_k |s_k q_k| +
|neutral|; fixed point moves each value by at most a_k / 65534 per component (round to nearest),
so a blend by at most Σ_k |c_k| a_k / 65534.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch
from test_mobile_avatar import CONFIG, basis_from, identity_of
from test_mobile_tinyhead import tiny_generator
from tolerances import assert_within, rounding_tol

from agora_core.mobile.blendshape_avatar import BlendshapeAvatar
from agora_core.mobile.extract import residual_sources
from agora_core.mobile.fixed_point_basis import (BLOCK, FIXED_POINT, blend_fixed_point, blend_fixed_point_reference,
                                                 fixed_point_amplitudes, to_fixed_point)


def _basis(k: int, d: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    u = torch.randn(k, d, generator=g) * torch.logspace(-4, -1, k)[:, None]  # components of unequal size
    u[k // 2, : d // 3] = 0.0  # zeros and an exact amplitude sample
    return u, torch.randn(d, generator=g), g


@pytest.mark.parametrize("k,used,batch", [(5, 5, 1), (16, 16, 3), (19, 13, 2), (8, 3, 1)])
def test_kernel_matches_reference(k, used, batch):
    d = 2 * BLOCK + 123  # full blocks and a partial one
    u, neutral, g = _basis(k, d, seed=k)
    amps = fixed_point_amplitudes(u)
    fixed = to_fixed_point(u, amps)
    c = torch.randn(batch, used, generator=g)
    fast = blend_fixed_point(neutral, fixed, amps, c)
    ref = blend_fixed_point_reference(neutral, fixed, amps, c)
    assert fast.shape == ref.shape == (batch, d) and fast.dtype == torch.float32
    scale = c.double() * amps[:used] / FIXED_POINT
    mag = scale.abs() @ fixed[:used].double().abs() + neutral.double().abs()
    assert_within(fast, ref, rounding_tol(torch.float32, mag, steps=used + 2), "fixed-point blend")


def test_fixed_point_is_within_half_a_step_of_the_float_basis():
    u, neutral, g = _basis(12, 5000, seed=1)
    amps = fixed_point_amplitudes(u)
    fixed = to_fixed_point(u, amps)
    assert fixed.dtype == torch.int16 and int(fixed.abs().max()) == FIXED_POINT
    back = fixed.double() * amps[:, None] / FIXED_POINT
    assert_within(back, u.double(), (amps[:, None] / (2 * FIXED_POINT)) * (1 + 1e-9), "dequantised basis")
    c = torch.randn(4, 12, generator=g)
    exact = neutral.double() + c.double() @ u.double()
    bound = (c.double().abs() * amps / (2 * FIXED_POINT)).sum(1, keepdim=True)
    assert_within(blend_fixed_point_reference(neutral.double(), fixed, amps, c), exact, bound * (1 + 1e-9) + 1e-15,
                  "fixed-point blend vs float basis")
    assert (blend_fixed_point_reference(neutral.double(), fixed, amps, c) != exact).any()  # it is lossy


def test_int16_avatar_matches_the_float32_avatar():
    generator = tiny_generator()
    src, _ = residual_sources(generator, dataclasses.replace(CONFIG, n=16), None, None)
    basis = basis_from(src, 6, generator.num_gaussians)
    cache = identity_of(generator, src, 0)
    ref = BlendshapeAvatar.from_generator(generator, cache, basis)
    fast = BlendshapeAvatar(ref.neutral, basis, basis_format="int16")
    assert all(fast.blendshapes[g].dtype == torch.int16 for g in fast.blendshapes)
    coeffs = basis.project(src.chunk(0, 4).residuals)
    with torch.inference_mode():
        a, b = fast.blend(coeffs), ref.blend(coeffs)
    for name, group in (("means", "xyz"), ("log_scales", "scale"), ("opacities", "opacity")):
        amps = fast.amplitudes[group]
        c = coeffs[group].double()
        bound = (c.abs() * amps[: c.shape[1]] / (2 * FIXED_POINT)).sum(1)  # per frame
        want, got = getattr(b, name), getattr(a, name)
        mag = (c.abs() @ basis.basis[group].double().abs()).reshape(want.shape) + want.abs()
        tol = bound.reshape(-1, *[1] * (want.ndim - 1)) + rounding_tol(torch.float32, mag, steps=c.shape[1] + 4)
        assert_within(got, want, tol, name)
    with pytest.raises(AssertionError, match="inference only"):
        fast.blend({g: v.clone().requires_grad_() for g, v in coeffs.items()})


def test_blend_runs_on_and_keeps_torchs_thread_count():
    """numba's OpenMP layer shares torch's runtime: the kernel must not leave torch on numba's pool."""
    before = torch.get_num_threads()
    u, neutral, g = _basis(8, 3 * BLOCK, seed=2)
    amps = fixed_point_amplitudes(u)
    try:
        torch.set_num_threads(1)
        blend_fixed_point(neutral, to_fixed_point(u, amps), amps, torch.randn(2, 8, generator=g))
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
