"""AGORA discriminator and the dual-discrimination cue (agora_core.models, sec. 3.6, Table 3).

The cue tests use the sphere head of test_models_generator (expression region: lower front;
jaw weights below the mouth). Exactness: at the neutral expression every splat colour is exactly
0.5 (ΔV = 0 bit for bit), so rgb − 0.5·alpha is a difference of identical sums and the cue is 0
to float32 rounding of one subtraction (< 1e-7).
"""

from __future__ import annotations

import pytest
import torch
from sphere_head import sphere_head_assets

from agora_core.head import FlameParams, HeadModel, interpolate, sample_uv_grid
from agora_core.models import AgoraDiscriminator, DiscriminatorConfig, dual_discrimination_cue
from agora_core.models.dual_discrimination import mesh_splats, splat_shapes, uv_colours
from agora_core.render import orbit_cameras, rasterize

SMALL = dict(channel_base=256, channel_max=16, mapping_layers=2)


@pytest.fixture(scope="module")
def head() -> HeadModel:
    return HeadModel(sphere_head_assets())


@pytest.fixture(scope="module")
def samples(head):
    return sample_uv_grid(head.uv_coords, head.uv_faces, 48)


def front_cameras(b: int):
    return orbit_cameras(torch.zeros(b), torch.zeros(b), radius=1.0)


def flame(b: int, jaw: float = 0.0, expr: float = 0.0) -> FlameParams:
    g = torch.Generator().manual_seed(3)
    return FlameParams(shape=torch.randn(b, 4, generator=g), expression=expr * torch.randn(b, 6, generator=g),
                       jaw=torch.tensor([[jaw, 0.0, 0.0]]).repeat(b, 1))


# ----------------------------------------------------------------------------- discriminator
@pytest.mark.parametrize("cue, channels, label", [("none", 3, 25), ("projection", 3, 80), ("uv", 6, 25),
                                                  ("displacement", 6, 25)])
def test_discriminator_variants(cue, channels, label):
    d = AgoraDiscriminator(DiscriminatorConfig(cue=cue, **SMALL), resolution=16)
    assert d.discriminator.in_channels == channels and d.discriminator.c_dim == label
    image, c = torch.rand(4, 3, 16, 16) * 2 - 1, torch.randn(4, 25)
    cue_img = torch.randn(4, 3, 16, 16) if d.uses_cue else None
    logits = d(image, cue_img, c, flame(4, jaw=0.2, expr=1.0))
    assert logits.shape == (4, 1) and torch.isfinite(logits).all()
    if d.uses_cue:
        with pytest.raises(AssertionError):
            d(image, None, c, None)


def test_projection_sees_the_expression_and_none_does_not():
    image, c = torch.rand(2, 3, 16, 16), torch.randn(2, 25)
    for cue, sensitive in (("projection", True), ("none", False)):
        torch.manual_seed(0)
        d = AgoraDiscriminator(DiscriminatorConfig(cue=cue, **SMALL), resolution=16)
        a, b = d(image, None, c, flame(2, expr=0.0)), d(image, None, c, flame(2, jaw=0.5, expr=2.0))
        assert (not torch.equal(a, b)) == sensitive, cue


# ----------------------------------------------------------------------------- eq. 8 cue
def test_cue_modes_without_an_image(head, samples):
    for mode in ("none", "projection"):
        assert dual_discrimination_cue(head, flame(2), front_cameras(2), 16, mode, samples) is None


def test_displacement_cue_is_zero_at_neutral_and_on_the_background(head, samples):
    cue = dual_discrimination_cue(head, flame(2), front_cameras(2), 32, "displacement", samples)
    assert cue.shape == (2, 3, 32, 32) and cue.abs().amax() < 1e-6
    opened = dual_discrimination_cue(head, flame(2, jaw=0.3), front_cameras(2), 32, "displacement", samples)
    corners = opened[..., :4, :4], opened[..., :4, -4:], opened[..., -4:, :4], opened[..., -4:, -4:]
    assert all(torch.equal(x, torch.zeros_like(x)) for x in corners)  # background is exactly 0


def test_displacement_cue_lights_up_the_mouth_when_the_jaw_opens(head, samples):
    cue = dual_discrimination_cue(head, flame(1, jaw=0.3), front_cameras(1), 32, "displacement", samples)
    energy = cue.abs().sum(dim=1)[0]  # [H, W]
    assert energy.amax() > 0.5 and cue.abs().amax() <= 1.0 + 1e-6
    rows = torch.arange(32, dtype=torch.float32)[:, None].expand(32, 32)
    centroid_row = (energy * rows).sum() / energy.sum()
    assert centroid_row > 16  # image rows grow downwards: the jaw region is below the centre
    literal = dual_discrimination_cue(head, flame(1, jaw=0.3), front_cameras(1), 32, "displacement", samples,
                                      include_jaw=False)
    assert literal.abs().amax() < 1e-6  # eq. (8) literally: the jaw alone leaves no cue
    expressive = dual_discrimination_cue(head, flame(1, expr=1.0), front_cameras(1), 32, "displacement", samples)
    assert expressive.abs().amax() > 0.1


def test_uv_cue_colours(head, samples):
    cue = dual_discrimination_cue(head, flame(2, jaw=0.3), front_cameras(2), 24, "uv", samples)
    assert cue.shape == (2, 3, 24, 24) and cue.amin() >= 0 and cue.amax() <= 1 and cue.amax() > 0.3


@pytest.mark.parametrize("resolution", [16, 64])
def test_splats_cover_the_surface_without_holes(head, samples, resolution):
    vertices = head.neutral(1)
    points = interpolate(vertices, head.faces, samples)
    gs = mesh_splats(points, uv_colours(samples)[None], splat_shapes(vertices[0], head, samples))
    _, alpha = rasterize(gs, front_cameras(1), resolution, resolution, background=0.0)
    # pixel centres whose ray meets the sphere (radius 0.1 m, 1 m away, focal 4.2647) well inside
    # its silhouette: 0.1 m spans 0.1 * 4.2647 of the image width around the centre
    ij = (torch.arange(resolution) + 0.5) / resolution - 0.5
    radius = torch.sqrt(ij[:, None] ** 2 + ij[None, :] ** 2)
    inside = radius < 0.7 * 0.1 * 4.2647
    # > 0.9, not ~1: pixels on the UV seam and the mouth-hole rim are partly covered (≈ 0.93)
    assert alpha[0, 0][inside].amin() > 0.9
