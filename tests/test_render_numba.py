"""The compiled CPU backend (render/rasterizer_numba.py) against the dense reference and the torch path."""

import pytest
import torch

from agora_core.render import Camera, rasterize
from agora_core.render.rasterization import screen_space_numba
from agora_core.render.rasterizer_numba import composite_numba
from agora_core.render.rasterizer_torch import screen_space
from test_render_projection import projection_tolerances
from test_render_rasterizer import _scene, check_against_dense_reference
from tolerances import assert_within


def _numba(gs, cams, w, h, bg):
    return rasterize(gs, cams, w, h, bg, backend="numba")


@pytest.mark.parametrize("seed,opaque,sh_k", [(10, False, 4), (11, True, 4), (12, True, 1)])
def test_numba_matches_dense_reference_values_and_gradients(seed, opaque, sh_k):
    check_against_dense_reference(_numba, seed, opaque, sh_k)


def test_background_gradient_is_final_transmittance():
    gs, cams, _ = _scene(13, b=2)
    bg = torch.tensor([[0.2, 0.4, 0.6], [0.9, 0.1, 0.3]], dtype=torch.float64, requires_grad=True)
    proj, colors = screen_space(gs, cams, 16, 12)
    rgb, alpha = composite_numba(proj, gs.opacities, colors, 16, 12, bg)
    (grad,) = torch.autograd.grad(rgb.sum(), bg)
    expected = (1.0 - alpha).sum((2, 3)).expand(2, 3)  # d rgb / d bg = T_final per pixel and channel
    torch.testing.assert_close(grad, expected)


def test_inference_projection_equals_torch_projection():
    gs, cams, _ = _scene(14, b=3, n=300)
    gs.means[0, :20, 2] += 4.0  # some behind the camera or outside the image: culled, radii 0
    gs.opacities[1, :20] = 1e-3  # faint: culled
    with torch.no_grad():
        ref, ref_colors = screen_space(gs, cams, 40, 32)
        fast, fast_colors = screen_space_numba(gs, cams, 40, 32)
    culled = (ref.radii == 0).all(-1)
    assert culled.sum() >= 20 and (~culled).sum() > 500
    depth_tol, means2d_tol, conic_tol, decided = projection_tolerances(
        gs.means, gs.quats, gs.scales(), cams.world2cam(), cams.pixel_intrinsics(40, 32), torch.float64, 40, 32,
        gs.opacities)
    assert decided.float().mean() > 0.99
    assert torch.equal(fast.radii[decided], ref.radii[decided])
    keep = ~culled
    for name, tol in (("means2d", means2d_tol), ("conics", conic_tol), ("depths", depth_tol)):
        assert_within(getattr(fast, name)[keep], getattr(ref, name)[keep], tol[keep], name)
    torch.testing.assert_close(fast_colors, ref_colors)


def test_numba_and_torch_backends_agree_at_float32_on_a_dense_head_sized_scene():
    gs, cams, _ = _scene(15, b=2, n=3000, dtype=torch.float32, log_scale=-4.0)
    for grad in (False, True):
        with torch.set_grad_enabled(grad):
            a = rasterize(gs, cams, 64, 64, backend="numba")
            b = rasterize(gs, cams, 64, 64, backend="torch")
        for x, y in zip(a, b):
            assert (x - y).abs().max() < 2e-5  # float32 rounding only; a lost pair is >= 1/255


def test_auto_backend_on_cpu_is_numba_and_renders_empty_images_as_background():
    gs, cams, _ = _scene(16, b=2, dtype=torch.float32)
    auto = rasterize(gs, cams, 16, 12)
    explicit = rasterize(gs, cams, 16, 12, backend="numba")
    assert all(torch.equal(x, y) for x, y in zip(auto, explicit))
    away = Camera.look_at(torch.tensor([[0.0, 0.0, 2.7]]), torch.tensor([[0.0, 0.0, 5.0]]))
    rgb, alpha = rasterize(gs.select(0), away, 8, 8, background=(0.1, 0.2, 0.3), backend="numba")
    assert torch.equal(alpha, torch.zeros(1, 1, 8, 8))
    assert torch.equal(rgb, torch.tensor([0.1, 0.2, 0.3])[None, :, None, None].expand(1, 3, 8, 8))
