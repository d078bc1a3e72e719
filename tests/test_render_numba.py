"""The compiled CPU backend (render/rasterizer_numba.py) against the dense reference and the torch path;
its tiled parallel kernels against its serial ones."""

import numpy as np
import pytest
import torch

from agora_core.render import Camera, rasterize
from agora_core.render import rasterizer_numba
from agora_core.render.rasterization import screen_space_numba
from agora_core.render.rasterizer_numba import composite_numba, numba
from agora_core.render.rasterizer_numba_tiles import TILE
from agora_core.render.rasterizer_torch import screen_space
from test_render_projection import projection_tolerances
from test_render_rasterizer import _scene, check_against_dense_reference
from tolerances import assert_within


def _numba_tiled(gs, cams, w, h, bg):
    proj, colors = screen_space(gs, cams, w, h)
    return composite_numba(proj, gs.opacities, colors, w, h, bg, parallel=True)


def _numba_serial(gs, cams, w, h, bg):
    proj, colors = screen_space(gs, cams, w, h)
    return composite_numba(proj, gs.opacities, colors, w, h, bg, parallel=False)


@pytest.mark.parametrize("render", [_numba_tiled, _numba_serial], ids=["tiled", "serial"])
@pytest.mark.parametrize("seed,opaque,sh_k", [(10, False, 4), (11, True, 4), (12, True, 1)])
def test_numba_matches_dense_reference_values_and_gradients(render, seed, opaque, sh_k):
    check_against_dense_reference(render, seed, opaque, sh_k)


def test_depth_order_is_a_stable_sort_of_the_visible_gaussians():
    from agora_core.render.projection import Projection
    from agora_core.render.rasterizer_numba import _depth_order

    g = torch.Generator().manual_seed(3)
    depths = torch.randint(1, 40, (3, 5000), generator=g).double() / 7 + 0.5  # many ties
    depths[1] = torch.rand(5000, generator=g, dtype=torch.float64) * 1e3  # all 64 bits of the key matter
    radii = torch.randint(0, 3, (3, 5000, 2), generator=g)
    radii[2] = 0  # nothing visible
    order, counts = _depth_order(Projection(torch.zeros(3, 5000, 2), torch.zeros(3, 5000, 3), depths, radii))
    visible = (radii > 0).any(-1)
    expected = torch.sort(torch.where(visible, depths, torch.inf), dim=1, stable=True).indices
    assert counts.tolist() == visible.sum(1).tolist() and counts[0] > 1000 and counts[2] == 0
    for b in range(3):
        assert np.array_equal(order[b, :counts[b]], expected[b, :counts[b]].numpy())
        assert np.array_equal(order[b, counts[b]:], np.nonzero(~visible[b].numpy())[0])
    # the tiled layout's parallel sort (buckets of key ranges, one per slice): the same order for any slice count
    for slices in (1, 2, 3, 7):
        same = _depth_order(Projection(torch.zeros(3, 5000, 2), torch.zeros(3, 5000, 3), depths, radii), slices)
        assert np.array_equal(same[0], order) and np.array_equal(same[1], counts), slices


def _composite_with_grads(scene, w, h, parallel):
    """rgb, alpha and the gradients of a fixed random loss w.r.t. means2d, conics, opacities, colours, bg."""
    proj, opacities, colors, bg = scene
    leaves = [t.detach().clone().requires_grad_() for t in (proj.means2d, proj.conics, opacities, colors, bg)]
    rgb, alpha = composite_numba(type(proj)(leaves[0], leaves[1], proj.depths, proj.radii), leaves[2], leaves[3],
                                 w, h, leaves[4], parallel=parallel)
    g = torch.Generator().manual_seed(7)
    loss = (rgb * torch.randn(rgb.shape, generator=g, dtype=rgb.dtype)).sum() + \
        (alpha * torch.randn(alpha.shape, generator=g, dtype=alpha.dtype)).sum()
    return (rgb, alpha), torch.autograd.grad(loss, leaves)


SCENE = (70, 2 * TILE + 13)  # three bands of TILE rows (tiles span the width), the last one partial


def _tiled_scene(w, h):
    """Batch 2, 900 Gaussians, a third nearly opaque (pixels stop), sizes from sub-pixel to several tiles wide."""
    gs, cams, bg = _scene(17, b=2, n=900, opaque=True, log_scale=-5.5)
    gs.log_scales[:, :30] += 2.5  # a few wide ones: each spans many tiles
    with torch.no_grad():
        proj, colors = screen_space(gs, cams, w, h)
    radius = proj.radii.amax(-1)[proj.radii.amax(-1) > 0]
    assert radius.max() > 2 * TILE and radius.min() <= 2  # boxes from one pixel to several tiles
    return proj, gs.opacities, colors, bg


