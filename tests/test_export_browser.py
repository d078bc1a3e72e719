"""The AGORA-M WebGL2 viewer in headless Chromium (SwiftShader) against the PyTorch AGORA-M render.

Needs Chromium (CI installs Debian's `chromium`): the `chromium` marker skips these tests without it,
or fails them when $CI is set (tests/conftest.py).
"""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest
import torch

from agora_core.head import FlameParams
from agora_core.export.browser import HeadlessBrowser
from agora_core.export.browser_bench import run_browser_benchmark
from agora_core.export.demo_avatar import build_demo_agora_m
from agora_core.export.web_bundle import write_web_bundle
from agora_core.export.web_server import serve_bundle
from agora_core.mobile import CoefficientMLP, GaussianBasis
from agora_core.mobile.blendshape_avatar import BlendshapeAvatar
from agora_core.render import FLAME_CAMERA_RADIUS, orbit_cameras, rasterize

pytestmark = pytest.mark.chromium

WIDTH, HEIGHT = 192, 160
MIN_PSNR = 28.0  # dB; the two renderers differ only by fp16 blendshapes, depth-bin ties and float order


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """Demo-head AGORA-M files in the documented layouts, its bundle, and the PyTorch reference avatar."""
    d = build_demo_agora_m(grid=48, k=16)
    folder = tmp_path_factory.mktemp("agora_m")
    basis_path = d.basis.save(folder / "basis.safetensors")
    mlp_path = d.mlp.save(folder / "mlp.safetensors", train_mse=0.0, val_mse=0.0)
    site = write_web_bundle(folder / "site", d.neutral, d.w, GaussianBasis.load(basis_path), CoefficientMLP.load(mlp_path)[0])
    reference = BlendshapeAvatar(d.neutral, GaussianBasis.load(basis_path), CoefficientMLP.load(mlp_path)[0], d.w[None])
    manifest = json.loads((site / "avatar.json").read_text())
    n = manifest["num_gaussians"]
    active = np.fromfile(site / "neutral.bin", "<f4").reshape(3, -1, 4)[1, :n, 3]
    assert 0.3 < active.mean() < 0.95  # moving Gaussians (blended every frame) and still ones (blended at load)
    return site, reference, tuple(manifest["default_camera"]["target"])


@pytest.fixture(scope="module")
def page(demo):
    site = demo[0]
    with serve_bundle(site) as server, HeadlessBrowser() as browser:
        page = browser.open(server.url + "index.html?autoplay=0&ui=0", WIDTH, HEIGHT)
        info = page.evaluate("window.agora.ready", await_promise=True, timeout=120)
        assert info["gaussians"] == demo[1].neutral.num_gaussians and info["k"] == 16
        yield page


def _camera(target, yaw: float, pitch: float):
    return orbit_cameras(torch.tensor([yaw]), torch.tensor([pitch]), FLAME_CAMERA_RADIUS, target)


def _camera_js(cam) -> str:
    k = cam.intrinsics[0]
    return json.dumps({"cam2world": cam.cam2world[0].tolist(), "fx": float(k[0, 0]), "fy": float(k[1, 1]),
                       "cx": float(k[0, 2]), "cy": float(k[1, 2]), "width": WIDTH, "height": HEIGHT})


def browser_render(page, cam, expr, jaw, eyelids) -> np.ndarray:
    page.evaluate(f"window.agora.setParams({list(expr)}, {list(jaw)}, {list(eyelids)}); "
                  f"window.agora.setCamera({_camera_js(cam)})")
    return _read(page)


def _read(page) -> np.ndarray:
    page.evaluate("window.agora.renderOnce()", await_promise=True, timeout=60)
    px = page.evaluate("window.agora.readPixels()")
    img = np.frombuffer(base64.b64decode(px["data"]), np.float32).reshape(px["height"], px["width"], 4)
    return img[..., :3].clip(0, 1)


def torch_render(reference: BlendshapeAvatar, cam, expr, jaw, eyelids) -> np.ndarray:
    t = lambda v: torch.tensor([list(v)], dtype=torch.float32)  # noqa: E731
    with torch.no_grad():
        gaussians = reference.animate(FlameParams(expression=t(expr), jaw=t(jaw), eyelids=t(eyelids)))
        rgb, _ = rasterize(gaussians, cam, WIDTH, HEIGHT, 1.0)
    return rgb[0].permute(1, 2, 0).numpy().clip(0, 1)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(1.0 / max(float(((a - b) ** 2).mean()), 1e-12)))


@pytest.mark.parametrize("yaw, pitch, expr, jaw, eyelids", [
    (0.0, 0.0, [0.0] * 50, [0.0, 0.0, 0.0], [0.0, 0.0]),
    (0.35, 0.1, [1.2, -0.8, 0.6, 0.3] + [0.0] * 46, [0.3, 0.02, 0.0], [0.6, 0.3]),
])  # fmt: skip
def test_viewer_matches_the_pytorch_agora_m_render(page, demo, yaw, pitch, expr, jaw, eyelids):
    _, reference, target = demo
    cam = _camera(target, yaw, pitch)
    got = browser_render(page, cam, expr, jaw, eyelids)
    expected = torch_render(reference, cam, expr, jaw, eyelids)
    value = psnr(got, expected)
    print(f"yaw {yaw}: PSNR {value:.1f} dB")
    assert value >= MIN_PSNR
    assert (expected < 0.9).mean() > 0.2  # the head fills the frame (not a blank-vs-blank comparison)


