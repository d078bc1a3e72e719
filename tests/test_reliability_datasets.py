"""Datasets are never silently mixed: `prep-data --synthetic` into an existing folder resumes only a
synthetic run with the same settings; anything else is refused before a byte is written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from agora_cli.app import app
from agora_core.errors import AgoraError


def _snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _synthetic(out: Path, n: int = 2, resolution: int = 16, seed: int = 0):
    return CliRunner().invoke(app, ["prep-data", "--synthetic", str(n), str(out), "--resolution", str(resolution),
                                    "--seed", str(seed)])


@pytest.fixture(scope="module")
def synthetic_dataset(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synthetic") / "data"
    result = _synthetic(out)
    assert result.exit_code == 0, result.output
    return out


@pytest.mark.parametrize("change, flag", [({"seed": 1}, "seed=0"), ({"resolution": 32}, "resolution=16"),
                                          ({"n": 1}, "n=2")])
def test_synthetic_into_a_synthetic_dataset_with_other_settings_is_refused(synthetic_dataset, change, flag):
    before = _snapshot(synthetic_dataset)
    result = _synthetic(synthetic_dataset, **{"n": 2, "resolution": 16, "seed": 0, **change})
    assert result.exit_code == 2, result.output
    assert flag in result.output and "choose another OUT" in result.output and "Traceback" not in result.output
    assert _snapshot(synthetic_dataset) == before


def test_synthetic_with_the_same_settings_resumes(synthetic_dataset):
    (synthetic_dataset / "images" / "00000001.png").unlink()  # as a killed run would leave it
    result = _synthetic(synthetic_dataset)
    assert result.exit_code == 0, result.output
    assert (synthetic_dataset / "images" / "00000001.png").is_file()
    doc = json.loads((synthetic_dataset / "dataset.json").read_text())
    assert doc["num_images"] == 2 and doc["extra"]["seed"] == 0


@pytest.mark.parametrize("contents", ["photo dataset", "other files", "a file"])
def test_synthetic_into_a_folder_it_did_not_make_is_refused_before_writing(tmp_path, contents):
    out = tmp_path / "out"
    if contents == "a file":
        out.write_text("x")
    else:
        out.mkdir()
        names = ("dataset.json", "flame.npz", "prep.json") if contents == "photo dataset" else ("notes.txt",)
        for name in names:
            (out / name).write_text("{}")
    before = _snapshot(tmp_path)
    result = _synthetic(out)
    assert result.exit_code == 2, result.output
    assert "choose another OUT" in result.output and "Traceback" not in result.output
    assert _snapshot(tmp_path) == before


@pytest.mark.parametrize("content", ["[1, 2]", "{not json"])
def test_run_state_files_that_are_not_json_objects_are_one_line(tmp_path, content):
    """prep-data's state and the synthetic settings are read by one reader (`data.format.read_run_state`)."""
    from agora_core.data.prep_records import STATE_FILE, check_output_folder
    from agora_core.data.synthetic import SETTINGS_FILE, check_synthetic_output

    for name, check in ((STATE_FILE, lambda out: check_output_folder(out, {})),
                        (SETTINGS_FILE, lambda out: check_synthetic_output(out, {"n": 1}))):
        out = tmp_path / name.replace(".", "_")
        out.mkdir()
        (out / name).write_text(content)
        with pytest.raises(AgoraError, match=name):
            check(out)
