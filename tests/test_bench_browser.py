"""`agora bench --device browser`: the web viewer's animated vs static frame time, table and JSON.

Runs headless Chromium like tests/test_export_browser.py (the `chromium` marker: skipped without it,
failed when $CI is set; tests/conftest.py).
Timings are never asserted (a shared machine), only what is reported.
"""

from __future__ import annotations

import json

import pytest
import typer
from test_bench_reenactment import TINY_YAML
from typer.testing import CliRunner

from agora_cli.bench import bench
from agora_core.export.demo_avatar import write_demo_bundle

STATS = {"frames", "mean_ms", "median_ms", "p90_ms", "fps"}


@pytest.fixture
def app() -> typer.Typer:
    app = typer.Typer()
    app.command()(bench)
    return app


@pytest.mark.chromium
def test_bench_browser_on_a_bundle_prints_the_table_and_writes_json(app, tmp_path):
    site = write_demo_bundle(tmp_path / "site", grid=16, k=4)
    out = tmp_path / "bench.json"
    args = ["--device", "browser", "--bundle", str(site), "--frames", "3", "--warmup", "1", "--resolution", "96",
            "--json", str(out)]
    result = CliRunner().invoke(app, args, terminal_width=200)
    assert result.exit_code == 0, result.output
    manifest = json.loads((site / "avatar.json").read_text())
    n, k = manifest["num_gaussians"], manifest["k"]
    for text in (f"{n} Gaussians ({manifest['active_gaussians']} moving), K = {k}, 96×96", "median ms", "p90 ms",
                 "mean ms", "FPS", "animated", "static", "animated / static", "re-sorts", "WebGL: ", str(site)):
        assert text in result.output, text
    data = json.loads(out.read_text())
    assert data["device"] == "browser" and data["bundle"] == str(site) and data["notes"] == []
    assert set(data["animated"]) == set(data["static"]) == STATS
    assert data["animated"]["frames"] == data["static"]["frames"] == data["frames"] == 3
    assert (data["gaussians"], data["active_gaussians"], data["k"]) == (n, manifest["active_gaussians"], k)
    assert (data["width"], data["height"]) == (96, 96) and data["renderer"] and data["sorts"] >= 0
    assert data["ratio"] == pytest.approx(data["animated"]["median_ms"] / data["static"]["median_ms"])


@pytest.mark.chromium
def test_bench_browser_without_a_bundle_builds_one_and_says_so(app, tmp_path):
    config = tmp_path / "tiny.yaml"
    config.write_text(TINY_YAML)
    out = tmp_path / "bench.json"
    args = ["--device", "browser", "--config", str(config), "--k", "4", "--frames", "2", "--warmup", "0",
            "--resolution", "64", "--threads", "1", "--json", str(out)]
    result = CliRunner().invoke(app, args, terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "randomly initialised model" in result.output and "no --basis" in result.output
    data = json.loads(out.read_text())
    assert data["bundle"].startswith("temporary (") and len(data["notes"]) == 3
    assert data["k"] == 4 and data["gaussians"] == data["active_gaussians"] > 0  # random blendshapes move all


def test_bench_browser_user_errors(app, tmp_path, monkeypatch):
    """One line, exit status 2: no chromium, --bundle with another avatar source, --bundle without browser."""
    monkeypatch.setattr("agora_core.export.browser_bench.find_chromium", lambda: None)
    site = tmp_path / "site"
    result = CliRunner().invoke(app, ["--device", "browser", "--bundle", str(site)])
    assert result.exit_code == 2 and "chromium not found" in result.output and "Traceback" not in result.output
    result = CliRunner().invoke(app, ["--device", "browser", "--bundle", str(site), "--ckpt", "x.pt"])
    assert result.exit_code == 2 and "drop --ckpt" in result.output
    result = CliRunner().invoke(app, ["--bundle", str(site)])
    assert result.exit_code == 2 and "--device browser" in result.output
