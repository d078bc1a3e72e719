"""Driving parameters of a reenactment: per-frame expression, jaw, eyelids, head pose (+ cameras).

Files (`DrivingSequence.load` picks the reader by suffix, then by content; other trackers' layouts
are read in `reenact/tracker_files.py`):

- `.npz` (ours; what `agora reenact --save-params` writes):
    expression   [T, E] float   FLAME expression coefficients (E = 50 for SMIRK)
    jaw          [T, 3] float   jaw rotation, axis-angle (radians)
    eyelids      [T, 2] float   eyelid closure (SMIRK's 2 blendshapes), optional (zeros)
    global_pose  [T, 3] float   head rotation, axis-angle; realised by the camera (the avatar's head
                                stays unrotated, paper sec. 4 and the authors' reenactment script), optional (zeros)
    neck         [T, 3] float   FLAME neck rotation, optional (zeros)
    eyes         [T, 6] float   FLAME eyeball rotations (left, right), optional (zeros)
    camera       [T, 25] float  EG3D camera labels, optional: when present they are the cameras and
                                global_pose is ignored
    fps          scalar         frames per second, optional (25)
    flame_version str           FLAME release of the parameters ("2020", "2023"), optional (unknown)
- `.json`: the AGORA authors' web-demo `driving_sequence.json`,
    {"num_frames": T, "params_dim": 55, "fps": 25.0, "frames": [[50 expression, 3 jaw, 2 eyelids], …]}
  (no head pose: the camera stays frontal). `save` writes it too for a `.json` path.
- another tracker's `.npz` or a folder of per-frame files (`tracker_files.py`).

FLAME 2020 and FLAME 2023 parameters are not interchangeable; `flame_version` says which release a
sequence is for when its source tells (SMIRK, DECA, EMOCA: 2020; VHAP, GaussianAvatars: 2023) and
`check_flame_version` refuses a mismatch with the avatars' FLAME 2020 unless it is accepted.

Smoothing (`smoothed`): Savitzky–Golay over time on every parameter (authors: window 5, order 3).
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from agora_core.errors import AgoraWarning, file_error
from agora_core.gaussians.files import atomic_write
from agora_core.head import FlameParams
from agora_core.invert.video_io import VIDEO_FPS_RANGE
from agora_core.render import Camera

DEFAULT_FPS = 25.0
SMOOTH_WINDOW, SMOOTH_ORDER = 5, 3  # the authors' Savitzky–Golay filter (their reenactment script)
JSON_TAIL = 5  # jaw 3 + eyelids 2 after the expression in the authors' 55-d frame vector
# |value| beyond which a driving parameter gets a warning: FLAME expression/eyelid coefficients are in
# units of their standard deviation (trained values lie within a few), rotations are axis-angle radians
# (≤ π is every rotation), camera labels are extrinsics + normalised intrinsics of order 1.
DRIVING_PLAUSIBLE = {"expression": 20.0, "eyelids": 20.0, "jaw": 2 * np.pi, "global_pose": 2 * np.pi,
                     "neck": 2 * np.pi, "eyes": 2 * np.pi, "camera": 100.0}
DRIVING_REFUSED = 1e4  # |value| beyond which a file is refused: no tracker or model means this
SMOOTHED = ("expression", "jaw", "eyelids", "global_pose", "neck", "eyes")
# agora avatars take FLAME 2020 parameters: the model was trained on SMIRK's estimates (FLAME 2020),
# which is also what `agora reenact` tracks from a video.
AVATAR_FLAME_VERSION = "2020"
FLAME_VERSIONS = ("2020", "2023")


@dataclass
class DrivingSequence:
    expression: np.ndarray  # [T, E] float32
    jaw: np.ndarray  # [T, 3]
    eyelids: np.ndarray  # [T, 2]
    global_pose: np.ndarray  # [T, 3]
    neck: np.ndarray  # [T, 3]
    fps: float = DEFAULT_FPS
    camera: np.ndarray | None = None  # [T, 25] labels, or None: from global_pose
    eyes: np.ndarray | None = None  # [T, 6] eyeball rotations (left, right); None: zeros
    flame_version: str | None = None  # FLAME release of the parameters, None: not known
    source: str = "agora"  # which file layout they came from (for messages)

    def __post_init__(self) -> None:
        t = self.expression.shape[0]
        if self.eyes is None:
            self.eyes = np.zeros((t, 6), np.float32)
        assert self.flame_version in (None, *FLAME_VERSIONS), self.flame_version
        for name, dim in (("jaw", 3), ("eyelids", 2), ("global_pose", 3), ("neck", 3), ("eyes", 6)):
            assert getattr(self, name).shape == (t, dim), (name, getattr(self, name).shape, t)
        assert self.camera is None or self.camera.shape == (t, 25), self.camera.shape

    @property
    def num_frames(self) -> int:
        return self.expression.shape[0]

    # --- maths --------------------------------------------------------------------------------------
    def smoothed(self, window: int = SMOOTH_WINDOW, order: int = SMOOTH_ORDER) -> "DrivingSequence":
        """Savitzky–Golay over time (scipy, mode "interp"); the window shrinks to the largest odd
        length ≤ T for short sequences, and nothing is smoothed when that is ≤ order."""
        from scipy.signal import savgol_filter

        w = min(window, self.num_frames if self.num_frames % 2 else self.num_frames - 1)
        if w <= order:
            return self
        new = {k: savgol_filter(getattr(self, k), w, order, axis=0, mode="interp").astype(np.float32) for k in SMOOTHED}
        new["eyelids"] = np.clip(new["eyelids"], 0.0, 1.0)  # SMIRK's eyelids live in [0, 1]
        return replace(self, **new)

    def frames_at(self, index: np.ndarray, fps: float) -> "DrivingSequence":
        """The frames `index` [K] (repeats allowed, e.g. a variable-rate video put on a constant rate) at `fps`."""
        picked = {k: getattr(self, k)[index] for k in SMOOTHED}
        return replace(self, **picked, camera=None if self.camera is None else self.camera[index], fps=float(fps))

    def cameras(self) -> Camera:
        """One camera per frame: the given labels, else the orbit camera of the head pose."""
        if self.camera is not None:
            return Camera.from_label(torch.as_tensor(self.camera, dtype=torch.float32))
        from agora_core.face.camera import camera_from_head_pose

        cams = camera_from_head_pose(torch.as_tensor(self.global_pose, dtype=torch.float64))
        return Camera(cams.cam2world.float(), cams.intrinsics.float())

    def flame(self) -> FlameParams:
        """The frames' FLAME parameters, float32 (no shape: the avatar's replaces the driver's)."""
        return FlameParams.from_dict({"expression": self.expression, "jaw": self.jaw, "eyelids": self.eyelids,
                                      "neck": self.neck, "eyes": self.eyes})

    # --- files --------------------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write `.npz` (all fields) or `.json` (authors' format: expression, jaw, eyelids), atomically."""
        path = Path(path)
        if path.suffix not in (".json", ".npz"):
            raise file_error(path, "driving parameters are written as .npz or .json")
        with atomic_write(path) as f:
            if path.suffix == ".json":
                frames = np.concatenate([self.expression, self.jaw, self.eyelids], axis=1)
                doc = {"num_frames": self.num_frames, "params_dim": int(frames.shape[1]), "fps": float(self.fps),
                       "frames": [[float(x) for x in row] for row in frames]}
                f.write(json.dumps(doc).encode())
            else:
                arrays = {k: getattr(self, k).astype(np.float32) for k in SMOOTHED}
                if self.camera is not None:
                    arrays["camera"] = self.camera.astype(np.float32)
                if self.flame_version is not None:
                    arrays["flame_version"] = np.str_(self.flame_version)
                np.savez(f, fps=np.float32(self.fps), **arrays)
        return path

    @staticmethod
    def load(path: str | Path) -> "DrivingSequence":
        from agora_core.reenact import tracker_files

        path = Path(path)
        if path.is_dir():
            return tracker_files.load_folder(path)
        if not path.is_file():
            raise file_error(path, "no such file")
        if path.suffix == ".json":
            return _load_json(path)
        if path.suffix == ".npz":
            return _load_npz(path)
        raise file_error(path, f"--params takes {tracker_files.ACCEPTED}")


