"""Per-frame FLAME tracking of a driving video through face/ (detect, crop, SMIRK, head pose).

A frame without a detectable face takes the parameters of the nearest earlier frame with one
(leading frames: the first found); a video with no face at all is an `AgoraError`. Detection
follows one face from frame to frame (`FollowingDetector`), so another person who is momentarily
larger in the frame does not take over the driving.

Every decoded frame is tracked once; the sequence is then put on a constant frame rate from the
frames' presentation times (`invert.video_io.constant_rate`: one to one for a constant-rate video, a
frame shown per output interval for a variable-rate one), so the rendered video keeps the driving
video's timing and its sound (`start` = the first frame's time) stays in sync.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from agora_core.errors import file_error
from agora_core.face.detect import FollowingDetector, NoFaceError
from agora_core.invert.photo_inputs import FaceTools
from agora_core.invert.video_io import VideoReader, constant_rate, frame_times
from agora_core.reenact.driving import DrivingSequence


@dataclass
class TrackedVideo:
    sequence: DrivingSequence  # raw (unsmoothed) per-frame parameters at a constant frame rate
    crops: list[np.ndarray]  # [R, R, 3] uint8 dataset-framed crop of each frame (for side by side)
    missing: int  # frames without a detected face (parameters held)
    truncated: bool  # decoding stopped at an undecodable frame
    start: float  # presentation time of the first frame (seconds of the file's timeline)
    variable_rate: bool  # the decoded frames were not on a constant-rate grid (resampled)


def track_video(path: str | Path, tools: FaceTools, resolution: int, progress=None) -> TrackedVideo:
    """Analyse every frame of `path`; `progress` is an optional rich Progress."""
    from agora_core.face import analyse_face

    reader = VideoReader(path)
    detector = None if tools.detector is None else FollowingDetector(tools.detector)  # one person throughout
    rows: list[dict | None] = []
    crops: list[np.ndarray] = []
    task = progress.add_task("tracking", total=None) if progress is not None else None
    for i, frame in enumerate(reader.frames()):
        try:
            result = analyse_face(frame, detector=detector, matter=tools.matter, estimator=tools.estimator,
                                  aligned=tools.aligned, size=resolution, source=f"{path}#{i}")
            rows.append(result.flame)
            crops.append(result.image)
        except NoFaceError:
            rows.append(None)
            crops.append(centre_square(frame, resolution))
        if task is not None:
            progress.update(task, advance=1)
    found = [i for i, r in enumerate(rows) if r is not None]
    if not found:
        raise file_error(path, f"no face found in any of its {len(rows)} frames; use a video with a clearly "
                               "visible frontal face")
    last = found[0]
    for i in range(len(rows)):  # hold the last tracked frame (leading frames: the first one)
        if rows[i] is None:
            rows[i] = rows[last]
        else:
            last = i
    stack = lambda k: np.stack([r[k] for r in rows]).astype(np.float32)  # noqa: E731
    seq = DrivingSequence(stack("expression"), stack("jaw"), stack("eyelids"), stack("global_pose"),
                          stack("neck"), reader.fps, None)
    times = frame_times(path)
    if times is None or times.times.size < len(rows):  # no usable timestamps: a constant rate from 0
        start, index, fps = 0.0, np.arange(len(rows)), reader.fps
    else:
        start = float(times.times[0])
        index, fps = constant_rate(times.times[:len(rows)], times.nominal_fps)
    variable = not np.array_equal(index, np.arange(len(rows)))
    if variable or fps != seq.fps:
        seq, crops = seq.frames_at(index, fps), [crops[i] for i in index]
    return TrackedVideo(seq, crops, len(rows) - len(found), reader.truncated, start, variable)


def centre_square(frame: np.ndarray, size: int) -> np.ndarray:
    """The central square of a frame resized to size² (shown for frames without a face)."""
    h, w = frame.shape[:2]
    s = min(h, w)
    y, x = (h - s) // 2, (w - s) // 2
    return cv2.resize(frame[y:y + s, x:x + s], (size, size), interpolation=cv2.INTER_AREA)
