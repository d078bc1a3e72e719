"""Clips with sound and timing for the reenact sound tests, made and measured with the ffmpeg binary
that imageio-ffmpeg ships (no ffprobe there: times come from its showinfo/ashowinfo filters)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import numpy as np

RATE = 16000  # audio sample rate of the generated clips
BEEP = 0.5  # amplitude of the beep (silence elsewhere); its onset is where |sample| first passes BEEP / 2


def ffmpeg(*args: str) -> str:
    import imageio_ffmpeg

    proc = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-nostdin", "-hide_banner", "-y", *map(str, args)],
                          capture_output=True, text=True, errors="replace")
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stderr


def beep_source(beep_at: float, duration: float) -> str:
    """lavfi source: silence with a 440 Hz beep from `beep_at` to `beep_at` + 0.2 s (sample-exact)."""
    return (f"aevalsrc='{BEEP}*sin(2*PI*440*t)*between(t,{beep_at:g},{beep_at + 0.2:g})':s={RATE}:d={duration}")


def retime_with_sound(video: Path, out: Path, times: list[float], beep_at: float, duration: float) -> Path:
    """`video`'s frames shown at `times` (seconds, a millisecond grid), with a beep track from 0."""
    expr = "+".join(f"{t - (times[i - 1] if i else 0):.3f}*gte(N,{i})" for i, t in enumerate(times))
    ffmpeg("-i", video, "-f", "lavfi", "-i", beep_source(beep_at, duration), "-map", "0:v", "-map", "1:a",
           "-vf", f"setpts='({expr})/TB'", "-fps_mode", "passthrough", "-video_track_timescale", "1000",
           "-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac", out)
    return out


def audio_samples(path: Path) -> np.ndarray:
    """The first audio stream decoded to mono float32 at `RATE`, from its first sample."""
    import imageio_ffmpeg

    pcm = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-nostdin", "-v", "error", "-i", str(path), "-map", "0:a:0",
                          "-ac", "1", "-ar", str(RATE), "-f", "f32le", "-"], capture_output=True, check=True).stdout
    return np.frombuffer(pcm, np.float32)


def audio_span(path: Path) -> tuple[float, float]:
    """(start, end) seconds of the first audio stream on the file's timeline (as played)."""
    log = ffmpeg("-i", path, "-map", "0:a:0", "-af", "ashowinfo", "-f", "null", "-")
    first = re.search(r"pts_time:(-?[\d.]+)", log)
    assert first is not None, log[-2000:]
    start = float(first.group(1))
    return start, start + audio_samples(path).size / RATE


def onset(samples: np.ndarray) -> float:
    """Seconds from the first sample to the beep."""
    loud = np.flatnonzero(np.abs(samples) > BEEP / 2)
    assert loud.size, "no beep"
    return loud[0] / RATE
