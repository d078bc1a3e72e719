"""Sound and timing of reenactments: the driving frames' presentation times (variable frame rate
included), their constant-rate resampling, the audio muxed in sync, `--audio` with `--params`, and
one-line errors for a bad sound file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import typer
from face_helpers import SMIRK_FIXTURE, write_astronaut_video, write_mean_sigmoid_onnx
from sound_helpers import audio_samples, audio_span, beep_source, ffmpeg, onset, retime_with_sound
from test_invert_helpers import quick_avatar, share_smirk
from typer.testing import CliRunner

from agora_cli.reenact import reenact
from agora_core.errors import AgoraError
from agora_core.invert.video_io import FPS_SNAP, Mp4Writer, VideoReader, constant_rate, frame_times
from agora_core.reenact.demo_sequence import make_demo_sequence
from agora_core.reenact.sound import AudioTrack, audio_file, has_audio, mux_audio

runner = CliRunner()
# Driving frames of the variable-rate clip (a millisecond grid, as the mp4 stores them): the video
# starts 0.3 s after the sound, runs at 10 fps, holds a frame 0.2 s, then 0.3 s.
VFR_TIMES = [0.3, 0.4, 0.5, 0.7, 0.8, 1.1]


def _invoke(*args):
    app = typer.Typer()
    app.command("reenact")(reenact)
    app.command("other")(lambda: None)
    return runner.invoke(app, ["reenact", *map(str, args)])


def _frame_span(path: Path) -> tuple[float, float, float]:
    """(first frame's time, end of the last frame, fps) of a constant-rate video."""
    t = frame_times(path).times
    fps = VideoReader(path).fps
    return float(t[0]), float(t[-1]) + 1 / fps, fps


def _silent_video(path: Path, frames: int, fps: float) -> Path:
    with Mp4Writer(path, fps) as w:
        for i in range(frames):
            w.append(np.full((16, 16, 3), 20 * i, np.uint8))
        w.finish()
    return path


@pytest.fixture(autouse=True)
def _one_smirk(monkeypatch):
    share_smirk(monkeypatch)


@pytest.fixture(scope="module")
def vfr_clip(tmp_path_factory) -> Path:
    """6 astronaut frames at `VFR_TIMES` with a beep at 0.7 s of the sound (driving frame 3)."""
    folder = tmp_path_factory.mktemp("vfr")
    video = write_astronaut_video(folder / "cfr.mp4", frames=len(VFR_TIMES), dx=4, dy=2)
    return retime_with_sound(video, folder / "talk.mp4", VFR_TIMES, beep_at=0.7, duration=1.6)


# ----------------------------------------------------------------------------- timing

def _constant_rate_reference(times: np.ndarray, fps: float, count: int) -> list[int]:
    """Output frame k shows the last input frame that started by the middle of its interval."""
    out = []
    for k in range(count):
        middle = times[0] + (k + 0.5) / fps
        out.append(max(i for i in range(len(times)) if times[i] <= middle))
    return out


def test_constant_rate_is_one_to_one_for_a_jittered_constant_rate():
    rng = np.random.default_rng(0)
    jitter = rng.uniform(-0.45, 0.45, 40) / 30  # under half a frame from the grid through the first frame
    jitter[0] = 0
    times = 2.0 + np.arange(40) / 30 + jitter
    index, fps = constant_rate(times, 30.0)
    assert fps == 30.0
    np.testing.assert_array_equal(index, np.arange(40))


def test_constant_rate_matches_the_reference_on_variable_rates():
    rng = np.random.default_rng(1)
    for trial in range(20):
        steps = rng.choice([1 / 30, 1 / 30, 1 / 30, 2 / 30, 1 / 60, 0.1], size=int(rng.integers(2, 60)))
        times = np.cumsum(np.concatenate([[rng.uniform(0, 1)], steps]))
        nominal = rng.choice([None, 30.0, 25.0])
        index, fps = constant_rate(times, nominal)
        median = 1 / np.median(np.diff(times))
        assert fps == (nominal if nominal and abs(nominal - median) <= FPS_SNAP * median else median)
        count = round((times[-1] + 1 / median - times[0]) * fps)
        assert index.tolist() == _constant_rate_reference(times, fps, count), trial


def test_frame_times_of_a_variable_rate_clip(vfr_clip):
    times = frame_times(vfr_clip)
    np.testing.assert_allclose(times.times, VFR_TIMES, atol=1e-3)  # the mp4's millisecond grid
    assert len(VideoReader(vfr_clip).read_all()) == len(VFR_TIMES)  # every decoded frame once, none repeated
    index, fps = constant_rate(times.times, times.nominal_fps)
    assert fps == pytest.approx(10.0) and index.tolist() == [0, 1, 2, 2, 3, 4, 4, 4, 5]


# ----------------------------------------------------------------------------- muxing

def test_mux_puts_the_sound_of_the_first_frame_at_zero(tmp_path):
    """Sound from 0 to 2 s with a beep at 1.0 s; the video plays its sound from 0.5 s: the beep lands at 0.5 s."""
    ffmpeg("-f", "lavfi", "-i", beep_source(1.0, 2.0), "-c:a", "aac", tmp_path / "sound.m4a")
    video = _silent_video(tmp_path / "silent.mp4", 12, 10.0)
    out = mux_audio(video, AudioTrack(tmp_path / "sound.m4a", 0.5), 1.2, tmp_path / "out.mp4")
    v_start, v_end, fps = _frame_span(out)
    a_start, a_end = audio_span(out)
    assert abs(a_start - v_start) < 1 / fps and abs(a_end - v_end) < 1 / fps, (a_start, a_end, v_start, v_end)
    assert abs(onset(audio_samples(out)) - 0.5) < 1 / fps
    assert len(VideoReader(out).read_all()) == 12
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.mp4", "silent.mp4", "sound.m4a"]


def test_sound_that_starts_late_is_padded_with_silence(tmp_path):
    """Sound starting 0.3 s into its file, beep 0.2 s into the sound: 0.5 s into the reenactment."""
    ffmpeg("-f", "lavfi", "-i", "color=size=16x16:rate=10:duration=1", "-itsoffset", "0.3", "-f", "lavfi", "-i",
           beep_source(0.2, 0.8), "-map", "0:v", "-map", "1:a", "-c:v", "libx264", "-c:a", "aac", tmp_path / "late.mp4")
    out = mux_audio(_silent_video(tmp_path / "silent.mp4", 10, 10.0), AudioTrack(tmp_path / "late.mp4", 0.0), 1.0,
                    tmp_path / "out.mp4")
    assert abs(onset(audio_samples(out)) - 0.5) < 0.1
    assert abs(audio_span(out)[0]) < 0.1


def test_bad_sound_files_are_one_line(tmp_path):
    (tmp_path / "junk.wav").write_bytes(b"RIFF\x00junk" * 50)
    silent = _silent_video(tmp_path / "silent.mp4", 3, 10.0)
    for path, match in [(tmp_path / "none.wav", "no such file"), (tmp_path / "junk.wav", "not a readable audio file"),
                        (silent, "has no audio stream")]:
        with pytest.raises(AgoraError, match=match) as err:
            audio_file(path)
        assert str(path) in str(err.value) and "\n" not in str(err.value)
    assert not has_audio(silent)


# ----------------------------------------------------------------------------- agora reenact

def test_reenact_keeps_the_sound_of_a_variable_rate_video(tmp_path, vfr_clip):
    modnet = write_mean_sigmoid_onnx(tmp_path / "modnet.onnx")
    out = tmp_path / "o" / "r.mp4"
    result = _invoke(quick_avatar(), vfr_clip, "--out", out, "--smirk", SMIRK_FIXTURE, "--modnet", modnet,
                     "--no-progress")
    assert result.exit_code == 0, result.output
    assert "variable frame rate" in result.output and "sound of" in result.output
    v_start, v_end, fps = _frame_span(out)
    assert fps == pytest.approx(10.0) and len(VideoReader(out).read_all()) == 9  # 0.3 … 1.2 s at 10 fps
    a_start, a_end = audio_span(out)
    assert abs(a_start - v_start) < 1 / fps and abs(a_end - v_end) < 1 / fps, (a_start, a_end, v_start, v_end)
    # the beep at 0.7 s of the sound, with driving frame 3, plays 0.4 s into the reenactment (0.3 s start)
    assert abs(onset(audio_samples(out)) - 0.4) < 1 / fps
    assert sorted(p.name for p in out.parent.iterdir()) == ["r.mp4"]


def test_params_with_audio_and_bad_audio(tmp_path):
    params = make_demo_sequence(5, 10.0).save(tmp_path / "d.npz")
    ffmpeg("-f", "lavfi", "-i", beep_source(0.1, 3.0), tmp_path / "voice.wav")
    out = tmp_path / "o" / "r.mp4"
    result = _invoke(quick_avatar(), "--params", params, "--audio", tmp_path / "voice.wav", "--out", out,
                     "--no-progress")
    assert result.exit_code == 0, result.output
    v_start, v_end, fps = _frame_span(out)
    a_start, a_end = audio_span(out)
    assert v_end == pytest.approx(0.5) and abs(a_start - v_start) < 1 / fps and abs(a_end - v_end) < 1 / fps
    assert abs(onset(audio_samples(out)) - 0.1) < 1 / fps

    (tmp_path / "bad.mp3").write_bytes(b"\xff\xfb junk" * 40)
    result = _invoke(quick_avatar(), "--params", params, "--audio", tmp_path / "bad.mp3", "--out",
                     tmp_path / "p" / "r.mp4", "--no-progress")
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert result.exit_code == 2 and len(lines) == 1 and "bad.mp3" in lines[0] and "--audio" in lines[0], result.output
    assert not (tmp_path / "p").exists()