def test_tiled_kernels_match_serial_kernels_in_float64():
    # Forward: every pixel meets the same Gaussians in the same order with the same arithmetic, so
    # only rounding-level differences are allowed. Backward: each Gaussian's gradient is the same
    # per-pixel terms summed in another order (per tile, then over tiles): rounding of a sum of at
    # most H·W terms, bounded by H·W·eps of the largest gradient.
    w, h = SCENE  # not a multiple of the tile: a partial tile at the bottom edge
    scene = _tiled_scene(w, h)
    (rgb, alpha), grads = _composite_with_grads(scene, w, h, parallel=True)
    (rgb_s, alpha_s), grads_s = _composite_with_grads(scene, w, h, parallel=False)
    eps = torch.finfo(torch.float64).eps
    assert 0.2 < alpha.mean() < 0.95 and alpha.max() > 1 - 1e-3  # covered, and some pixels stop
    torch.testing.assert_close(rgb, rgb_s, rtol=0, atol=16 * eps)
    torch.testing.assert_close(alpha, alpha_s, rtol=0, atol=16 * eps)
    for name, g, g_s in zip(("means2d", "conics", "opacities", "colors", "background"), grads, grads_s):
        scale = g_s.abs().max().item()
        assert scale > 0 and (g_s != 0).float().mean() > 0.5, name  # most Gaussians get a gradient
        torch.testing.assert_close(g, g_s, rtol=0, atol=w * h * eps * scale, msg=name)


@pytest.mark.parametrize("parallel", [True, False], ids=["tiled", "serial"])
def test_float32_inputs_get_the_float64_arithmetic(parallel):
    # The kernels read float32 arrays as they are and promote every value to float64 before any
    # arithmetic (`_blend`, `_unblend`, `_box`): float32 tensors must give exactly the float64 run on
    # the same values, rounded to float32 at the end (images and every gradient).
    w, h = SCENE
    proj, opacities, colors, bg = _tiled_scene(w, h)
    same = lambda t: t.float().double()  # noqa: E731  (float32 values, held in float64)
    scene64 = (type(proj)(same(proj.means2d), same(proj.conics), proj.depths, proj.radii), same(opacities),
               same(colors), same(bg))
    scene32 = (type(proj)(proj.means2d.float(), proj.conics.float(), proj.depths, proj.radii), opacities.float(),
               colors.float(), bg.float())
    g = torch.Generator().manual_seed(7)
    weights = [torch.randn(2, c, h, w, generator=g).float() for c in (3, 1)]  # the same loss for both dtypes
    results = []
    for (p, o, c, b) in (scene64, scene32):
        leaves = [t.detach().clone().requires_grad_() for t in (p.means2d, p.conics, o, c, b)]
        out = composite_numba(type(p)(leaves[0], leaves[1], p.depths, p.radii), *leaves[2:4], w, h, leaves[4],
                              parallel=parallel)
        loss = sum((x * wt.to(x.dtype)).sum() for x, wt in zip(out, weights))
        results.append([*out, *torch.autograd.grad(loss, leaves)])
    for a, b in zip(results[1], results[0]):
        assert a.dtype == torch.float32 and torch.equal(a, b.float())


def test_tiled_kernels_are_deterministic_for_any_thread_count(monkeypatch):
    # Each tile is one task; its gradient sums go to slots of its own and are added in tile order,
    # so the result is the same bits for two runs and for 1 or 2 threads (the code path is the same).
    monkeypatch.setattr(rasterizer_numba, "WORK_PER_THREAD", 1)  # small images get every thread too
    w, h = SCENE
    scene = _tiled_scene(w, h)
    torch.set_num_threads(1)  # the kernels follow torch's thread count (conftest restores it)
    one = _composite_with_grads(scene, w, h, parallel=True)
    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("numba has a single thread here: nothing to compare against")
    torch.set_num_threads(2)
    for _ in range(2):
        two = _composite_with_grads(scene, w, h, parallel=True)
        assert all(torch.equal(a, b) for a, b in zip(one[0] + one[1], two[0] + two[1]))
    assert numba.get_num_threads() == 2


def test_default_layout_is_chosen_by_call_size_not_by_threads(monkeypatch):
    calls = []
    for name in ("_forward", "_forward_tiles"):
        kernel = getattr(rasterizer_numba, name)
        monkeypatch.setattr(rasterizer_numba, name, lambda *a, _k=kernel, _n=name: calls.append(_n) or _k(*a))
    gs, cams, bg = _scene(18, b=2, n=50)
    side = int((rasterizer_numba.TILED_MIN_PIXELS / 2) ** 0.5) + 1  # two images just over the threshold
    for threads in (1, 2):
        torch.set_num_threads(threads)
        for w, h in ((24, 20), (side, side)):
            with torch.no_grad():
                rasterize(gs, cams, w, h, bg, backend="numba")
    assert calls == ["_forward", "_forward_tiles"] * 2


