"""`BlendshapeAvatar` (eq. 11) against the full AGORA model (tiny config, real generator).

Tolerances: the avatar adds float32 products of K ≤ 48 terms to the neutral; against AGORA with a
full-rank basis the difference is round-off, ~1e-7 on attributes of size ≤ 1 → atol 1e-5.
"""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from test_mobile_tinyhead import single_thread, tiny_generator  # noqa: F401  (fixture)

from agora_core.mobile import ExtractConfig, GaussianBasis, gram_basis
from agora_core.mobile.extract import residual_sources
from agora_core.mobile.blendshape_avatar import BlendshapeAvatar
from agora_core.render import orbit_cameras, rasterize

CONFIG = ExtractConfig(n=96, k=48, expressions_per_identity=8, heldout=0, batch_size=8)
ATOL = 1e-5


@pytest.fixture(scope="module")
def generator():
    return tiny_generator()


def identity_of(generator, source, tuple_index: int):
    t = source.sampler.tuples(tuple_index, tuple_index + 1)
    return generator.identity(t.z, t.camera, t.shape, CONFIG.truncation_psi, noise_mode="const")


def basis_from(source, k: int, num_gaussians: int) -> GaussianBasis:
    groups = gram_basis(source, k, chunk_rows=32, slab_columns=100_000)
    return GaussianBasis.from_groups(groups, num_gaussians)


def test_zero_coefficients_give_the_neutral(generator):
    src, _ = residual_sources(generator, dataclasses.replace(CONFIG, n=16), None, None)
    basis = basis_from(src, 4, generator.num_gaussians)
    avatar = BlendshapeAvatar.from_generator(generator, identity_of(generator, src, 0), basis)
    zero = {g: torch.zeros(3, 4) for g in basis.basis}
    out = avatar.blend(zero)
    assert out.batch_size == 3
    for name in ("means", "log_scales", "quats", "opacities", "sh"):
        torch.testing.assert_close(getattr(out, name), getattr(avatar.neutral, name).expand_as(getattr(out, name)),
                                   atol=1e-6, rtol=0)


def test_full_rank_basis_reproduces_agora_exactly(generator):
    """K = N ≥ rank(B): projecting a tuple's residual and blending gives AGORA's Gaussians."""
    n = 24
    src, _ = residual_sources(generator, dataclasses.replace(CONFIG, n=n), None, None)
    basis = basis_from(src, n, generator.num_gaussians)
    rows = src.chunk(0, 8)  # identity 0's tuples
    avatar = BlendshapeAvatar.from_generator(generator, identity_of(generator, src, 0), basis)
    out = avatar.blend(basis.project(rows.residuals))
    t = src.sampler.tuples(0, 8)
    cache = identity_of(generator, src, 0)
    posed = generator.animate(cache, t.flame, noise_mode="const").gaussians
    for name in ("means", "log_scales", "quats", "opacities"):
        torch.testing.assert_close(getattr(out, name), getattr(posed, name), atol=ATOL, rtol=0)
    torch.testing.assert_close(out.sh, posed.sh, atol=0, rtol=0)  # colour is not animated


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(10 * torch.log10(1.0 / (a - b).square().mean().clamp(min=1e-12)))


@torch.no_grad()
def test_agora_m_renders_close_to_agora_and_improves_with_k(generator):
    """Held-out tuples rendered by AGORA and by AGORA-M (oracle coefficients): PSNR grows with K."""
    src, held = residual_sources(generator, dataclasses.replace(CONFIG, heldout=16), None, None)
    full = basis_from(src, CONFIG.k, generator.num_gaussians)
    camera = orbit_cameras(torch.zeros(1), torch.zeros(1), radius=0.6)
    rows = held.chunk(0, 8)  # one held-out identity, 8 expressions
    cache = identity_of(generator, held, 0)
    t = held.sampler.tuples(0, 8)
    posed = generator.animate(cache, t.flame, noise_mode="const").gaussians
    reference, _ = rasterize(posed, camera, 64, 64, background=1.0)
    scores = {}
    for k in (1, 4, 16, 48):
        basis = full.truncate(k)
        avatar = BlendshapeAvatar.from_generator(generator, cache, basis)
        image, _ = rasterize(avatar.blend(basis.project(rows.residuals)), camera, 64, 64, background=1.0)
        scores[k] = psnr(image, reference)
    neutral = BlendshapeAvatar.from_generator(generator, cache, full).neutral
    static, _ = rasterize(neutral, camera, 64, 64, background=1.0)
    print(f"AGORA-M vs AGORA, PSNR (dB) by K (N = 96, oracle coefficients): "
          f"{ {k: round(v, 2) for k, v in scores.items()} }; un-animated neutral: {psnr(static, reference):.2f}")
    assert all(scores[a] < scores[b] for a, b in zip((1, 4, 16), (4, 16, 48))), scores
    assert scores[48] > 25.0, scores
    assert psnr(static, reference) < scores[4]  # the blendshapes do animate the avatar
    assert math.isfinite(scores[48])
