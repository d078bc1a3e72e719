"""`agora doctor` and the CLI's error handling, through Typer's CliRunner."""

from __future__ import annotations

import typer
from typer.testing import CliRunner

from agora_cli.app import app
from agora_cli.common import user_errors
from agora_core.errors import AgoraError

runner = CliRunner(env={"COLUMNS": "250"})  # wide enough that rich does not fold URLs


def test_help_lists_doctor():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    assert "doctor" in result.output


def test_doctor_without_assets_exits_zero_and_says_where_to_get_them():
    result = runner.invoke(app, ["doctor"])
    assert result.exit_code == 0, result.output
    out = " ".join(result.output.split())
    assert "gsplat" in out and "torch" in out
    assert "flame.is.tue.mpg.de" in out  # where FLAME comes from
    assert "SMIRK" in out and "MODNet" in out
    assert "SMIRK eyelid blendshapes" in out and "no (optional)" in out  # listed, not required
    assert "ready" in out


def test_doctor_names_the_face_detector_backend(monkeypatch):
    import agora_core.face.detect as detect

    monkeypatch.setattr(detect, "mediapipe_available", lambda: False)
    out = " ".join(runner.invoke(app, ["doctor"]).output.split())
    assert "face detector" in out and "Haar cascade" in out and "mediapipe 0.10.21" in out


def test_doctor_reports_a_given_asset_as_found(fixtures_dir):
    result = runner.invoke(app, ["doctor", "--smirk", str(fixtures_dir / "smirk_em1_format_random.pt")])
    assert result.exit_code == 0, result.output
    assert "(flag)" in " ".join(result.output.split())


def test_doctor_rejects_a_garbage_checkpoint(tmp_path):
    fake = tmp_path / "SMIRK_em1.pt"
    fake.write_bytes(b"x")
    result = runner.invoke(app, ["doctor", "--smirk", str(fake)])
    assert result.exit_code == 2
    assert "invalid" in result.output and "SMIRK_em1.pt" in result.output


def test_user_errors_become_one_line_and_exit_2():
    sub = typer.Typer()

    @sub.command()
    @user_errors
    def boom() -> None:
        raise AgoraError("some/file.pkl: truncated pickle")

    @sub.command()
    def other() -> None:  # a second command keeps Typer in group mode
        pass

    result = runner.invoke(sub, ["boom"])
    assert result.exit_code == 2
    assert "some/file.pkl: truncated pickle" in result.output
    assert "Traceback" not in result.output


def test_agora_warnings_become_one_yellow_line():
    import warnings

    from agora_core.errors import AgoraWarning

    sub = typer.Typer()

    @sub.command()
    @user_errors
    def degrade() -> None:
        warnings.warn("no eyelid blendshapes: eyelids ignored", AgoraWarning)

    @sub.command()
    def other() -> None:
        pass

    result = runner.invoke(sub, ["degrade"])
    assert result.exit_code == 0
    assert [ln for ln in result.output.splitlines() if ln.strip()] == ["warning: no eyelid blendshapes: eyelids ignored"]


def test_doctor_loads_the_fixture_flame_and_smirk(fixtures_dir, tmp_path):
    from agora_core.head.obj_io import write_uv_obj
    from agora_core.head.flame_io import load_flame_pickle

    data = load_flame_pickle(fixtures_dir / "flame2020_schema_tiny.pkl")
    v, f = data["v_template"], data["f"].astype("int64")
    obj = tmp_path / "head_template.obj"
    write_uv_obj(obj, v, f, (v[:, :2] - v[:, :2].min(0)) / (v[:, :2].max(0) - v[:, :2].min(0)), f)
    result = runner.invoke(app, ["doctor", "--flame", str(fixtures_dir / "flame2020_schema_tiny.pkl"), "--flame-uv", str(obj),
                                 "--smirk", str(fixtures_dir / "smirk_em1_format_random.pt")])
    assert result.exit_code == 0, result.output
    assert "invalid" not in result.output


def test_doctor_names_a_truncated_flame_pickle_and_exits_nonzero(fixtures_dir, tmp_path):
    broken = tmp_path / "generic_model.pkl"
    data = (fixtures_dir / "flame2020_schema_tiny.pkl").read_bytes()
    broken.write_bytes(data[: len(data) // 2])
    result = runner.invoke(app, ["doctor", "--flame", str(broken)])
    assert result.exit_code == 2
    assert "invalid" in result.output
    assert str(broken) in " ".join(result.output.split()).replace(" ", "") or str(broken) in result.output
    assert "Traceback" not in result.output


def test_doctor_validates_the_smirk_eyelid_folder(fixtures_dir, tmp_path):
    import numpy as np

    good, bad = tmp_path / "smirk_assets", tmp_path / "bad"
    for folder, rows in ((good, 120), (bad, 7)):
        folder.mkdir()
        np.save(folder / "l_eyelid.npy", np.zeros((rows, 3), np.float32))
        np.save(folder / "r_eyelid.npy", np.zeros((rows, 3), np.float32))
    result = runner.invoke(app, ["doctor", "--flame-eyelids", str(good)])  # any V without a FLAME model
    assert result.exit_code == 0, result.output
    assert "invalid" not in result.output and "(flag)" in result.output
    pkl = fixtures_dir / "flame2020_schema_tiny.pkl"  # 120 vertices: the 7-row files do not fit it
    result = runner.invoke(app, ["doctor", "--flame", str(pkl), "--flame-eyelids", str(bad)])
    assert result.exit_code == 2
    out = " ".join(result.output.split())
    assert "invalid" in out and "expected (120, 3, 2)" in out and "Traceback" not in out
    (bad / "r_eyelid.npy").unlink()
    result = runner.invoke(app, ["doctor", "--flame-eyelids", str(bad)])
    assert result.exit_code == 2 and "r_eyelid.npy" in result.output
