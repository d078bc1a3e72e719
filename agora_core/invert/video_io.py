"""Video files through the ffmpeg binary that imageio-ffmpeg ships: decoding (with the problems a
user can cause turned into one-line `AgoraError`s), the decoded frames' presentation times (for
variable-frame-rate videos), sharp-frame selection, and an mp4 writer that writes to a temporary file
and renames it only when the video is complete.
"""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from agora_core.errors import AgoraWarning, file_error

VIDEO_FPS_RANGE = (1.0, 1000.0)  # frame rates a written video may have (ffmpeg refuses or stalls far outside)
VIDEO_SUFFIXES = {".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg"}


def is_video(path: str | Path) -> bool:
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


def _ffmpeg_diagnosis(path: Path) -> str:
    """Why ffmpeg cannot give frames of `path`, from `ffmpeg -i` (one short phrase)."""
    import imageio_ffmpeg

    try:
        proc = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-i", str(path)],
                              capture_output=True, text=True, timeout=30)
        log = proc.stderr
    except (OSError, subprocess.SubprocessError) as exc:
        return f"ffmpeg could not be run ({type(exc).__name__})"
    if "Error opening input" in log or "Invalid data" in log:
        return "not a readable video (corrupt, or not a video file)"
    if "Video:" in log:
        return "has a video stream but no decodable frames"
    return "has no video stream"


class VideoReader:
    """Frames of a video file as RGB uint8 [H, W, 3], and its frame rate.

    Opening checks the file; `frames()` yields frames until the end or the first undecodable one
    (`truncated` then says so). Zero frames is an `AgoraError`.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not self.path.is_file():
            raise file_error(self.path, "no such file")
        self.truncated = False
        self._meta = self._open_meta()
        self.fps = float(self._meta.get("fps") or 0.0) or 25.0

    def _open(self):
        import imageio_ffmpeg

        # passthrough: every decoded frame once, as `frame_times` sees them (ffmpeg's default for a pipe
        # duplicates and drops frames of a variable-frame-rate video to a constant rate)
        gen = imageio_ffmpeg.read_frames(str(self.path), pix_fmt="rgb24", output_params=["-fps_mode", "passthrough"])
        try:
            meta = next(gen)
        except (OSError, RuntimeError, StopIteration, ValueError):
            gen.close()
            raise file_error(self.path, _ffmpeg_diagnosis(self.path)) from None
        return gen, meta

    def _open_meta(self) -> dict:
        gen, meta = self._open()
        gen.close()
        return meta

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of the decoded frames."""
        return tuple(self._meta["size"])

    def frames(self) -> Iterator[np.ndarray]:
        gen, meta = self._open()
        w, h = meta["size"]
        count = 0
        try:
            while True:
                try:
                    buf = next(gen)
                except StopIteration:
                    break
                except (OSError, RuntimeError, ValueError):
                    self.truncated = True
                    break
                if len(buf) != w * h * 3:
                    self.truncated = True
                    break
                count += 1
                yield np.frombuffer(buf, dtype=np.uint8).reshape(h, w, 3).copy()
        finally:
            gen.close()
        if count == 0:
            raise file_error(self.path, "has a video stream but no decodable frames")

    def read_all(self, max_frames: int | None = None) -> list[np.ndarray]:
        out = []
        for frame in self.frames():
            out.append(frame)
            if max_frames is not None and len(out) >= max_frames:
                break
        return out


# showinfo's lines: "config in time_base: 1/10240, frame_rate: 10/1" and "n:   3 pts:   3072 ..."
_SHOWINFO_CONFIG = re.compile(r"config in time_base:\s*(\d+)/(\d+),\s*frame_rate:\s*(\d+)/(\d+)")
_SHOWINFO_FRAME = re.compile(r"\bn:\s*(\d+)\s+pts:\s*(-?\d+)\s")


