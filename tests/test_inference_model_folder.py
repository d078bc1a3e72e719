"""Model folders (`agora export model`, agora_core/inference/model_folder.py): written from a tiny
training run, read back by every stage's loader with the same weights, and every damaged folder one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from test_invert_helpers import RES, TINY, _demo_head, demo_dataset
from typer.testing import CliRunner

from agora_core.errors import AgoraError
from agora_core.inference import is_model_folder, load_model
from agora_core.inference.model_folder import LOG, MANIFEST, WEIGHTS, export_model


def _tiny_run(root: Path) -> Path:
    """RUN/ with one checkpoint (untrained tiny G on the demo head, sampling statistics) and a log."""
    from agora_core.models.agora_generator import AgoraGenerator
    from agora_core.train.checkpoint import save_checkpoint
    from agora_core.head.config import HeadConfig
    from agora_core.run_config import TrainConfig, config_to_dict

    head = _demo_head()
    torch.manual_seed(1)
    G = AgoraGenerator(TINY, head)
    cfg = TrainConfig(generator=TINY, resolution=RES, head=HeadConfig(source="demo"))
    sampling = {"camera": torch.linspace(-1, 1, 25), "shape_mean": torch.full((head.num_shape,), 0.25),
                "shape_std": torch.full((head.num_shape,), 0.5)}
    save_checkpoint(root / "checkpoints" / "kimg000001.pt", {
        "G": G.state_dict(), "G_ema": {k: v.double() if v.is_floating_point() else v for k, v in G.state_dict().items()},
        "config": config_to_dict(cfg), "head_model": head.model_id, "sampling": sampling, "kimg": 1.0})
    (root / LOG).write_text('{"event": "swd", "kimg": 1.0, "swd_mean": 12.5}\n')
    return root


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("model")
    return export_model(_tiny_run(root / "run"), root / "models" / "demo")


def test_export_writes_float32_weights_manifest_and_log(model_dir):
    from safetensors.torch import load_file

    assert sorted(p.name for p in model_dir.iterdir()) == sorted([MANIFEST, WEIGHTS, LOG])
    weights = load_file(str(model_dir / WEIGHTS))
    assert all(v.dtype == torch.float32 for v in weights.values() if v.is_floating_point())
    doc = json.loads((model_dir / MANIFEST).read_text())
    assert doc["format"] == "agora-model" and doc["kimg"] == 1.0 and doc["resolution"] == RES
    assert doc["config"]["generator"]["uv_resolution"] == TINY.uv_resolution
    assert "swd_mean" in (model_dir / LOG).read_text()


def test_load_model_reads_the_folder_like_its_checkpoint(model_dir):
    run = model_dir.parent.parent / "run"
    a, b = load_model(run), load_model(model_dir)
    assert b.kind == "model" and a.kind == "checkpoint" and is_model_folder(model_dir)
    ref = b.generator.state_dict()
    for name, value in a.generator.state_dict().items():
        assert torch.equal(ref[name], value), name  # float64 G_ema stored as float32: the loader casts the same way
    assert torch.equal(a.framing, b.framing) and torch.equal(a.shape_std, b.shape_std)


def test_stages_take_the_model_folder(model_dir, tmp_path):
    """sample, invert (base generator), AGORA-M's model source and the export sources read it."""
    from agora_cli.app import app
    from agora_core.export.sources import load_avatar_source
    from agora_core.invert.checkpoint_io import load_base_generator
    from agora_core.mobile import load_agora_model

    res = CliRunner().invoke(app, ["sample", str(model_dir), "--n", "2", "--out", str(tmp_path / "g.png"), "--size", "64"])
    assert res.exit_code == 0, res.output
    assert load_base_generator(model_dir).resolution == RES
    assert not load_agora_model(model_dir).random_init
    assert load_avatar_source(model_dir, seed=0).neutral.means.shape[1] > 0
    with pytest.raises(AgoraError, match="add --seed N"):
        load_avatar_source(model_dir)
    from agora_core.invert.targets import target_from_dataset

    assert target_from_dataset(demo_dataset(), [0], load_base_generator(model_dir).generator.head, RES).num_frames == 1


def test_reenact_takes_the_model_folder_with_a_seed(model_dir, tmp_path):
    from agora_cli.app import app
    from agora_core.invert.video_io import VideoReader
    from agora_core.reenact.demo_sequence import make_demo_sequence

    params = make_demo_sequence(3, 8.0, seed=1).save(tmp_path / "d.npz")
    out = tmp_path / "m.mp4"
    res = CliRunner().invoke(app, ["reenact", str(model_dir), "--seed", "0", "--params", str(params), "--out", str(out),
                                   "--size", "48", "--no-progress"])
    assert res.exit_code == 0, res.output
    frames = VideoReader(out).read_all()
    assert len(frames) == 3 and frames[0].shape == (48, 48, 3) and frames[1].mean() < 254  # the head is in view
    res = CliRunner().invoke(app, ["reenact", str(model_dir), "--params", str(params), "--out", str(out)])
    assert res.exit_code == 2 and "add --seed N" in res.output


def _copy(model_dir: Path, dest: Path) -> Path:
    dest.mkdir()
    for p in model_dir.iterdir():
        (dest / p.name).write_bytes(p.read_bytes())
    return dest


@pytest.mark.parametrize("damage, message", [
    (lambda d: (d / WEIGHTS).write_bytes((d / WEIGHTS).read_bytes()[:-7]), "does not match model.json"),
    (lambda d: (d / MANIFEST).write_text("{"), "not readable JSON"),
    (lambda d: (d / MANIFEST).write_text(json.dumps({"format": "other"})), "expected format 'agora-model'"),
    (lambda d: _edit(d, lambda m: m.update(format_version=9)), "format_version 9"),
    (lambda d: _edit(d, lambda m: m["sampling"].update(camera=[0.0] * 3)), "sampling.camera"),
    (lambda d: _edit(d, lambda m: m.pop("config")), "entry 'config'"),
    (lambda d: _edit(d, lambda m: m.update(head_model="flame-0123")), "head model"),
    (lambda d: (d / WEIGHTS).unlink(), "cannot be read"),
])
def test_damaged_folder_is_one_line(model_dir, tmp_path, damage, message):
    broken = _copy(model_dir, tmp_path / "m")
    damage(broken)
    with pytest.raises(AgoraError, match=message) as err:
        load_model(broken)
    assert "\n" not in str(err.value)


def _edit(folder: Path, change) -> None:
    doc = json.loads((folder / MANIFEST).read_text())
    change(doc)
    (folder / MANIFEST).write_text(json.dumps(doc))


def test_export_refuses_to_replace_without_force(model_dir, tmp_path):
    out = _copy(model_dir, tmp_path / "m")
    (out / "README.md").write_text("kept")
    with pytest.raises(AgoraError, match="--force"):
        export_model(model_dir.parent.parent / "run", out)
    export_model(model_dir.parent.parent / "run", out, force=True)
    assert (out / "README.md").read_text() == "kept" and is_model_folder(out)
    with pytest.raises(AgoraError, match="already a model folder"):
        export_model(out, tmp_path / "again")