def test_tile_lists_hold_each_gaussian_once_per_tile_it_meets_in_depth_order():
    from agora_core.render.rasterizer_numba import PREPARE_CHUNK, _depth_order, _np64, _prepare

    w, h = SCENE
    proj, opacities, colors, _ = _tiled_scene(w, h)
    order, counts = _depth_order(proj)
    radii = proj.radii.numpy().astype(np.float64)
    gaussian = [_np64(t) for t in (proj.means2d, proj.conics, opacities, colors)]
    args = (*gaussian, order, counts, radii, w, h)
    boxes, task_start, ranks, slot, entry, rec, rec_box = _prepare(*args, PREPARE_CHUNK, True)
    ntiles = -(-h // TILE)
    for b in range(2):
        for t in range(ntiles):  # tile t: rows [TILE · t, TILE · (t + 1)), the whole width
            y0 = t * TILE
            listed = ranks[task_start[b * ntiles + t]:task_start[b * ntiles + t + 1]]
            bx = boxes[b, :counts[b]]
            meets = (bx[:, 0] <= bx[:, 1]) & (bx[:, 2] < y0 + TILE) & (bx[:, 3] >= y0)
            assert np.array_equal(listed, np.nonzero(meets)[0])  # exactly these ranks, front to back
            # each entry's record: its Gaussian's values, and its box cut to the tile's rows
            at = slice(task_start[b * ntiles + t], task_start[b * ntiles + t + 1])
            g = order[b, listed]
            expected = np.concatenate([gaussian[0][b, g], gaussian[1][b, g], gaussian[2][b, g, None], gaussian[3][b, g]], 1)
            assert np.array_equal(rec[at], expected)
            cut = boxes[b, listed].copy()
            cut[:, 2], cut[:, 3] = np.maximum(cut[:, 2], y0), np.minimum(cut[:, 3], y0 + TILE - 1)
            assert np.array_equal(rec_box[at], cut)
    assert len(ranks) > 1.2 * counts.sum()  # many Gaussians span several tiles (bands of TILE rows)
    # A Gaussian's entries, top tile first, through its slots: every entry exactly once, each of its rank.
    found = [(r, entry[slot[b, r] + j]) for b in range(2) for r in range(counts[b]) if boxes[b, r, 0] <= boxes[b, r, 1]
             for j in range((boxes[b, r, 3] // TILE) - (boxes[b, r, 2] // TILE) + 1)]
    assert np.array_equal(np.sort([e for _, e in found]), np.arange(len(ranks)))
    assert all(ranks[e] == r for r, e in found)
    assert all(task_start[b * ntiles + t] <= e < task_start[b * ntiles + t + 1]
               for b in range(2) for r in range(counts[b]) if boxes[b, r, 0] <= boxes[b, r, 1]
               for j, t in enumerate(range(boxes[b, r, 2] // TILE, boxes[b, r, 3] // TILE + 1))
               for e in [entry[slot[b, r] + j]])
    same = _prepare(*args, 97, True)  # other chunking, same lists
    lean = _prepare(*args, 97, False)  # no gradient index: the same lists and records
    assert all(np.array_equal(lean[k], same[k]) for k in (0, 1, 2, 5, 6)) and lean[3].size == lean[4].size == 0
    assert all(np.array_equal(x, y) for x, y in zip(same, (boxes, task_start, ranks, slot, entry, rec, rec_box)))


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


def test_rendering_keeps_torchs_thread_count():
    """Starting numba's OpenMP layer (the first parallel kernel of a process) resets the OpenMP runtime
    it shares with torch to numba's pool size; `--threads 1` must survive the first render. A fresh
    process: in this one the layer has started long ago."""
    import subprocess
    import sys
    from pathlib import Path

    code = ("import torch\n"
            "from agora_core.render import orbit_cameras, rasterize\n"
            "from agora_core.gaussians import GaussianSet\n"
            "torch.set_num_threads(1)\n"
            "n = 300\n"
            "g = GaussianSet(0.05 * torch.randn(1, n, 3), torch.full((1, n, 3), -4.0), torch.randn(1, n, 4),\n"
            "                torch.rand(1, n, 1, 3), torch.full((1, n), 0.8))\n"
            "rasterize(g, orbit_cameras(torch.zeros(1), torch.zeros(1), radius=1.3), 200, 200, backend='numba')\n"
            "print(torch.get_num_threads())\n")
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=300,
                         env={**__import__("os").environ, "PYTHONPATH": str(root), "NUMBA_NUM_THREADS": "2"})
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[-1] == "1", out.stdout
