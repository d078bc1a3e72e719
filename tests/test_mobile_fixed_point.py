"""AGORA-M's fixed-point basis, int16 and int8 (mobile/fixed_point_basis.py): the compiled blend against
its reference on random inputs (with and without unit quaternions), the quantisation bound against the
float basis, and `BlendshapeAvatar` with a fixed-point basis against the float32 avatar.

Tolerances (tests/tolerances.py): the kernel sums K float32 products of float32 scales (c / L times
the run's amplitude: one more rounding) in another order than the float64 reference, so an output
differs by at most ~(K + 3) float32 roundings of Σ_k |c_k a_k q_k| / L + |neutral|; making a
quaternion unit divides that by its norm and adds a few roundings of 1. Fixed point moves each value
by at most a / 2L per component (round to nearest), so a blend by at most Σ_k |c_k| a_k / 2L
(`FixedPointBasis.error_bound`).
"""

from __future__ import annotations

import dataclasses

import pytest
import torch
from test_mobile_avatar import CONFIG, basis_from, identity_of
from test_mobile_tinyhead import tiny_generator
from tolerances import assert_within, eps, rounding_tol

from agora_core.gaussians import normalize_quat
from agora_core.mobile.blendshape_avatar import BlendshapeAvatar
from agora_core.mobile.extract import residual_sources
from agora_core.mobile.fixed_point_basis import BLOCK, FIXED_POINT_FORMATS, FixedPointBasis

FORMATS = tuple(FIXED_POINT_FORMATS)


