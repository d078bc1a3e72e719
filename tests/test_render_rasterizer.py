"""The sparse-pair CPU rasterizer against its dense reference, finite differences and hand maths."""

import pytest
import torch

from agora_core.errors import AgoraError
from agora_core.gaussians import GaussianSet, rgb_to_sh0
from agora_core.render import EG3D_FOCAL, Camera, rasterize, sample_ffhq_like_cameras
from agora_core.render import pairs
from agora_core.render.rasterizer_torch import rasterize_reference, rasterize_torch


def _scene(seed, b=2, n=40, dtype=torch.float64, sh_k=4, log_scale=-3.5, opaque=False):
    """Random Gaussians around the origin, seen by FFHQ-like cameras; some nearly opaque."""
    g = torch.Generator().manual_seed(seed)
    opac = torch.rand(b, n, generator=g) ** 0.3
    if opaque:
        opac[:, : n // 3] = 0.9995  # alpha clamps at 0.999, pixels terminate (T <= 1e-4)
    gs = GaussianSet(
        means=torch.randn(b, n, 3, generator=g) * 0.08,
        log_scales=log_scale + 0.5 * torch.randn(b, n, 3, generator=g),
        quats=torch.randn(b, n, 4, generator=g),
        sh=0.5 * torch.randn(b, n, sh_k, 3, generator=g),
        opacities=opac,
    ).map(lambda t: t.to(dtype))
    cams = sample_ffhq_like_cameras(b, generator=g).to(dtype)
    return gs, cams, torch.rand(b, 3, generator=g, dtype=dtype)


def _grads(render, gs, cams, w, h, bg, weights):
    leaves = gs.map(lambda t: t.detach().clone().requires_grad_())
    rgb, alpha = render(leaves, cams, w, h, bg)
    loss = (torch.cat([rgb, alpha], 1) * weights).sum()
    names = ["means", "log_scales", "quats", "sh", "opacities"]
    return (rgb, alpha), dict(zip(names, torch.autograd.grad(loss, [getattr(leaves, k) for k in names])))


def check_against_dense_reference(render, seed, opaque, sh_k):
    """Values and gradients of `render` vs `rasterize_reference` on a random scene (float64).

    Same maths, different summation order: float64 agrees to ~1e-13; 1e-9 leaves room without
    hiding a missing or extra pair (each is worth >= 1/255).
    """
    gs, cams, bg = _scene(seed, opaque=opaque, sh_k=sh_k)
    w, h = 24, 20
    weights = torch.randn(2, 4, h, w, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    (rgb, alpha), g_fast = _grads(render, gs, cams, w, h, bg, weights)
    (rgb_ref, alpha_ref), g_ref = _grads(rasterize_reference, gs, cams, w, h, bg, weights)
    assert rgb.shape == (2, 3, h, w) and alpha.shape == (2, 1, h, w)
    assert 0.05 < alpha.mean() < 0.95  # neither empty nor saturated
    if opaque:
        assert alpha.max() > 1 - 1e-3  # termination and the 0.999 cap are exercised
    torch.testing.assert_close(rgb, rgb_ref, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(alpha, alpha_ref, rtol=1e-9, atol=1e-9)
    for name, ref in g_ref.items():
        assert ref.abs().max() > 0, name
        torch.testing.assert_close(g_fast[name], ref, rtol=1e-8, atol=1e-9 * ref.abs().max().item(), msg=name)


@pytest.mark.parametrize("seed,opaque,sh_k", [(0, False, 4), (1, True, 4), (2, True, 1)])
def test_sparse_matches_dense_reference_values_and_gradients(seed, opaque, sh_k):
    check_against_dense_reference(rasterize_torch, seed, opaque, sh_k)


def test_float32_matches_float64_reference():
    # The default dtype: float32 rounding of ~20 ops per pair, well under 1e-5 of a [0, 1] colour.
    gs, cams, bg = _scene(3, opaque=True)
    rgb, alpha = rasterize_torch(gs.to(torch.float32), cams.to(torch.float32), 32, 32, bg.float())
    rgb_ref, alpha_ref = rasterize_reference(gs, cams, 32, 32, bg)
    torch.testing.assert_close(rgb.double(), rgb_ref, rtol=0, atol=1e-5)
    torch.testing.assert_close(alpha.double(), alpha_ref, rtol=0, atol=1e-5)


def test_chunked_occlusion_culling_changes_nothing(monkeypatch):
    # A dense scene where most pixels terminate: tiny chunks cull occluded rows early; the pairs
    # (and so the images) must be the very same as with one chunk, and as the dense reference.
    gs, cams, bg = _scene(4, b=2, n=120, opaque=True, log_scale=-3.0)
    whole = rasterize_torch(gs, cams, 24, 24, bg)
    monkeypatch.setattr(pairs, "CHUNK_PAIRS", 64)
    chunked = rasterize_torch(gs, cams, 24, 24, bg)
    ref = rasterize_reference(gs, cams, 24, 24, bg)
    assert (whole[1] > 1 - 1e-3).float().mean() > 0.1
    for a, b, r in zip(whole, chunked, ref):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)
        torch.testing.assert_close(a, r, rtol=1e-9, atol=1e-9)


def test_gradients_match_finite_differences():
    # float64 central differences (gradcheck, eps 1e-6) on a tiny scene away from the kinks
    # (alpha cap, colour clamp, the 1/255 cut): tolerances are gradcheck's float64 defaults.
    gs, cams, bg = _scene(5, b=1, n=4, sh_k=4, log_scale=-3.0)
    gs = GaussianSet(gs.means, gs.log_scales, gs.quats, gs.sh * 0.2, gs.opacities.clamp(0.2, 0.9))
    names = ["means", "log_scales", "quats", "sh", "opacities"]

    def render(*tensors):
        rgb, alpha = rasterize_torch(GaussianSet(*tensors), cams, 10, 8, bg)
        return rgb, alpha

    inputs = tuple(getattr(gs, k).detach().clone().requires_grad_() for k in names)
    assert render(*inputs)[1].max() > 0.1
    assert torch.autograd.gradcheck(render, inputs, eps=1e-6, atol=1e-5, rtol=1e-3)


def _golden_scene():
    """Three isotropic Gaussians on a frontal camera, 2D means on pixel centres (33x33 image).

    A (red) alone at the image centre; B (green) 8 px right of centre; C (blue) straight behind B
    on the same ray, 1.25x further away. All in float64.
    """
    eye = torch.tensor([0.0, 0.0, 2.7], dtype=torch.float64)  # float64 throughout: exact maths
    cam = Camera.look_at(eye[None], torch.zeros(1, 3, dtype=torch.float64))
    fx = EG3D_FOCAL * 33
    b_pos = torch.tensor([8 * 2.7 / fx, 0.0, 0.0], dtype=torch.float64)
    c_pos = eye + 1.25 * (b_pos - eye)
    means = torch.stack([torch.zeros(3, dtype=torch.float64), b_pos, c_pos])[None]
    colours = torch.tensor([[1.0, 0.1, 0.1], [0.1, 1.0, 0.1], [0.1, 0.1, 1.0]], dtype=torch.float64)
    gs = GaussianSet(
        means=means,
        log_scales=torch.full((1, 3, 3), -5.0, dtype=torch.float64),
        quats=torch.tensor([1.0, 0, 0, 0], dtype=torch.float64).expand(1, 3, 4),
        sh=rgb_to_sh0(colours)[None],
        opacities=torch.tensor([[0.7, 0.6, 0.9]], dtype=torch.float64),
    )
    return gs, cam, colours


def test_golden_image_against_hand_computed_pixels():
    gs, cam, col = _golden_scene()
    bg = torch.tensor([0.2, 0.3, 0.4], dtype=torch.float64)
    rgb, alpha = rasterize(gs, cam, 33, 33, background=bg)
    px = lambda x, y: rgb[0, :, y, x]  # noqa: E731
    # A at its centre: d = 0, alpha = o
    torch.testing.assert_close(px(16, 16), 0.7 * col[0] + 0.3 * bg, rtol=0, atol=1e-12)
    assert alpha[0, 0, 16, 16].item() == pytest.approx(0.7, abs=1e-12)
    # A one pixel to the right: o exp(-½ d² / σ²), σ² = (s fx / z)² + 0.3 px² (z = 2.7 on axis)
    var = (torch.exp(torch.tensor(-5.0, dtype=torch.float64)) * EG3D_FOCAL * 33 / 2.7) ** 2 + 0.3
    a1 = 0.7 * torch.exp(-0.5 / var)
    torch.testing.assert_close(px(17, 16), a1 * col[0] + (1 - a1) * bg, rtol=0, atol=1e-12)
    # B in front of C on the same pixel: front-to-back "over"
    expected = 0.6 * col[1] + 0.4 * 0.9 * col[2] + 0.4 * 0.1 * bg
    torch.testing.assert_close(px(24, 16), expected, rtol=0, atol=1e-9)
    assert alpha[0, 0, 16, 24].item() == pytest.approx(1 - 0.4 * 0.1, abs=1e-9)
    # far from every Gaussian: exactly the background, alpha exactly 0
    assert torch.equal(px(2, 30), bg) and alpha[0, 0, 30, 2].item() == 0.0
    # the dense reference draws the same image
    ref_rgb, ref_alpha = rasterize_reference(gs, cam, 33, 33, bg[None])
    torch.testing.assert_close(rgb, ref_rgb, rtol=0, atol=1e-12)
    torch.testing.assert_close(alpha, ref_alpha, rtol=0, atol=1e-12)


def test_nothing_visible_gives_background_and_zero_gradients():
    gs, cams, _ = _scene(6, b=1, n=10, dtype=torch.float32)
    away = Camera.look_at(torch.tensor([[0.0, 0.0, 2.7]]), torch.tensor([[0.0, 0.0, 5.0]]))
    leaves = gs.map(lambda t: t.clone().requires_grad_())
    rgb, alpha = rasterize(leaves, away, 16, 16, background=(0.1, 0.2, 0.3))
    assert torch.equal(alpha, torch.zeros(1, 1, 16, 16))
    assert torch.equal(rgb, torch.tensor([0.1, 0.2, 0.3])[None, :, None, None].expand(1, 3, 16, 16))
    rgb.sum().backward()
    assert leaves.means.grad is None or torch.equal(leaves.means.grad, torch.zeros_like(leaves.means))


def test_rasterize_broadcasting_and_backgrounds():
    gs, cams, _ = _scene(7, b=3, dtype=torch.float32)
    one = gs.select(0)
    rgb_b, alpha_b = rasterize(one, cams, 16, 12)  # one set, three cameras
    for i in range(3):
        rgb_i, alpha_i = rasterize(one, cams.select(i), 16, 12)
        torch.testing.assert_close(rgb_b[i : i + 1], rgb_i, rtol=0, atol=1e-6)
        torch.testing.assert_close(alpha_b[i : i + 1], alpha_i, rtol=0, atol=1e-6)
    rgb_c, _ = rasterize(gs, cams.select(1), 16, 12)  # three sets, one camera
    assert rgb_c.shape == (3, 3, 12, 16)
    white = rasterize(gs, cams, 16, 12)[0]
    for bg in (1.0, (1.0, 1.0, 1.0), torch.ones(3), torch.ones(3, 3)):
        assert torch.equal(rasterize(gs, cams, 16, 12, background=bg)[0], white)


def test_rasterize_user_errors():
    gs, cams, _ = _scene(8, b=2, dtype=torch.float32)
    with pytest.raises(AgoraError, match="CUDA") as err:
        rasterize(gs, cams, 8, 8, backend="gsplat")
    assert "\n" not in str(err.value)
    with pytest.raises(AgoraError, match="2 Gaussian sets but 3 cameras"):
        rasterize(gs, sample_ffhq_like_cameras(3), 8, 8)
    with pytest.raises(AgoraError, match="unknown render backend"):
        rasterize(gs, cams, 8, 8, backend="vulkan")
