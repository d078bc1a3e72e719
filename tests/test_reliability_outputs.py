"""Outputs are checked before the work and a failed write is caught: an --out that is a folder, sits
under a file or cannot be written is one line before anything loads or renders; ffmpeg failures and
absurd frame rates are reported; no temporary file is ever left behind."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from agora_cli.app import app
from agora_core.errors import AgoraError
from agora_core.gaussians.files import atomic_write, check_output_path


def _leftovers(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if ".tmp" in p.name)


def test_check_output_path_refuses_folders_files_on_the_way_and_unwritable_places(tmp_path, monkeypatch):
    (tmp_path / "folder").mkdir()
    (tmp_path / "file").write_text("x")
    assert check_output_path(tmp_path / "new" / "deeper" / "a.png") == tmp_path / "new" / "deeper" / "a.png"
    assert check_output_path(tmp_path / "folder", "--ply", folder=True) == tmp_path / "folder"
    with pytest.raises(AgoraError, match=r"--out .*folder: is a folder; give a file name"):
        check_output_path(tmp_path / "folder")
    with pytest.raises(AgoraError, match=r"--out .*file: is a file, not a folder"):
        check_output_path(tmp_path / "file", folder=True)
    with pytest.raises(AgoraError, match=r"file is a file, so nothing can be written under it"):
        check_output_path(tmp_path / "file" / "sub" / "a.png")
    monkeypatch.setattr("os.access", lambda path, mode: False)  # as a non-root user in a read-only folder
    with pytest.raises(AgoraError, match=r"cannot write in .*folder \(permission denied\)"):
        check_output_path(tmp_path / "folder" / "a.png")


def test_atomic_write_onto_a_folder_is_one_line_and_leaves_no_temporary_file(tmp_path):
    (tmp_path / "out.ply").mkdir()
    with pytest.raises(AgoraError, match="is a folder"):
        with atomic_write(tmp_path / "out.ply") as f:
            f.write(b"data")
    assert _leftovers(tmp_path) == []


def test_write_png_with_an_unknown_suffix_is_one_line(tmp_path):
    from agora_core.render.images import write_png

    with pytest.raises(AgoraError, match=r"suffix '\.xyz'; use \.png or \.jpg"):
        write_png(tmp_path / "grid.xyz", np.zeros((4, 4, 3), np.uint8))
    assert write_png(tmp_path / "grid.png", np.zeros((4, 4, 3), np.uint8)).is_file()
    assert _leftovers(tmp_path) == []


def _commands(missing: Path, out: Path, folder_out: Path) -> list[list[str]]:
    """Every command that writes, with inputs that do not exist: an error about them would mean the
    output was checked after the inputs were read."""
    m = str(missing)
    return [
        ["sample", m, "--out", str(out)],
        ["export", "ply", m, "--seed", "0", "--out", str(out)],
        ["export", "splat", m, "--seed", "0", "--out", str(out)],
        ["export", "onnx", m, "--seed", "0", "--out", str(out)],
        ["export", "web", m, "--basis", m, "--mlp", m, "--out", str(folder_out)],
        ["invert", m, "--ckpt", m, "--out", str(out.with_suffix(".pt"))],
        ["reenact", m, "--params", m, "--out", str(out.with_suffix(".mp4"))],
        ["extract-basis", m, "--out", str(out)],
        ["fit-mlp", m, m, "--out", str(out)],
        ["train", "--config", str(missing.with_name("c.yaml")), "--data", m, "--out", str(folder_out)],
        ["train-tracker", m, "--out", str(out)],
        ["eval", m, "--data", m, "--json", str(out)],
    ]


@pytest.mark.parametrize("case", ["folder", "under a file"])
def test_every_command_checks_its_output_before_reading_anything(tmp_path, case):
    missing = tmp_path / "missing.pt"
    (tmp_path / "a_file").write_text("x")
    (tmp_path / "c.yaml").write_text("resolution: 64\n")  # train reads its config (cheap) before anything else
    if case == "folder":  # an existing folder where a file goes; an existing file where a folder goes
        for name in ("out", "out.pt", "out.mp4"):
            (tmp_path / name).mkdir()
        out, folder_out, expect = tmp_path / "out", tmp_path / "a_file", ("is a folder", "is a file, not a folder")
    else:
        out, folder_out = tmp_path / "a_file" / "out", tmp_path / "a_file" / "site"
        expect = ("is a file, so nothing can be written under it",) * 2
    for args in _commands(missing, out, folder_out):
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 2, (args, result.output)
        assert "Traceback" not in result.output and "missing.pt" not in result.output, (args, result.output)
        assert any(e in result.output for e in expect), (args, result.output)
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize("fps", [1e12, 1e-9, float("nan"), 0.0])
def test_video_writer_refuses_absurd_frame_rates_before_starting_ffmpeg(tmp_path, fps):
    from agora_core.invert.video_io import Mp4Writer

    with pytest.raises(AgoraError, match="fps"):
        Mp4Writer(tmp_path / "a.mp4", fps)
    result = CliRunner().invoke(app, ["reenact-demo-params", str(tmp_path / "d.npz"), "--fps", str(fps)])
    assert result.exit_code == 2 and "--fps" in result.output and not (tmp_path / "d.npz").exists()


class _FailingPipe:
    """imageio-ffmpeg's writer generator when ffmpeg dies: sending a frame raises."""

    def __init__(self, fail_on: str):
        self.fail_on, self.sent = fail_on, 0

    def send(self, frame):
        self.sent += 1
        if self.fail_on == "send" and frame is not None:
            raise OSError("[Errno 32] Broken pipe")

    def close(self):
        if self.fail_on == "close":
            raise RuntimeError("ffmpeg returned error code 1\nlong ffmpeg log")


@pytest.mark.parametrize("fail_on", ["send", "close"])
def test_ffmpeg_failure_is_one_line_and_leaves_neither_video_nor_temporary_file(tmp_path, monkeypatch, fail_on):
    import imageio_ffmpeg

    from agora_core.invert.video_io import Mp4Writer

    monkeypatch.setattr(imageio_ffmpeg, "write_frames", lambda *a, **k: _FailingPipe(fail_on))
    out = tmp_path / "a.mp4"
    with pytest.raises(AgoraError) as err:
        with Mp4Writer(out, 25) as writer:
            for _ in range(3):
                writer.append(np.zeros((8, 8, 3), np.uint8))
            writer.finish()
    assert "ffmpeg failed writing the video" in str(err.value) and "\n" not in str(err.value)
    assert str(out) in str(err.value)
    assert list(tmp_path.iterdir()) == []


def test_real_ffmpeg_writes_a_video_through_the_checked_pipe(tmp_path):
    from agora_core.invert.video_io import Mp4Writer

    out = tmp_path / "a.mp4"
    with Mp4Writer(out, 25) as writer:
        for i in range(3):
            writer.append(np.full((16, 16, 3), 80 * i, np.uint8))
        writer.finish()
    assert out.stat().st_size > 0 and _leftovers(tmp_path) == []