def check_flame_version(seq: DrivingSequence, path: str | Path, accept_mismatch: bool) -> None:
    """Refuse parameters known to be for another FLAME release than the avatars' (one line), unless accepted."""
    if seq.flame_version in (None, AVATAR_FLAME_VERSION) or accept_mismatch:
        return
    raise file_error(path, f"{seq.source} parameters are for FLAME {seq.flame_version}, but agora avatars take "
                           f"FLAME {AVATAR_FLAME_VERSION} ones (the expression spaces differ); pass "
                           "--accept-flame-mismatch to drive with them anyway")


def param_rows(path: Path, name: str, value, t: int | None, dim: int | None) -> np.ndarray:
    try:
        a = np.asarray(value, dtype=np.float32)
    except (TypeError, ValueError):
        raise file_error(path, f"'{name}' is not an array of numbers") from None
    if a.ndim != 2 or (t is not None and a.shape[0] != t) or (dim is not None and a.shape[1] != dim):
        want = f"[{t if t is not None else 'T'}, {dim if dim is not None else 'E'}]"
        raise file_error(path, f"'{name}' has shape {a.shape}, expected {want}")
    if not np.isfinite(a).all():
        raise file_error(path, f"'{name}' has non-finite values")
    return a


def _load_npz(path: Path) -> DrivingSequence:
    from agora_core.reenact import tracker_files

    data = tracker_files.read_npz(path)
    if "expression" not in data:  # not ours: another tracker's layout, or an error naming them all
        return tracker_files.load_tracker_npz(path, data)
    if "jaw" not in data:
        raise file_error(path, "lacks 'jaw' (driving .npz: expression [T,E], jaw [T,3], optional eyelids, "
                               "global_pose, neck, eyes [T,6], camera [T,25], fps, flame_version)")
    expression = param_rows(path, "expression", data["expression"], None, None)
    t = expression.shape[0]
    if t == 0:
        raise file_error(path, "has zero frames")
    opt = lambda k, d: param_rows(path, k, data[k], t, d) if k in data else np.zeros((t, d), np.float32)  # noqa: E731
    camera = param_rows(path, "camera", data["camera"], t, 25) if "camera" in data else None
    fps = fps_value(path, data["fps"].reshape(-1)[0].item() if "fps" in data and data["fps"].size == 1 else
               data.get("fps", DEFAULT_FPS))
    version = data.get("flame_version")
    if version is not None and (version.dtype.kind != "U" or version.size != 1 or str(version) not in FLAME_VERSIONS):
        raise file_error(path, f"'flame_version' must be one of {', '.join(FLAME_VERSIONS)}")
    return in_plausible_range(path, DrivingSequence(
        expression, param_rows(path, "jaw", data["jaw"], t, 3), opt("eyelids", 2), opt("global_pose", 3),
        opt("neck", 3), fps, camera, opt("eyes", 6), None if version is None else str(version)))