@dataclass(frozen=True)
class FrameTimes:
    times: np.ndarray  # [N] float64 presentation time of each decoded frame, seconds from the file's start
    nominal_fps: float | None  # the stream's frame rate as ffmpeg guesses it (its r_frame_rate), if known


def frame_times(path: str | Path) -> FrameTimes | None:
    """Presentation times of the frames `VideoReader.frames()` yields, from ffmpeg's showinfo filter.

    Times are on ffmpeg's timeline of the file (0 = the earliest stream's start), the one its `-ss`
    seeks on, so a video stream that starts after its audio has times[0] > 0. None when ffmpeg gives
    no usable times (the caller then assumes a constant rate from frame 0)."""
    import imageio_ffmpeg

    cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-nostdin", "-hide_banner", "-nostats", "-i", str(path), "-map", "0:v:0",
           "-vf", "showinfo=checksum=0", "-fps_mode", "passthrough", "-f", "null", "-"]
    try:
        log = subprocess.run(cmd, capture_output=True, text=True, errors="replace", timeout=600).stderr
    except (OSError, subprocess.SubprocessError):
        return None
    config = _SHOWINFO_CONFIG.search(log)
    pts = [int(m.group(2)) for m in _SHOWINFO_FRAME.finditer(log)]
    if config is None or not pts or int(config.group(2)) == 0:
        return None
    num, den, rate_num, rate_den = (int(g) for g in config.groups())
    times = np.asarray(pts, np.float64) * num / den
    if not np.isfinite(times).all() or np.any(np.diff(times) <= 0):  # not a usable presentation order
        return None
    nominal = rate_num / rate_den if rate_den and rate_num else None
    return FrameTimes(times, nominal)


FPS_SNAP = 0.1  # a median frame rate this close (relative) to the stream's nominal one is that (timestamp jitter)


def constant_rate(times: np.ndarray, nominal_fps: float | None) -> tuple[np.ndarray, float]:
    """Resampling of frames shown at `times` [N] (seconds, increasing) to a constant frame rate.

    The rate is 1 / the median frame interval (the stream's nominal rate when within `FPS_SNAP` of it);
    output frame k covers [times[0] + k/fps, times[0] + (k+1)/fps) and shows the input frame on screen
    at its middle; the last input frame lasts one median interval. A constant-rate input (timestamps
    within half a frame of the grid) maps one to one. Returns (input index per output frame [K], fps).
    """
    assert times.ndim == 1 and times.size >= 1, times.shape
    if times.size == 1:
        fps = nominal_fps if nominal_fps and VIDEO_FPS_RANGE[0] <= nominal_fps <= VIDEO_FPS_RANGE[1] else 25.0
        return np.zeros(1, np.int64), float(fps)
    step = float(np.median(np.diff(times)))
    fps = 1.0 / step
    if nominal_fps and abs(nominal_fps - fps) <= FPS_SNAP * fps:
        fps = nominal_fps
    fps = float(np.clip(fps, *VIDEO_FPS_RANGE))
    count = max(1, int(round((times[-1] + step - times[0]) * fps)))
    middles = times[0] + (np.arange(count) + 0.5) / fps
    return np.clip(np.searchsorted(times, middles, side="right") - 1, 0, times.size - 1), fps


