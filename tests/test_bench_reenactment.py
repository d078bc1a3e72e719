"""`agora bench` at tiny scale: timing helpers, the reenactment benchmark, the CLI and its JSON."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import typer
from test_mobile_tinyhead import single_thread, tiny_generator  # noqa: F401  (fixture)
from typer.testing import CliRunner

from agora_core.bench import (
    PATHS,
    BenchConfig,
    PeakMemory,
    benchmark_reenactment,
    percentile,
    random_basis,
    time_calls,
    time_interleaved,
)
from agora_core.bench.bench_setup import random_regressor
from agora_core.bench.timing import FrameClock
from agora_core.mobile.blendshape_avatar import BlendshapeAvatar
from agora_core.render import orbit_cameras

TINY_YAML = """\
head: {source: demo, mouth_interior: true}
generator: {z_dim: 8, w_dim: 8, mapping_layers: 1, uv_resolution: 16, tap_resolution: 8, gaussian_grid: 12,
            channel_base: 128, channel_max: 8, expr_embed_dim: 8, sh_degree: 0}
resolution: 16
"""
ROW_KEYS = {"path", "batch", "calls", "median_ms", "p90_ms", "mean_ms", "fps", "peak_mb", "working_mb", "state_mb"}


def test_percentile_matches_numpy():
    values = list(np.random.default_rng(0).exponential(size=37))
    for q in (0, 50, 90, 100):
        assert percentile(values, q) == pytest.approx(float(np.percentile(values, q)))


def test_time_calls_counts_and_syncs():
    seen = []
    timing, memory = time_calls(lambda i: seen.append(i), calls=7, warmup=3, device=torch.device("cpu"), batch=4)
    assert seen == list(range(10)) and len(timing.times_ms) == 7
    assert timing.fps == pytest.approx(4000.0 / timing.median_ms)
    with PeakMemory(torch.device("cpu")) as mem:
        block = torch.ones(64, 2**20 // 4)  # 64 MB, touched
        block += 1
        import time

        time.sleep(0.02)
    del block
    assert mem.working > 32 * 2**20


def test_benchmark_reenactment_tiny():
    g = tiny_generator()
    cache = g.identity(torch.randn(1, 8), torch.zeros(1, 25), torch.zeros(1, 4), 0.7, noise_mode="const")
    basis = random_basis(g.num_gaussians, 4, seed=0)
    avatar = BlendshapeAvatar.from_generator(g, cache, basis, random_regressor(8, 6, 4, 16, seed=0))
    camera = orbit_cameras(torch.zeros(1), torch.zeros(1), radius=0.6)
    cfg = BenchConfig(frames=4, warmup=1, batch_sizes=(1, 3), resolution=16)
    result = benchmark_reenactment(g, cache, avatar, camera, cfg, torch.device("cpu"), {"gaussians": g.num_gaussians})
    assert {(r.path, r.batch) for r in result.rows} == {(p, b) for p in PATHS for b in (1, 3)}
    assert result.row("agora", 1).calls == 4 and result.row("agora", 3).calls == 25  # batched: at least 25
    for r in result.rows:
        assert r.median_ms > 0 and r.p90_ms >= r.median_ms and r.fps > 0 and r.peak_mb > 0
    assert set(result.speedup) == {"batch1", "batch3", "batch1_no_render", "batch3_no_render"}
    assert result.speedup["batch1"] == pytest.approx(result.row("agora", 1).median_ms / result.row("agora_m", 1).median_ms)
    assert result.row("agora_m", 1).state_mb < result.row("agora", 1).state_mb


def test_bench_cli_writes_json(tmp_path, monkeypatch):
    from agora_cli.bench import bench

    config = tmp_path / "tiny.yaml"
    config.write_text(TINY_YAML)
    app = typer.Typer()
    app.command()(bench)
    out = tmp_path / "bench.json"
    args = ["--config", str(config), "--frames", "3", "--warmup", "1", "--k", "4", "--batch", "1,2", "--json", str(out)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "randomly initialised" in result.output and "speed-up" in result.output
    data = json.loads(out.read_text())
    assert {"device", "torch", "threads", "model", "config", "results", "speedup", "notes"} <= set(data)
    assert {"source", "random_init", "gaussians", "uv_grid", "resolution", "k"} <= set(data["model"])
    assert data["model"]["random_init"] and data["model"]["resolution"] == 16 and data["model"]["k"] == 4
    assert len(data["results"]) == 2 * len(PATHS) and all(set(r) == ROW_KEYS for r in data["results"])
    assert {"batch1", "batch2"} <= set(data["speedup"])
    # flags a user can get wrong: one line, exit status 2
    bad = CliRunner().invoke(app, ["--config", str(config), "--device", "tpu"])
    assert bad.exit_code == 2 and "--device 'tpu'" in bad.output
    bad = CliRunner().invoke(app, ["--config", str(tmp_path / "none.yaml")])
    assert bad.exit_code == 2 and "none.yaml" in bad.output


def test_frame_clock_measures_a_known_wait_on_cpu():
    import time

    clock = FrameClock(torch.device("cpu"))
    clock.start()
    time.sleep(0.02)
    assert 19.0 <= clock.stop() < 2000.0  # at least the sleep; the upper bound only catches unit slips


@pytest.mark.gpu
def test_frame_clock_uses_cuda_events_that_cover_the_kernels():
    device = torch.device("cuda")
    x = torch.randn(4096, 4096, device=device)
    clock = FrameClock(device)
    clock.start()
    for _ in range(20):
        x = x @ x / 64.0
    gpu_ms = clock.stop()
    assert torch.cuda.current_stream(device).query()  # synchronised: nothing left running
    clock.start()
    empty_ms = clock.stop()
    assert gpu_ms > 10 * max(empty_ms, 1e-3)  # 20 large matmuls take far longer than nothing


def test_time_interleaved_alternates_paths():
    order = []
    steps = {"a": lambda i: order.append(("a", i)), "b": lambda i: order.append(("b", i))}
    out = time_interleaved(steps, calls=3, warmup=1, device=torch.device("cpu"), batch=2)
    assert order == [("a", 0), ("b", 0), ("a", 1), ("b", 1), ("a", 2), ("b", 2), ("a", 3), ("b", 3)]
    assert set(out) == {"a", "b"} and all(len(t.times_ms) == 3 and m.peak > 0 for t, m in out.values())


def test_grid_for_gaussians_hits_the_requested_count():
    from agora_core.mobile import gaussian_count, grid_for_gaussians
    from test_mobile_tinyhead import tiny_head

    head = tiny_head()
    for target in (500, 4000):
        grid = grid_for_gaussians(head, target)
        assert abs(gaussian_count(head, grid) - target) / target < 0.05, (target, grid)
    assert gaussian_count(head, 12) == tiny_generator(head).num_gaussians  # the generator's own count


def test_bench_cli_executor(tmp_path):
    """--executor onnxruntime times AGORA's per-frame path in ONNX Runtime (JSON says which ran)."""
    from agora_cli.bench import bench

    config = tmp_path / "tiny.yaml"
    config.write_text(TINY_YAML)
    app = typer.Typer()
    app.command()(bench)
    out = tmp_path / "bench.json"
    args = ["--config", str(config), "--frames", "2", "--warmup", "1", "--k", "4", "--batch", "1,2", "--no-breakdown"]
    result = CliRunner().invoke(app, args + ["--executor", "onnxruntime", "--json", str(out)])
    assert result.exit_code == 0, result.output
    assert "AGORA in onnxruntime" in " ".join(result.output.split())  # the table's title, however wrapped
    assert json.loads(out.read_text())["model"]["executor"] == "onnxruntime"
    bad = CliRunner().invoke(app, args + ["--executor", "tvm"])
    assert bad.exit_code == 2 and "--executor 'tvm'" in bad.output
    bad = CliRunner().invoke(app, ["--device", "browser", "--executor", "auto"])
    assert bad.exit_code == 2 and "AGORA-M only" in bad.output


