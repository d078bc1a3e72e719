"""The training loop: finite losses, NaN recovery, deterministic resume, kill + resume, 2-process DDP.

All runs use a 16² tiny model on an 8-image random dataset (tests/test_train_fixtures.py); the demo
head is built once per test process.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import pytest
import torch
import yaml

import agora_core.train.loop as loop
from agora_core.inference.checkpoint import latest_checkpoint, list_checkpoints, load_checkpoint
from agora_core.run_config import config_to_dict
from test_train_fixtures import TINY_OVERRIDES, cached_build_head, tiny_config, write_tiny_dataset

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return write_tiny_dataset(tmp_path / "data")


@pytest.fixture(autouse=True)
def _cached_head(monkeypatch):
    monkeypatch.setattr(loop, "build_head", cached_build_head)


def _events(run: Path, name: str) -> list[dict]:
    lines = (run / "log.jsonl").read_text().splitlines()
    return [e for e in map(json.loads, lines) if e["event"] == name]


def test_losses_are_finite_and_outputs_written(data: Path, tmp_path: Path):
    run = tmp_path / "run"
    cfg = tiny_config(total_kimg=0.016, metric_kimg=0.008, sample_kimg=0.008, checkpoint_kimg=0.008,
                      sample_resolution=32)
    last = loop.train(cfg, data, run, progress=False)
    ticks = _events(run, "tick")
    assert len(ticks) == 4
    for t in ticks:
        for key in ("loss_G", "loss_D", "loss_reg", "sec_per_kimg"):
            assert math.isfinite(t[key]), (key, t)
    assert any("r1" in t for t in ticks)  # lazy R1 ran (interval 2)
    swds = _events(run, "swd")
    assert [e["kimg"] for e in swds] == [0.0, 0.008, 0.016] and all(math.isfinite(e["swd"]) for e in swds)
    assert sorted(p.name for p in (run / "samples").iterdir()) == ["kimg000000.008.png", "kimg000000.016.png",
                                                                    "kimg000000.png"]
    grid = cv2.imread(str(run / "samples" / "kimg000000.016.png"))
    assert grid.shape == (2 * 32, 2 * 32, 3)  # 2 expressions × 2 identities at sample_resolution
    assert last == run / "checkpoints" / "kimg000000.016.pt"
    assert yaml.safe_load((run / "config.yaml").read_text()) == config_to_dict(cfg)
    state = load_checkpoint(last)
    assert state["step"] == 4 and state["nimg"] == 16 and state["head_model"] == "demo-head-v1+mouth"


def test_nonfinite_loss_skips_step_and_restores(data: Path, tmp_path: Path, monkeypatch, capsys):
    """Step 2's G loss is NaN and G's weights are poisoned: the step is skipped, G/D restored."""
    built, calls = {}, {"n": 0}
    real_build, real_loss = loop.build_models, loop.generator_loss

    def capture(config, head):
        built["G"], built["D"] = real_build(config, head)
        return built["G"], built["D"]

    def poisoned(logits):
        calls["n"] += 1
        if calls["n"] == 3:
            with torch.no_grad():
                next(built["G"].parameters()).fill_(float("nan"))
            return real_loss(logits) * float("nan")
        return real_loss(logits)

    monkeypatch.setattr(loop, "build_models", capture)
    monkeypatch.setattr(loop, "generator_loss", poisoned)
    run = tmp_path / "run"
    loop.train(tiny_config(total_kimg=0.024), data, run, progress=False)
    bad = _events(run, "nonfinite")
    assert [(e["step"], e["phase"]) for e in bad] == [(2, "G")]
    assert "non-finite G loss at step 2" in capsys.readouterr().err
    state = load_checkpoint(latest_checkpoint(run))
    assert state["step"] == 6
    for name in ("G", "G_ema", "D"):
        assert all(torch.isfinite(v).all() for v in state[name].values() if v.is_floating_point()), name
    assert torch.isfinite(built["G"].mapping_network(torch.zeros(1, 16), torch.zeros(1, 25))).all()


def _flat(state: dict) -> dict:
    out = {}
    for name in ("G", "G_ema", "D"):
        out.update({f"{name}.{k}": v for k, v in state[name].items()})
    for name in ("opt_G", "opt_D"):
        for pid, s in state[name]["state"].items():
            out.update({f"{name}.{pid}.{k}": v for k, v in s.items()})
    return out


def test_resume_is_identical_to_an_uninterrupted_run(data: Path, tmp_path: Path):
    """3 steps, stop, resume to 6 == 6 steps straight: weights, EMA, Adam moments, bit for bit."""
    straight, split = tmp_path / "straight", tmp_path / "split"
    loop.train(tiny_config(total_kimg=0.024), data, straight, progress=False)
    loop.train(tiny_config(total_kimg=0.012), data, split, progress=False)
    first = load_checkpoint(latest_checkpoint(split))
    assert first["step"] == 3
    loop.train(tiny_config(total_kimg=0.024), data, split, progress=False)
    start = _events(split, "start")
    assert [e["step"] for e in start] == [0, 3] and start[1]["resumed"]
    a, b = load_checkpoint(latest_checkpoint(straight)), load_checkpoint(latest_checkpoint(split))
    assert a["step"] == b["step"] == 6
    fa, fb = _flat(a), _flat(b)
    assert fa.keys() == fb.keys()
    for key in fa:
        assert torch.equal(fa[key], fb[key]), key


def test_no_resume_refuses_to_overwrite(data: Path, tmp_path: Path):
    from agora_core.errors import AgoraError

    run = tmp_path / "run"
    loop.train(tiny_config(total_kimg=0.004), data, run, progress=False)
    with pytest.raises(AgoraError, match="checkpoints of an earlier run"):
        loop.train(tiny_config(total_kimg=0.008), data, run, resume=False, progress=False)
    with pytest.raises(AgoraError, match="different 'generator' config"):
        loop.train(tiny_config(total_kimg=0.008, **{"generator.gaussian_grid": 20}), data, run, progress=False)


def test_killed_run_resumes_from_its_last_checkpoint(data: Path, tmp_path: Path):
    """A subprocess run is SIGKILLed after its first checkpoint; resuming continues the step count."""
    config = tmp_path / "tiny.yaml"
    overrides = {**TINY_OVERRIDES, "checkpoint_kimg": 0.008, "total_kimg": 0.4}
    tree: dict = {}
    for key, value in overrides.items():
        node = tree
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    config.write_text(yaml.safe_dump(tree))
    run = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-m", "agora_cli.train", "--config", str(config), "--data", str(data),
                             "--out", str(run), "--no-progress"], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 120
        while not list_checkpoints(run) and time.time() < deadline and proc.poll() is None:
            time.sleep(0.2)
        assert list_checkpoints(run), f"no checkpoint appeared: {proc.stderr.read().decode() if proc.poll() is not None else ''}"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    killed_at = load_checkpoint(latest_checkpoint(run))  # the newest complete checkpoint (atomic writes)
    assert killed_at["step"] >= 2
    step0 = killed_at["step"]
    cfg = tiny_config(checkpoint_kimg=0.008, total_kimg=(killed_at["nimg"] + 8) / 1000)
    loop.train(cfg, data, run, progress=False)
    assert _events(run, "start")[-1]["step"] == step0
    final = load_checkpoint(latest_checkpoint(run))
    assert final["step"] == step0 + 2 and final["nimg"] == killed_at["nimg"] + 8
    for pid, s in killed_at["opt_D"]["state"].items():  # Adam moments carried on, not restarted
        assert final["opt_D"]["state"][pid]["step"] == s["step"] + 2


def test_ddp_two_cpu_processes_keep_replicas_identical(data: Path, tmp_path: Path):
    """torchrun, 2 gloo processes, 4 steps: every rank ends with the same G and D parameters."""
    out = tmp_path / "digests"
    out.mkdir()
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{REPO / 'tests'}", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           str(REPO / "tests" / "test_train_fixtures.py"), str(data), str(tmp_path / "run"), str(out)]
    result = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    digests = [(out / f"rank{r}.txt").read_text() for r in (0, 1)]
    assert digests[0] == digests[1]
    state = load_checkpoint(latest_checkpoint(tmp_path / "run"))
    assert state["world_size"] == 2 and len(state["rng"]) == 2 and state["step"] == 4
    assert not torch.equal(state["rng"][0]["cpu"], state["rng"][1]["cpu"])  # per-rank streams


def test_stage_two_starts_from_matching_stage_one_weights(data: Path, tmp_path: Path, capsys):
    """resume_from: 16² -> 32² with a denser UV grid; G keeps every weight, D its shared blocks."""
    stage1 = tmp_path / "stage1"
    loop.train(tiny_config(total_kimg=0.004), data, stage1, progress=False)
    first = load_checkpoint(latest_checkpoint(stage1))
    capsys.readouterr()
    cfg = tiny_config(total_kimg=0.004, resolution=32, resume_from=str(stage1), **{"generator.gaussian_grid": 32,
                      "loss.lambda_opacity": 1.0, "loss.start_dual_kimg": 0.0})
    loop.train(cfg, data, tmp_path / "stage2", progress=False)
    lines = dict(line.split(": ", 1) for line in capsys.readouterr().out.splitlines() if line.startswith("resume_from"))
    assert lines["resume_from G"] == f"{len(first['G'])} tensors copied, 0 kept as initialised"
    copied_d, kept_d = (int(x.split()[0]) for x in lines["resume_from D"].split(", "))
    assert copied_d > 0 and kept_d > 0  # the shared 16²..4² blocks, not the new 32² input layers
    second = load_checkpoint(latest_checkpoint(tmp_path / "stage2"))
    assert second["step"] == 1 and second["config"]["resolution"] == 32 and first["G"].keys() == second["G"].keys()