def sharpness(frame_rgb: np.ndarray, side: int = 256) -> float:
    """Variance of the Laplacian of the grey image (resized to ~`side` px): higher = sharper."""
    grey = cv2.cvtColor(frame_rgb, cv2.COLOR_RGB2GRAY)
    scale = side / max(grey.shape)
    if scale < 1:
        grey = cv2.resize(grey, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    return float(cv2.Laplacian(grey, cv2.CV_64F).var())


def select_sharp_frames(path: str | Path, n: int) -> tuple[list[int], list[np.ndarray]]:
    """`n` frames spread in time: the video cut into n equal runs, the sharpest of each.

    Two decoding passes (scores, then the chosen frames) so a long video is never held in memory.
    Returns (frame indices, frames). Fewer frames than `n` when the video is shorter.
    """
    reader = VideoReader(path)
    scores = [sharpness(f) for f in reader.frames()]
    total = len(scores)
    if total < n:
        warnings.warn(AgoraWarning(f"{path}: {n} frames asked for but the video has {total}; using all {total}"),
                      stacklevel=2)
    bounds = np.linspace(0, total, min(n, total) + 1).round().astype(int)
    chosen = [int(lo + np.argmax(scores[lo:hi])) for lo, hi in zip(bounds[:-1], bounds[1:]) if hi > lo]
    wanted, frames = set(chosen), {}
    for i, frame in enumerate(VideoReader(path).frames()):
        if i in wanted:
            frames[i] = frame
        if len(frames) == len(wanted):
            break
    return chosen, [frames[i] for i in chosen]


class Mp4Writer:
    """H.264 mp4 written to a temporary file beside `path`, renamed onto it by `finish()`.

    Use as a context manager: leaving the block by an exception deletes the temporary file, so no
    partial video is ever left at `path`. Frames are RGB uint8 [H, W, 3] of one size; odd sizes are
    padded with white to even (yuv420p needs even sides).
    """

    def __init__(self, path: str | Path, fps: float):
        self.path = Path(path)
        self.fps = float(fps)
        if not VIDEO_FPS_RANGE[0] <= self.fps <= VIDEO_FPS_RANGE[1]:  # NaN fails too
            raise file_error(self.path, f"cannot write a video at {self.fps:g} fps (expected "
                                        f"{VIDEO_FPS_RANGE[0]:g} to {VIDEO_FPS_RANGE[1]:g})")
        self.tmp = self.path.with_name(f".{self.path.stem}.{os.getpid()}.{secrets.token_hex(4)}.tmp{self.path.suffix or '.mp4'}")
        self._writer = None
        self.count = 0

    def __enter__(self) -> "Mp4Writer":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        return self

    def append(self, frame: np.ndarray) -> None:
        import imageio_ffmpeg

        h, w = frame.shape[:2]
        if h % 2 or w % 2:
            frame = np.pad(frame, ((0, h % 2), (0, w % 2), (0, 0)), constant_values=255)
        if self._writer is None:
            self._size = frame.shape[:2]
            self._writer = imageio_ffmpeg.write_frames(
                str(self.tmp), (frame.shape[1], frame.shape[0]), fps=self.fps, codec="libx264", quality=8,
                macro_block_size=1, ffmpeg_log_level="error", output_params=["-movflags", "+faststart"])
            self._ffmpeg(lambda: self._writer.send(None))
        assert frame.shape[:2] == self._size and frame.dtype == np.uint8, (frame.shape, self._size, frame.dtype)
        self._ffmpeg(lambda: self._writer.send(np.ascontiguousarray(frame)))
        self.count += 1

    def finish(self) -> Path:
        if self._writer is None:
            raise file_error(self.path, "no frames to write")
        writer, self._writer = self._writer, None
        self._ffmpeg(writer.close)
        if not self.tmp.is_file() or self.tmp.stat().st_size == 0:
            raise file_error(self.path, "ffmpeg wrote no video")
        try:
            os.replace(self.tmp, self.path)
        except OSError as err:
            raise file_error(self.path, f"cannot be written ({err.strerror or err})") from None
        return self.path

    def _ffmpeg(self, step) -> None:
        """Run one step of the ffmpeg pipe; its failure (a crash, a refused setting, a full disk) is one line."""
        try:
            step()
        except (OSError, RuntimeError, ValueError) as err:
            first = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
            raise file_error(self.path, f"ffmpeg failed writing the video ({first})") from None

    def __exit__(self, exc_type, exc, tb) -> None:
        if self._writer is not None:
            try:
                self._writer.close()
            except Exception:  # noqa: BLE001 - cleaning up after another error
                pass
            self._writer = None
        self.tmp.unlink(missing_ok=True)