def number_value(path: Path, name: str, value, integer: bool = False) -> float:
    """A finite number (an integer when `integer`) read from a file, or one line naming file and field."""
    ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
    if not ok or not np.isfinite(value) or (integer and value != int(value)):
        raise file_error(path, f"'{name}' must be a finite {'integer' if integer else 'number'}, got {value!r}")
    return int(value) if integer else float(value)


def fps_value(path: Path, value) -> float:
    fps = number_value(path, "fps", value)
    if not VIDEO_FPS_RANGE[0] <= fps <= VIDEO_FPS_RANGE[1]:
        raise file_error(path, f"'fps' {fps:g} is outside [{VIDEO_FPS_RANGE[0]:g}, {VIDEO_FPS_RANGE[1]:g}]")
    return fps


def in_plausible_range(path: Path, seq: DrivingSequence) -> DrivingSequence:
    """`seq`; an error when a parameter is absurd (|value| > `DRIVING_REFUSED`), a warning when it lies
    outside what FLAME-driven models are trained on (`DRIVING_PLAUSIBLE`)."""
    for name, plausible in DRIVING_PLAUSIBLE.items():
        values = getattr(seq, name)
        peak = float(np.abs(values).max()) if values is not None and values.size else 0.0
        if peak > DRIVING_REFUSED:
            raise file_error(path, f"'{name}' reaches {peak:.3g}, far outside anything a model is trained on "
                                   f"(|value| <= {DRIVING_REFUSED:g}); the file is damaged or in other units")
        if peak > plausible:
            warnings.warn(AgoraWarning(f"{path}: '{name}' reaches {peak:.3g}, outside what models are trained on "
                                       f"(|value| <= {plausible:g}); the avatar may look distorted"), stacklevel=3)
    return seq


def _load_json(path: Path) -> DrivingSequence:
    try:
        doc = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise file_error(path, f"not valid JSON ({exc})") from None
    if not isinstance(doc, dict) or "frames" not in doc:
        raise file_error(path, "not a driving_sequence.json ({num_frames, params_dim, fps, frames})")
    dim = number_value(path, "params_dim", doc.get("params_dim", 55), integer=True)
    if dim <= JSON_TAIL:
        raise file_error(path, f"params_dim {dim}: expected expression + jaw 3 + eyelids 2 (55)")
    try:
        frames = np.asarray(doc["frames"], dtype=np.float32)
    except (TypeError, ValueError):
        raise file_error(path, "'frames' must be a list of equal-length number lists") from None
    if frames.ndim != 2 or frames.shape[0] == 0 or frames.shape[1] != dim:
        raise file_error(path, f"'frames' has shape {frames.shape}, expected [num_frames, {dim}]")
    if "num_frames" in doc and number_value(path, "num_frames", doc["num_frames"], integer=True) != frames.shape[0]:
        raise file_error(path, f"num_frames {doc['num_frames']} but {frames.shape[0]} frames")
    if not np.isfinite(frames).all():
        raise file_error(path, "'frames' has non-finite values")
    e = dim - JSON_TAIL
    t = frames.shape[0]
    fps = fps_value(path, doc.get("fps", DEFAULT_FPS))
    zeros = np.zeros((t, 3), np.float32)
    return in_plausible_range(path, DrivingSequence(  # the authors' sequences are SMIRK estimates: FLAME 2020
        frames[:, :e].copy(), frames[:, e:e + 3].copy(), frames[:, e + 3:].copy(), zeros, zeros.copy(), fps, None,
        flame_version="2020", source="driving_sequence.json"))
