"""`agora prep-data` through Typer's CliRunner, with the core functions patched where they would
do real work: what is passed down, the summary table, and one-line errors."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import cv2
import numpy as np
import pytest
import typer
from face_helpers import SMIRK_FIXTURE
from typer.testing import CliRunner

import agora_core.data.prep as prep
from agora_cli.prep_data import prep_data
from agora_core.data.prep import PrepConfig, PrepSummary

runner = CliRunner()


def _app() -> typer.Typer:
    """The command as `agora` wires it (a group, so the subcommand name is part of the call)."""
    app = typer.Typer()
    app.command("prep-data")(prep_data)

    @app.command("other")
    def _other() -> None:  # a second command keeps Typer in group mode
        pass

    return app


def _invoke(*args: str):
    return runner.invoke(_app(), ["prep-data", *args])


def _error_line(result) -> str:
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    return lines[0]


@pytest.fixture
def photos(tmp_path) -> Path:
    folder = tmp_path / "photos"
    folder.mkdir()
    cv2.imwrite(str(folder / "a.png"), np.full((80, 80, 3), 255, np.uint8))
    return folder


def test_missing_smirk_is_a_one_line_error_naming_the_flag(photos, tmp_path):
    modnet = tmp_path / "modnet.onnx"
    modnet.write_bytes(b"x")
    result = _invoke(str(photos), str(tmp_path / "out"), "--modnet", str(modnet), "--device", "cpu")
    assert result.exit_code == 2
    line = _error_line(result)
    assert "--smirk" in line and "github.com/georgeretsi/smirk" in line
    assert not (tmp_path / "out").exists()


def test_missing_modnet_is_a_one_line_error_naming_the_flag(photos, tmp_path):
    result = _invoke(str(photos), str(tmp_path / "out"), "--smirk", str(SMIRK_FIXTURE), "--device", "cpu")
    assert result.exit_code == 2 and "--modnet" in _error_line(result)


def test_missing_input_folder_is_a_one_line_error(tmp_path):
    modnet = tmp_path / "modnet.onnx"
    modnet.write_bytes(b"x")
    result = _invoke(str(tmp_path / "nope"), str(tmp_path / "out"), "--smirk", str(SMIRK_FIXTURE), "--modnet", str(modnet))
    assert result.exit_code == 2 and "nope: input folder not found" in _error_line(result)


def test_options_are_passed_down_and_the_summary_is_printed(monkeypatch, photos, tmp_path):
    calls = []

    def fake_prepare(input_dir, out, config, *, smirk=None, modnet=None):
        calls.append((input_dir, out, config, smirk, modnet))
        rejected = {"no_face": 2, "too_small": 1}
        return PrepSummary(out=out, found=9, resumed=1, processed=8, written=10, rejected=rejected, dataset_images=12, seconds=4.0)

    monkeypatch.setattr(prep, "prepare_dataset", fake_prepare)
    out = tmp_path / "out"
    result = _invoke(
        str(photos), str(out), "--mirror", "--aligned", "--limit", "9", "--device", "cpu", "--workers", "3",
        "--resolution", "256", "--smirk", "s.pt", "--modnet", "m.onnx",
    )
    assert result.exit_code == 0, result.output
    config = PrepConfig(resolution=256, mirror=True, aligned=True, limit=9, workers=3, device="cpu")
    assert calls == [(photos, out, config, "s.pt", "m.onnx")]
    text = " ".join(result.output.split())
    for expected in ("processed │ 8", "images written │ 10", "rejected: no_face │ 2", "rejected: too_small │ 1", "images/s │ 2.00", "12 images at 256²"):
        assert expected in text, text


def test_defaults(monkeypatch, photos, tmp_path):
    seen = []
    monkeypatch.setattr(prep, "prepare_dataset", lambda d, o, config, **kw: seen.append(config) or PrepSummary(o, 1, 0, 1, 1, dataset_images=1))
    assert _invoke(str(photos), str(tmp_path / "out")).exit_code == 0
    (config,) = seen
    assert (config.resolution, config.mirror, config.aligned, config.limit, config.workers) == (512, False, False, None, 2)
    assert config.device in ("cpu", "cuda")


def test_no_usable_photo_exits_non_zero_after_the_summary(monkeypatch, photos, tmp_path):
    monkeypatch.setattr(prep, "prepare_dataset", lambda d, o, c, **kw: PrepSummary(o, 2, 0, 2, 0, {"no_face": 2}, 0, 1.0))
    result = _invoke(str(photos), str(tmp_path / "out"))
    assert result.exit_code == 2
    assert "rejected: no_face" in result.output and "no usable photo" in result.output


@pytest.mark.parametrize("args", [["only-one"], ["a", "b", "c"], ["a", "b", "--seed", "1"]])
def test_real_mode_wants_dir_and_out(args):
    result = _invoke(*args)
    assert result.exit_code == 2
    assert "DIR OUT" in _error_line(result) or "--seed" in _error_line(result)


@pytest.fixture
def fake_synthetic(monkeypatch):
    """A stand-in `agora_core.data.synthetic` module recording its calls."""
    calls = []

    def make_synthetic_dataset(n, out, resolution=64, seed=0, progress=True):
        calls.append(dict(n=n, out=out, resolution=resolution, seed=seed, progress=progress))
        return Path(out)

    module = types.ModuleType("agora_core.data.synthetic")
    module.make_synthetic_dataset = make_synthetic_dataset
    monkeypatch.setitem(sys.modules, "agora_core.data.synthetic", module)
    return calls


def test_synthetic_mode_calls_make_synthetic_dataset(fake_synthetic, tmp_path):
    out = tmp_path / "synth"
    result = _invoke("--synthetic", "3", str(out))
    assert result.exit_code == 0, result.output
    result = _invoke("--synthetic", "5", str(out), "--resolution", "32", "--seed", "7")
    assert result.exit_code == 0, result.output
    assert fake_synthetic == [
        dict(n=3, out=out, resolution=64, seed=0, progress=True),
        dict(n=5, out=out, resolution=32, seed=7, progress=True),
    ]


@pytest.mark.parametrize(
    "args, message",
    [(["a", "b"], "takes one path, OUT"), (["out", "--mirror"], "--mirror does not apply"), (["out", "--smirk", "x.pt"], "--smirk does not apply")],
)
def test_synthetic_mode_rejects_real_photo_arguments(fake_synthetic, args, message):
    result = _invoke("--synthetic", "2", *args)
    assert result.exit_code == 2 and message in _error_line(result)
    assert fake_synthetic == []
