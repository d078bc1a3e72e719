"""The sound track of a reenactment: the driving video's audio (or `--audio FILE`) muxed into the
rendered mp4 by the ffmpeg binary that imageio-ffmpeg ships.

Alignment: output frame k shows the driving video at `start + k / fps` (`start` = the first video
frame's presentation time, `invert.video_io.frame_times`), so the audio is read from `start` on
(`-ss`, sample-exact because it is decoded), padded with silence where the audio begins later than
the video (`aresample first_pts=0`), cut at the video's end, and encoded as AAC.
"""

from __future__ import annotations

import os
import re
import secrets
import subprocess
from dataclasses import dataclass
from pathlib import Path

from agora_core.errors import file_error

AUDIO_BITRATE = "192k"
_AUDIO_STREAM = re.compile(r"Stream #\d+:\d+.*?: Audio: ")


@dataclass(frozen=True)
class AudioTrack:
    path: Path  # a file with at least one audio stream (its first one is used)
    start: float = 0.0  # seconds of `path`'s timeline that play with the first video frame


def _ffmpeg() -> str:
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def _probe(path: Path) -> str:
    """ffmpeg's description of `path` (its stderr for `ffmpeg -i path`)."""
    try:
        return subprocess.run([_ffmpeg(), "-nostdin", "-hide_banner", "-i", str(path)], capture_output=True,
                              text=True, errors="replace", timeout=60).stderr
    except (OSError, subprocess.SubprocessError) as exc:
        raise file_error(path, f"ffmpeg could not be run to read it ({type(exc).__name__})") from None


def has_audio(path: str | Path) -> bool:
    """Whether ffmpeg finds an audio stream in `path` (a readable media file)."""
    return _AUDIO_STREAM.search(_probe(Path(path))) is not None


def audio_of_video(path: str | Path, start: float) -> AudioTrack | None:
    """The driving video's sound from `start` on, or None for a silent video."""
    return AudioTrack(Path(path), float(start)) if has_audio(path) else None


def audio_file(path: str | Path, flag: str = "--audio") -> AudioTrack:
    """A sound file given on the command line, checked before anything is rendered."""
    path = Path(path)
    if not path.is_file():
        raise file_error(path, f"no such file ({flag})")
    log = _probe(path)
    if _AUDIO_STREAM.search(log) is None:
        why = "not a readable audio file" if "Invalid data" in log or "Error opening input" in log else "has no audio stream"
        raise file_error(path, f"{why} ({flag} takes a sound file or a video with sound: wav, mp3, m4a, mp4, …)")
    return AudioTrack(path, 0.0)


def mux_audio(video: Path, track: AudioTrack, duration: float, out: Path) -> Path:
    """Write `out`: `video`'s frames (copied) with `track` cut to `duration` seconds, atomically
    (a temporary file beside `out`, renamed when complete)."""
    assert duration > 0 and track.start >= 0, (duration, track.start)
    tmp = out.with_name(f".{out.stem}.{os.getpid()}.{secrets.token_hex(4)}.tmp{out.suffix or '.mp4'}")
    cmd = [_ffmpeg(), "-nostdin", "-hide_banner", "-loglevel", "error", "-y", "-i", str(video),
           "-ss", f"{track.start:.6f}", "-i", str(track.path), "-map", "0:v:0", "-map", "1:a:0", "-c:v", "copy",
           "-af", "aresample=async=1:first_pts=0", "-c:a", "aac", "-b:a", AUDIO_BITRATE, "-t", f"{duration:.6f}",
           "-movflags", "+faststart", str(tmp)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, errors="replace", timeout=3600)
        if proc.returncode != 0 or not tmp.is_file() or tmp.stat().st_size == 0:
            first = (proc.stderr.strip().splitlines() or ["no output"])[-1][:200]
            raise file_error(track.path, f"ffmpeg could not add its sound to {out} ({first})")
        os.replace(tmp, out)
    except (OSError, subprocess.SubprocessError) as exc:
        raise file_error(out, f"cannot be written with sound ({type(exc).__name__}: {exc})") from None
    finally:
        tmp.unlink(missing_ok=True)
    return out
