"""`agora report` (agora_core/report): the demo page built from a folder laid out as scripts/demo.sh
writes it, every missing file a line naming the command that makes it, and the page in headless
Chromium: no console error, every image decoded, the videos playable."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from agora_core.report import DemoFiles, build_report

FILES = DemoFiles()


def _png(path: Path, h: int, w: int, value: int = 128) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.full((h, w, 3), value, np.uint8))


def _video(path: Path, frames: int = 6) -> None:
    from agora_core.invert.video_io import Mp4Writer

    with Mp4Writer(path, 12.0) as writer:
        for i in range(frames):
            writer.append(np.full((64, 128, 3), 20 * i, np.uint8))
        writer.finish()


def _model_folder(root: Path) -> Path:
    from agora_core.inference.model_folder import FORMAT, FORMAT_VERSION, MANIFEST

    root.mkdir(parents=True)
    doc = {"format": FORMAT, "format_version": FORMAT_VERSION, "kimg": 64.0, "resolution": 64,
           "head_model": "demo-head-v1+mouth", "weights_sha256": "0" * 64,
           "sampling": {"camera": [0.0] * 25, "shape_mean": [0.0] * 4, "shape_std": [1.0] * 4},
           "config": {"generator": {"uv_resolution": 64, "gaussian_grid": 64}}}
    (root / MANIFEST).write_text(json.dumps(doc))
    (root / "log.jsonl").write_text("".join(json.dumps({"event": "swd", "kimg": k, "swd": 50.0 / (1 + k)}) + "\n"
                                            for k in (0, 4, 8, 12)) + '{"event": "tick", "kimg": 1}\n{"trunc')
    return root


@pytest.fixture(scope="module")
def demo_out(tmp_path_factory) -> tuple[Path, Path]:
    """A demo output folder with every file the page shows (small stand-ins in the real formats)."""
    from test_train_fixtures import write_tiny_dataset

    from agora_core.mobile.basis_file import RESIDUAL_GROUPS, GaussianBasis

    root = tmp_path_factory.mktemp("report")
    out = root / "out"
    write_tiny_dataset(out / FILES.dataset, n=5, resolution=16)
    _png(out / FILES.samples, 512, 512)
    _png(out / FILES.preview(), 5 * 64, 4 * 64)
    (out / FILES.losses()).write_text(json.dumps({"psnr_pivot": 18.0, "psnr_final": 27.5,
                                                  "psnr_heldout_pivot": 16.0, "psnr_heldout_final": 21.0}))
    _video(out / FILES.reenact)
    _video(out / FILES.reenact_m)
    rows = [{"path": p, "batch": b, "median_ms": ms * b} for p, ms in (("agora", 40.0), ("agora_m", 8.0), ("render", 5.0))
            for b in (1, 8)]
    (out / FILES.bench).write_text(json.dumps({"device": "cpu", "threads": 2, "results": rows,
                                               "speedup": {"batch1": 5.0, "batch8": 5.0, "batch1_no_render": 12.0}}))
    k, n = 4, 10
    dims = {"xyz": 3, "scale": 3, "rotation": 4, "opacity": 1}
    basis = {g: torch.linalg.qr(torch.randn(n * dims[g], k))[0].T.contiguous() for g in RESIDUAL_GROUPS}
    GaussianBasis(basis, {g: torch.ones(k) for g in RESIDUAL_GROUPS},
                  {g: torch.linspace(0.5, 1.0, k) for g in RESIDUAL_GROUPS}, n).save(out / FILES.basis)
    (out / FILES.eval).write_text(json.dumps({"dataset_images": 5, "quick": True, "metrics": {
        "swd": {"status": "ok", "value": 12.3, "note": "×1e3"}, "fid": {"status": "needs weights", "needs": "--inception"}}}))
    (out / FILES.site).mkdir()
    (out / FILES.site / "index.html").write_text("<!doctype html><title>viewer</title>")
    (out / FILES.train_run).mkdir()
    (out / FILES.train_run / "log.jsonl").write_text(json.dumps({"event": "swd", "kimg": 1.0, "swd": 30.0}) + "\n")
    return out, _model_folder(root / "model")


def test_page_shows_every_result(demo_out):
    out, model = demo_out
    page = build_report(out, model).read_text()
    for name in ("dataset.png", "timings.png", "explained_variance.png", "swd_curve.png"):
        img = cv2.imread(str(out / "report" / name))
        assert img is not None and min(img.shape[:2]) > 100, name
        assert f"report/{name}" in page
    for ref in (FILES.samples, FILES.preview(), FILES.reenact, FILES.reenact_m, "site/index.html"):
        assert f'"{ref}"' in page, ref
    assert "21.00 dB" in page and "held-out" in page and "64.0 kimg" in page
    assert "needs weights" in page and "12.3" in page and "No " not in page  # nothing reported missing
    assert not list(out.rglob(".*.tmp"))


def test_missing_files_name_the_command(tmp_path):
    page = build_report(tmp_path).read_text()
    assert page.count('class="missing"') == 9 and "make demo-train" in page and "agora invert" in page


def test_cli(demo_out):
    from agora_cli.app import app

    out, model = demo_out
    res = CliRunner().invoke(app, ["report", str(out), "--model", str(model)])
    assert res.exit_code == 0 and "index.html" in res.output, res.output
    res = CliRunner().invoke(app, ["report", str(out / "nope")])
    assert res.exit_code == 2 and "no such folder" in res.output and "Traceback" not in res.output


@pytest.mark.chromium
def test_page_loads_in_chromium(demo_out):
    from agora_core.export.browser import HeadlessBrowser

    out, model = demo_out
    page_path = build_report(out, model)
    with HeadlessBrowser() as browser:
        page = browser.open("about:blank", 1100, 800)
        page.send("Log.enable")
        page.send("Page.navigate", {"url": page_path.resolve().as_uri()})
        page.evaluate("new Promise(r => document.readyState === 'complete' ? r() : addEventListener('load', () => r()))",
                      await_promise=True)
        images = page.evaluate("[...document.images].map(i => [i.getAttribute('src'), i.complete, i.naturalWidth])")
        videos = page.evaluate(
            "Promise.all([...document.querySelectorAll('video')].map(v => v.readyState >= 2 ? "
            "[v.getAttribute('src'), v.readyState, v.duration] : new Promise(r => { "
            "v.addEventListener('loadeddata', () => r([v.getAttribute('src'), v.readyState, v.duration])); "
            "v.addEventListener('error', () => r([v.getAttribute('src'), -1, v.error && v.error.code])); })))",
            await_promise=True, timeout=60)
        errors = [e for e in browser.events if e.get("method") == "Runtime.exceptionThrown"
                  or (e.get("method") == "Runtime.consoleAPICalled" and e["params"].get("type") == "error")
                  or (e.get("method") == "Log.entryAdded" and e["params"]["entry"].get("level") == "error")]
    assert not errors, errors
    assert len(images) == 6 and all(done and width > 0 for _, done, width in images), images
    assert len(videos) == 2 and all(state >= 2 and duration > 0.4 for _, state, duration in videos), videos


def test_enlarge_keeps_flat_images_and_the_range():
    """render.images.enlarge: what every viewable output goes through (bicubic overshoot clamped)."""
    from tolerances import rounding_tol

    from agora_core.render.images import enlarge

    flat = torch.full((2, 3, 16, 16), 0.25)
    # bicubic weights sum to 1: a flat image stays flat up to a few float32 roundings of 0.25
    assert (enlarge(flat, 64) - 0.25).abs().max() <= rounding_tol(torch.float32, 0.25, steps=8)
    edge = torch.zeros(1, 3, 16, 16)
    edge[..., 8:] = 1.0
    big = enlarge(edge, 64)
    assert big.shape == (1, 3, 64, 64) and float(big.min()) >= 0.0 and float(big.max()) <= 1.0
    assert enlarge(edge, 16) is edge and enlarge(big, 16).shape == (1, 3, 16, 16)