@pytest.fixture(scope="module")
def imported(imported_run, tmp_path_factory):
    """The bundle of an imported run (the authors' AGORA-M pair: two hidden layers, their attribute spaces)
    and its PyTorch reference, finished as their viewer finishes the blend."""
    from agora_core.export.exporters import export_web
    from agora_core.export.sources import load_avatar_source
    from test_importer_agora_m import imported_run_with_agora_m

    run = imported_run_with_agora_m(imported_run, tmp_path_factory.mktemp("imported_web"))
    site = export_web(run, None, None, run.parent / "site", seed=0)
    avatar = load_avatar_source(run, seed=0)
    reference = BlendshapeAvatar(avatar.neutral, GaussianBasis.load(run / "basis.safetensors"),
                                 CoefficientMLP.load(run / "mlp.safetensors")[0], avatar.w[None], finish="viewer")
    manifest = json.loads((site / "avatar.json").read_text())
    with serve_bundle(site) as server, HeadlessBrowser() as browser:
        page = browser.open(server.url + "index.html?autoplay=0&ui=0", WIDTH, HEIGHT)
        info = page.evaluate("window.agora.ready", await_promise=True, timeout=120)
        assert info["gaussians"] == 2789 and info["k"] == 8
        yield page, reference, tuple(manifest["default_camera"]["target"])


@pytest.mark.parametrize("yaw, expr, jaw, eyelids", [
    (0.0, [0.0] * 50, [0.0] * 3, [0.0] * 2),
    (0.3, [1.0, -0.7, 0.5] + [0.0] * 47, [0.25, 0.0, 0.0], [0.5, 0.2]),
])  # fmt: skip
def test_viewer_matches_pytorch_on_an_imported_run(imported, yaw, expr, jaw, eyelids):
    page, reference, target = imported
    cam = _camera(target, yaw, 0.0)
    got = browser_render(page, cam, expr, jaw, eyelids)
    expected = torch_render(reference, cam, expr, jaw, eyelids)
    value = psnr(got, expected)
    print(f"imported, yaw {yaw}: PSNR {value:.1f} dB")
    assert value >= MIN_PSNR
    assert (expected < 0.9).mean() > 0.05  # something is drawn (not a blank-vs-blank comparison)


def test_jaw_slider_changes_the_mouth_region(page, demo):
    _, _, target = demo
    cam = _camera(target, 0.0, 0.0)
    closed = browser_render(page, cam, [0.0] * 50, [0.0] * 3, [0.0] * 2)
    page.evaluate("(() => { const s = document.querySelector('#jaw input'); s.value = '0.35';"
                  " s.dispatchEvent(new Event('input')); })()")  # the 'pitch (open)' slider
    opened = _read(page)
    diff = np.abs(opened - closed).sum(-1)
    assert diff.max() > 0.3
    rows = np.nonzero((closed < 0.95).any(-1).any(-1))[0]  # the head's rows
    middle = (rows.min() + rows.max()) / 2
    lower = diff[int(middle):].sum() / diff.sum()
    print(f"share of the jaw's image change below the head's middle: {lower:.2f}")
    assert lower > 0.8


def test_resort_follows_animation_and_view_but_not_tiny_changes(page, demo):
    _, _, target = demo
    page.evaluate(f"window.agora.setCamera({_camera_js(_camera(target, 0.1, 0.0))})")
    run = """(async (expr, jaw, cam) => {
        const v = window.agora.viewer, s0 = v.sort.count;
        if (expr) window.agora.setParams(expr, jaw, [0, 0]);
        if (cam) window.agora.setCamera(cam);
        for (let i = 0; i < 30 && v.sort.count === s0; ++i) { v.step(); await new Promise((r) => setTimeout(r, 5)); }
        for (let i = 0; i < 5; ++i) { v.step(); await new Promise((r) => setTimeout(r, 5)); }
        return v.sort.count - s0; })"""
    page.evaluate(f"{run}(null, null, null)", await_promise=True)  # settle after the camera change
    big = page.evaluate(f"{run}([2.0], [0.3, 0, 0], null)", await_promise=True)
    tiny = page.evaluate(f"{run}([2.0001], [0.3, 0, 0], null)", await_promise=True)
    view = page.evaluate(f"{run}(null, null, {_camera_js(_camera(target, 0.4, 0.0))})", await_promise=True)
    assert (big, tiny, view) == (1, 0, 1)


def test_frame_stats_and_sequence_playback(page):
    stats0 = page.evaluate("window.agora.frameStats()")
    assert {"frames", "mean_ms", "median_ms", "sorts", "gaussians", "k"} <= set(stats0)
    played = page.evaluate("""(async () => {
        const v = window.agora.viewer, p0 = Float32Array.from(v.params);
        window.agora.play(true);
        await new Promise((r) => setTimeout(r, 400));
        window.agora.play(false);
        return v.params.some((x, i) => x !== p0[i]); })()""", await_promise=True)
    assert played
    assert page.evaluate("window.agora.frameStats()")["frames"] > stats0["frames"]


def test_browser_benchmark_reports_animated_and_static(demo):
    result = run_browser_benchmark(demo[0], frames=6, width=128, height=128, warmup=2)
    print(json.dumps({k: result[k] for k in ("ratio", "sorts", "renderer")}),
          result["animated"]["median_ms"], result["static"]["median_ms"])
    assert result["animated"]["frames"] == result["static"]["frames"] == 6
    assert result["gaussians"] == demo[1].neutral.num_gaussians and result["k"] == 16
    assert result["animated"]["median_ms"] > 0 and result["static"]["median_ms"] > 0 and result["ratio"] > 0
