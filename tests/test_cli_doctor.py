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
    assert "ready" in out


def test_doctor_reports_a_given_asset_as_found(tmp_path):
    fake = tmp_path / "SMIRK_em1.pt"
    fake.write_bytes(b"x")
    result = runner.invoke(app, ["doctor", "--smirk", str(fake)])
    assert result.exit_code == 0
    assert "(flag)" in " ".join(result.output.split())


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
