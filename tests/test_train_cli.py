"""`agora train` (dry run, overrides, errors, torchrun relaunch) and `agora sample`."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import typer
from plyfile import PlyData
from typer.testing import CliRunner

import agora_cli.train as train_cli
import agora_core.train.loop as loop
from agora_cli.sample import sample as sample_command
from test_train_fixtures import cached_build_head, tiny_config, write_tiny_dataset

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


@pytest.fixture
def app() -> typer.Typer:
    """The two commands as app.py registers them."""
    app = typer.Typer()
    app.command("train")(train_cli.train)
    app.command("sample")(sample_command)
    return app


def test_dry_run_prints_parameter_and_gaussian_counts(app, tmp_path: Path, monkeypatch):
    monkeypatch.setattr("agora_core.head.build.build_head", cached_build_head)
    result = CliRunner().invoke(app, ["train", "--config", str(CONFIGS / "demo.yaml"), "--data", str(tmp_path),
                                      "--out", str(tmp_path / "run"), "--dry-run"])
    assert result.exit_code == 0, result.output
    for label in ("identity branch", "deformation branch", "discriminator", "gaussians"):
        assert label in result.output
    assert "parameters" in result.output and not (tmp_path / "run").exists()


def test_flags_reach_the_loop_and_user_errors_are_one_line(app, tmp_path: Path, monkeypatch):
    seen = {}
    monkeypatch.setattr(loop, "train", lambda cfg, data, out, **kw: seen.update(cfg=cfg, data=data, kw=kw) or out)
    args = ["train", "--config", str(CONFIGS / "demo.yaml"), "--data", str(tmp_path), "--out", str(tmp_path / "r")]
    result = CliRunner().invoke(app, args + ["--kimg", "3", "--batch", "4", "--set", "loss.r1_gamma=0.5",
                                             "--set", "discriminator.cue=uv", "--no-resume", "--no-progress"])
    assert result.exit_code == 0, result.output
    cfg = seen["cfg"]
    assert (cfg.total_kimg, cfg.batch_size, cfg.loss.r1_gamma, cfg.discriminator.cue) == (3.0, 4, 0.5, "uv")
    assert seen["kw"] == {"resume": False, "progress": False, "device": "auto"}
    result = CliRunner().invoke(app, args + ["--set", "loss.r1_gama=2"])
    assert result.exit_code == 2 and "unknown key 'loss.r1_gama'" in result.output
    assert "Traceback" not in result.output


def test_cpu_procs_relaunches_through_torchrun(app, tmp_path: Path, monkeypatch):
    calls = []
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.setattr(train_cli.subprocess, "call", lambda cmd: calls.append(cmd) or 0)
    result = CliRunner().invoke(app, ["train", "--config", str(CONFIGS / "demo.yaml"), "--data", str(tmp_path),
                                      "--out", str(tmp_path / "r"), "--cpu-procs", "2", "--set", "seed=3"])
    assert result.exit_code == 0, result.output
    (cmd,) = calls
    assert cmd[:6] == [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m"]
    assert cmd[6] == "agora_cli.train" and "--device" in cmd and cmd[cmd.index("--device") + 1] == "cpu"
    assert "seed=3" in cmd and "--cpu-procs" not in cmd


def test_sample_writes_a_grid_png_and_ply_files(app, tmp_path: Path, monkeypatch):
    monkeypatch.setattr(loop, "build_head", cached_build_head)
    monkeypatch.setattr("agora_core.head.build.build_head", cached_build_head)
    data = write_tiny_dataset(tmp_path / "data")
    run = tmp_path / "run"
    loop.train(tiny_config(total_kimg=0.004), data, run, progress=False)
    out, plys = tmp_path / "grid.png", tmp_path / "plys"
    result = CliRunner().invoke(app, ["sample", str(run), "--n", "3", "--out", str(out), "--ply", str(plys),
                                      "--seed", "1", "--truncation", "0.5", "--size", "40"])
    assert result.exit_code == 0, result.output
    import cv2

    grid = cv2.imread(str(out))
    assert grid.shape == (2 * 40, 2 * 40, 3)  # 3 avatars in a 2×2 grid, each enlarged to --size
    files = sorted(plys.glob("*.ply"))
    assert [f.name for f in files] == ["avatar_000.ply", "avatar_001.ply", "avatar_002.ply"]
    vertex = PlyData.read(str(files[0]))["vertex"]
    n = loop.build_models(tiny_config(), cached_build_head(tiny_config().head))[0].num_gaussians
    assert vertex.count == n and "f_dc_0" in vertex.data.dtype.names
    result = CliRunner().invoke(app, ["sample", str(tmp_path / "nothing.pt")])
    assert result.exit_code == 2 and "checkpoint not found" in result.output


def test_sample_refuses_a_checkpoint_of_another_head(tmp_path):
    """`agora sample` / export rebuild the head from the stored config: a different head is one line."""
    from agora_core.errors import AgoraError
    from agora_core.inference import load_model
    from test_invert_helpers import write_checkpoint

    path = write_checkpoint(tmp_path / "ckpt.pt", head_model="flame-0123456789ab+mouth")
    with pytest.raises(AgoraError, match="made with head model 'flame-0123456789ab\\+mouth'") as err:
        load_model(path)
    assert "\n" not in str(err.value)