def _basis(k: int, d: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    u = torch.randn(k, d, generator=g) * torch.logspace(-4, -1, k)[:, None]  # components of unequal size
    u[k // 2, : d // 3] = 0.0  # zeros and an exact amplitude sample
    return u, torch.randn(d, generator=g), g


def _kernel_tol(fixed: FixedPointBasis, neutral, c, extra_steps: int = 0):
    used = c.shape[1]
    mag = (c.double().abs() / fixed.levels) @ (fixed.codes[:used].double().abs() * fixed.value_amplitudes(used))
    return rounding_tol(torch.float32, mag + neutral.double().abs(), steps=used + 3 + extra_steps)


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("k,used,batch", [(5, 5, 1), (16, 16, 3), (19, 13, 2), (8, 3, 1)])
def test_kernel_matches_reference(fmt, k, used, batch):
    d = 2 * BLOCK + 123  # full blocks and a partial one (and, for int8, a partial run)
    u, neutral, g = _basis(k, d, seed=k)
    fixed = FixedPointBasis.quantize(u, fmt)
    c = torch.randn(batch, used, generator=g)
    fast = fixed.blend(neutral, c)
    ref = fixed.blend_reference(neutral, c)
    assert fast.shape == ref.shape == (batch, d) and fast.dtype == torch.float32
    assert_within(fast, ref, _kernel_tol(fixed, neutral, c), f"{fmt} blend")


@pytest.mark.parametrize("fmt", FORMATS)
def test_kernel_makes_unit_quaternions_as_normalize_quat_does(fmt):
    quats = BLOCK // 4 + 37  # blocks hold whole quaternions; a partial last block
    u, neutral, g = _basis(9, 4 * quats, seed=3)
    u[:, :8], neutral[:8] = 0.0, 0.0  # two quaternions blend to exactly zero: the identity, as normalize_quat
    fixed = FixedPointBasis.quantize(u, fmt)
    c = torch.randn(2, 9, generator=g)
    fast = fixed.blend(neutral, c, unit_quaternions=True).reshape(2, quats, 4)
    raw = fixed.blend_reference(neutral.double(), c).reshape(2, quats, 4)
    ref = normalize_quat(raw)
    assert torch.equal(fast[:, :2], torch.tensor([1.0, 0, 0, 0]).expand(2, 2, 4))
    # a difference δ in q moves q / |q| by at most 2δ / |q|, plus the normalisation's own roundings
    delta = _kernel_tol(fixed, neutral, c).reshape(2, quats, 4).amax(-1, keepdim=True)
    norm = raw.norm(dim=-1, keepdim=True)[:, 2:]
    assert_within(fast[:, 2:], ref[:, 2:], 2 * delta[:, 2:] / norm + 8 * eps(torch.float32), f"{fmt} unit quaternions")
    assert_within(fast.norm(dim=-1), torch.ones(2, quats), 8 * eps(torch.float32), "unit norm")


@pytest.mark.parametrize("fmt", FORMATS)
def test_fixed_point_is_within_half_a_step_of_the_float_basis(fmt):
    u, neutral, g = _basis(12, 5000, seed=1)
    fixed = FixedPointBasis.quantize(u, fmt)
    spec = FIXED_POINT_FORMATS[fmt]
    assert fixed.codes.dtype == spec.dtype and fixed.levels == spec.levels
    assert int(fixed.codes.abs().max()) == spec.levels
    half_step = fixed.value_amplitudes() / (2 * fixed.levels)
    assert_within(fixed.dequantized(), u.double(), half_step * (1 + 1e-6), "dequantised basis")
    c = torch.randn(4, 12, generator=g)
    exact = neutral.double() + c.double() @ u.double()
    blended = fixed.blend_reference(neutral.double(), c)
    assert_within(blended, exact, fixed.error_bound(c) * (1 + 1e-6) + 1e-15, f"{fmt} blend vs float basis")
    assert (blended != exact).any()  # it is lossy


def test_int8_runs_take_steps_of_their_own_size():
    """A component that moves half the values 1000× less: its int8 runs there get 1000× finer steps
    (what makes 8 bits usable on a head whose mouth moves and whose hair does not); int16 has one step."""
    d = 4 * 256
    u, _, _ = _basis(3, d, seed=4)
    u[:, : d // 2] *= 1e-3
    for fmt, ratio in (("int8", 1e-3), ("int16", 1.0)):
        fixed = FixedPointBasis.quantize(u, fmt)
        step = fixed.value_amplitudes()
        got = float(step[:, : d // 2].amax() / step[:, d // 2:].amax())
        assert got <= ratio * 1.5, (fmt, got)
        err = (fixed.dequantized() - u.double()).abs()[:, : d // 2]
        assert float(err.max()) <= float(step[:, : d // 2].max()) / (2 * fixed.levels) * (1 + 1e-6)


@pytest.mark.parametrize("fmt", FORMATS)
def test_fixed_point_avatar_matches_the_float32_avatar(fmt):
    generator = tiny_generator()
    src, _ = residual_sources(generator, dataclasses.replace(CONFIG, n=16), None, None)
    basis = basis_from(src, 6, generator.num_gaussians)
    cache = identity_of(generator, src, 0)
    ref = BlendshapeAvatar.from_generator(generator, cache, basis)
    fast = BlendshapeAvatar(ref.neutral, basis, basis_format=fmt)
    assert all(fast.blendshapes[g].codes.dtype == FIXED_POINT_FORMATS[fmt].dtype for g in fast.blendshapes)
    assert fast.k == ref.k and fast.basis_bytes < ref.basis_bytes
    coeffs = basis.project(src.chunk(0, 4).residuals)
    with torch.inference_mode():
        a, b = fast.blend(coeffs), ref.blend(coeffs)
    for name, group in (("means", "xyz"), ("log_scales", "scale"), ("opacities", "opacity")):
        c = coeffs[group].double()
        want, got = getattr(b, name), getattr(a, name)
        bound = fast.blendshapes[group].error_bound(c).reshape(want.shape)
        mag = (c.abs() @ basis.basis[group].double().abs()).reshape(want.shape) + want.abs()
        assert_within(got, want, bound + rounding_tol(torch.float32, mag, steps=c.shape[1] + 4), name)
    assert_within(a.quats.norm(dim=-1), torch.ones(a.quats.shape[:-1]), 8 * eps(torch.float32), "unit quaternions")
    with pytest.raises(AssertionError, match="inference only"):
        fast.blend({g: v.clone().requires_grad_() for g, v in coeffs.items()})


def test_blend_runs_on_and_keeps_torchs_thread_count():
    """numba's OpenMP layer shares torch's runtime: the kernel must not leave torch on numba's pool."""
    before = torch.get_num_threads()
    u, neutral, g = _basis(8, 3 * BLOCK, seed=2)
    fixed = FixedPointBasis.quantize(u, "int8")
    try:
        torch.set_num_threads(1)
        fixed.blend(neutral, torch.randn(2, 8, generator=g))
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
