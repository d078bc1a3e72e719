"""`agora invert` / `agora invert-demo-data` through Typer's CliRunner: the dataset, photo and
video paths end to end (a few PTI steps), and every bad input as one line, exit 2, no output."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import typer
from face_helpers import SMIRK_FIXTURE, astronaut, write_astronaut_video, write_mean_sigmoid_onnx
from test_invert_helpers import RES, TINY, demo_dataset, share_smirk, tiny_checkpoint, write_checkpoint
from typer.testing import CliRunner

from agora_cli.invert import demo_data, invert, parse_indices
from agora_core.errors import AgoraError

runner = CliRunner()
FAST = ["--w-steps", "1", "--g-steps", "1", "--no-progress"]


def _app() -> typer.Typer:
    app = typer.Typer()
    app.command("invert")(invert)
    app.command("invert-demo-data")(demo_data)
    return app


def _invoke(*args: str):
    return runner.invoke(_app(), [str(a) for a in args])


def _error_line(result) -> str:
    assert result.exit_code == 2, result.output
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    return lines[0]


def _nothing_written(folder: Path) -> None:
    assert not folder.exists() or not any(folder.iterdir()), sorted(folder.iterdir())


@pytest.fixture(autouse=True)
def _one_smirk(monkeypatch):
    share_smirk(monkeypatch)


@pytest.fixture(scope="module")
def modnet(tmp_path_factory) -> Path:
    return write_mean_sigmoid_onnx(tmp_path_factory.mktemp("modnet") / "toy_modnet.onnx")


def test_dataset_inversion_writes_avatar_losses_preview_and_ply(tmp_path):
    out = tmp_path / "out" / "me.pt"
    result = _invoke("invert", "--dataset", demo_dataset(), "--index", "0", "1", "--heldout", "3", "--ckpt",
                     tiny_checkpoint(), "--out", out, "--ply", tmp_path / "out" / "me.ply", "--size", 40, *FAST)
    assert result.exit_code == 0, result.output
    assert "PTI on 2 frame(s)" in result.output and "L2 + SSIM" in result.output
    assert "PSNR on the held-out view(s)" in result.output
    names = sorted(p.name for p in out.parent.iterdir())
    assert names == sorted(["me.losses.json", "me.ply", "me.pt", "me.preview.png"]), names
    preview = cv2.imread(str(out.parent / "me.preview.png"))
    assert preview.shape == (4 * 40, 4 * 40, 3)  # before + 2 frames after + held-out view; 4 columns at --size
    import json

    doc = json.loads((out.parent / "me.losses.json").read_text())
    assert doc["psnr_heldout_final"] > 0 and doc["heldout_sources"] == [f"{demo_dataset()}:3"]
    assert torch.load(out, weights_only=True)["frames"]["camera"].shape == (2, 25)


def test_photo_inversion_through_face_pipeline(tmp_path, modnet):
    photo = tmp_path / "astronaut.png"
    cv2.imwrite(str(photo), cv2.cvtColor(astronaut(), cv2.COLOR_RGB2BGR))
    out = tmp_path / "a.pt"
    result = _invoke("invert", photo, "--ckpt", tiny_checkpoint(), "--out", out, "--smirk", SMIRK_FIXTURE,
                     "--modnet", modnet, *FAST)
    assert result.exit_code == 0, result.output
    doc = torch.load(out, weights_only=True)
    assert doc["crops"].shape == (1, RES, RES, 3) and doc["sources"] == [str(photo)]


def test_video_inversion_picks_frames(tmp_path, modnet):
    video = tmp_path / "clip.mp4"
    write_astronaut_video(video, frames=6, dx=3)
    out = tmp_path / "v.pt"
    result = _invoke("invert", video, "--frames", "2", "--ckpt", tiny_checkpoint(), "--out", out,
                     "--smirk", SMIRK_FIXTURE, "--modnet", modnet, *FAST)
    assert result.exit_code == 0, result.output
    sources = torch.load(out, weights_only=True)["sources"]
    assert len(sources) == 2 and all(s.startswith(f"{video}#") for s in sources)


def test_demo_data_command(tmp_path):
    result = _invoke("invert-demo-data", tmp_path / "d", "--seed", "2", "--resolution", "32")
    assert result.exit_code == 0, result.output
    from agora_core.data.format import read_dataset_index

    index = read_dataset_index(tmp_path / "d")
    assert len(index) == 4 and index.header.extra["demo_identity_seed"] == 2
    assert index.sources[0] == "demo-identity:2:0"
    assert np.allclose(index.flame["shape"], index.flame["shape"][:1])  # one person


# ----------------------------------------------------------------------------- bad input

def test_missing_photo(tmp_path):
    line = _error_line(_invoke("invert", tmp_path / "nope.jpg", "--ckpt", tiny_checkpoint(),
                               "--out", tmp_path / "o" / "a.pt", *FAST))
    assert "nope.jpg: no such file" in line
    _nothing_written(tmp_path / "o")


def test_photo_without_a_face(tmp_path, modnet):
    blank = tmp_path / "blank.png"
    cv2.imwrite(str(blank), np.full((200, 200, 3), 255, np.uint8))
    line = _error_line(_invoke("invert", blank, "--ckpt", tiny_checkpoint(), "--out", tmp_path / "o" / "a.pt",
                               "--smirk", SMIRK_FIXTURE, "--modnet", modnet, *FAST))
    assert "blank.png: no face found" in line
    _nothing_written(tmp_path / "o")


def test_corrupt_video_input(tmp_path, modnet):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00garbage" * 64)
    line = _error_line(_invoke("invert", bad, "--ckpt", tiny_checkpoint(), "--out", tmp_path / "o" / "a.pt",
                               "--smirk", SMIRK_FIXTURE, "--modnet", modnet, *FAST))
    assert "bad.mp4: not a readable video" in line
    _nothing_written(tmp_path / "o")


@pytest.mark.parametrize("kind, match", [
    ("weights", "generator weights do not match its stored config"),
    ("head", "made with head model 'flame2020\\+mouth'"),
    ("junk", "not a readable agora checkpoint"),
    ("missing", "checkpoint not found"),
])
def test_bad_checkpoints(tmp_path, kind, match):
    ckpt = tmp_path / "ckpt.pt"
    if kind == "weights":
        write_checkpoint(ckpt, weights_of=dataclasses.replace(TINY, channel_max=16))
    elif kind == "head":
        write_checkpoint(ckpt, head_model="flame2020+mouth")
    elif kind == "junk":
        ckpt.write_bytes(b"not a checkpoint")
    line = _error_line(_invoke("invert", "--dataset", demo_dataset(), "--index", "0", "--ckpt", ckpt,
                               "--out", tmp_path / "o" / "a.pt", *FAST))
    assert re.search(match, line), line
    _nothing_written(tmp_path / "o")


def test_bad_dataset_index_and_flags(tmp_path):
    line = _error_line(_invoke("invert", "--dataset", demo_dataset(), "--index", "9", "--ckpt", tiny_checkpoint(),
                               "--out", tmp_path / "o" / "a.pt", *FAST))
    assert "--index 9" in line and "4 images" in line
    line = _error_line(_invoke("invert", "x.jpg", "--ckpt", tiny_checkpoint(), "--out", tmp_path / "a.avatar", *FAST))
    assert "must end in .pt" in line
    _nothing_written(tmp_path / "o")


def test_parse_indices():
    assert parse_indices(["0"], ["1", "2"]) == [0, 1, 2]
    assert parse_indices(["0,1", "3"], []) == [0, 1, 3]
    with pytest.raises(AgoraError, match="--index a"):
        parse_indices(["a"], [])


def test_failure_during_writing_leaves_nothing(tmp_path, monkeypatch):
    """A crash while writing the outputs removes every temporary file and writes no avatar."""
    import agora_core.invert.run as run

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(run, "write_png", boom)
    out = tmp_path / "o" / "a.pt"
    with pytest.raises(OSError):
        runner.invoke(_app(), ["invert", "--dataset", str(demo_dataset()), "--index", "0", "--ckpt",
                               str(tiny_checkpoint()), "--out", str(out), *FAST], catch_exceptions=False)
    _nothing_written(tmp_path / "o")


def test_heldout_view_must_not_be_fitted(tmp_path):
    line = _error_line(_invoke("invert", "--dataset", demo_dataset(), "--index", "0", "1", "--heldout", "1",
                               "--ckpt", tiny_checkpoint(), "--out", tmp_path / "o" / "a.pt", *FAST))
    assert "--heldout [1]: also in --index" in line
    _nothing_written(tmp_path / "o")
    line = _error_line(_invoke("invert", "x.jpg", "--heldout", "1", "--ckpt", tiny_checkpoint(),
                               "--out", tmp_path / "o" / "a.pt", *FAST))
    assert "--heldout needs --dataset" in line