def test_bench_cli_basis_format(tmp_path):
    """--basis-format int16|int8 blends AGORA-M from a fixed-point basis: the JSON says so and the AGORA-M
    path holds the basis in half (int16) or a quarter (int8, plus one float32 amplitude per run of 256
    values) of the bytes; wrong values and devices are one-line errors."""
    from agora_cli.bench import bench

    config = tmp_path / "tiny.yaml"
    config.write_text(TINY_YAML)
    app = typer.Typer()
    app.command()(bench)
    args = ["--config", str(config), "--frames", "2", "--warmup", "1", "--k", "8", "--batch", "1", "--no-breakdown"]
    state = {}
    for fmt in ("float32", "int16", "int8"):
        out = tmp_path / f"{fmt}.json"
        result = CliRunner().invoke(app, args + ["--basis-format", fmt, "--json", str(out)])
        assert result.exit_code == 0, result.output
        data = json.loads(out.read_text())
        assert data["model"]["basis_format"] == fmt
        state[fmt] = next(r["state_mb"] for r in data["results"] if r["path"] == "agora_m")
    m = data["model"]["gaussians"]
    basis_mb = 8 * 11 * m * 4 / 2**20  # K components of 11 float32 values per Gaussian
    assert abs((state["float32"] - state["int16"]) - basis_mb / 2) <= 0.01 * basis_mb + 1e-3
    runs_mb = 8 * sum(-(-m * d // 256) for d in (3, 3, 4, 1)) * 4 / 2**20
    assert abs((state["float32"] - state["int8"]) - (basis_mb * 3 / 4 - runs_mb)) <= 0.01 * basis_mb + 1e-3
    bad = CliRunner().invoke(app, args + ["--basis-format", "int4"])
    assert bad.exit_code == 2 and "--basis-format 'int4'" in bad.output
    bad = CliRunner().invoke(app, ["--device", "browser", "--basis-format", "int16"])
    assert bad.exit_code == 2 and "drop it" in bad.output
