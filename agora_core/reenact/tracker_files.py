"""Driving parameters written by other face trackers, for `agora reenact --params`.

Each layout is recognised by its content (array names and shapes), never by its file name:

- VHAP / GaussianAvatars (FLAME 2023: their code loads `flame2023.pkl`; a file tracked after
  switching them to FLAME 2020 looks the same and needs `--accept-flame-mismatch`):
  `.npz` with `expr` [T, ≤100], `jaw_pose` [T, 3], optional `rotation` (head) [T, 3], `neck_pose`
  [T, 3], `eyes_pose` [T, 6]; `translation`, `shape`, offsets, cameras are not used. VHAP's
  `tracked_flame_params*.npz`, GaussianAvatars' `flame_param.npz` beside a point cloud, and a folder
  of VHAP's per-frame export (`flame_param/00000.npz`, …, rows [1, …]).
- DECA / EMOCA codes (FLAME 2020): `exp` [50], `pose` [6] = head rotation 3 + jaw 3 — a folder of
  per-frame folders `<frame>/{exp,pose}.npy` (EMOCA's `save_codes`; `shape`, `tex`, `detail` unused),
  or an `.npz` of the code dict, `exp` [T, 50], `pose` [T, 6] (DECA's `encode()` keys).
- SMIRK (FLAME 2020): the encoder's output dict saved as `.npz` (`expression_params` [T, 50],
  `jaw_params` [T, 3], optional `eyelid_params` [T, 2], `pose_params` (head) [T, 3]; `shape_params`,
  `cam` unused) — SMIRK's demo scripts themselves write only images and videos — and the AGORA
  authors' clip folders `<clip>/smirk/<frame>/{exp,jawpose,eyelid,globalpose}.npy`.
- a folder of per-frame `.npz` files in one of the `.npz` layouts above, frames in natural name order.

None of these records a frame rate: 25 fps unless `--fps` says otherwise. Head rotation is realised
by the camera as for a video (`DrivingSequence.cameras`); translation is not used (the camera keeps
the avatar framed).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from agora_core.errors import ARCHIVE_ERRORS, file_error
from agora_core.reenact.driving import DEFAULT_FPS, DrivingSequence, in_plausible_range, param_rows

ACCEPTED = ("a .npz (agora's, VHAP/GaussianAvatars flame_param, DECA/EMOCA codes, SMIRK outputs), the authors' "
            "driving_sequence.json, or a folder of per-frame files (SMIRK <clip>/smirk/<frame>/exp.npy, EMOCA "
            "<frame>/exp.npy + pose.npy, per-frame .npz)")
FLAME_EXPRESSIONS = 100  # expression components of FLAME 2020 and 2023
UNUSED = frozenset({"shape", "shape_params", "shapecode", "static_offset", "dynamic_offset", "tex", "texcode", "lights",
                    "light", "detail", "detailcode", "cam", "image_size", "timestep_id", "focal_length",
                    "n_processed_frames"})  # arrays of the layouts that drive nothing here (not loaded)

# name -> (source, FLAME release, required keys, {our field: (their key, columns, slice of them)})
LAYOUTS = {
    "vhap": ("VHAP/GaussianAvatars", "2023", ("expr", "jaw_pose"),
             {"expression": ("expr", None, None), "jaw": ("jaw_pose", 3, None), "global_pose": ("rotation", 3, None),
              "neck": ("neck_pose", 3, None), "eyes": ("eyes_pose", 6, None)}),
    "deca": ("DECA/EMOCA", "2020", ("exp", "pose"),
             {"expression": ("exp", None, None), "jaw": ("pose", 6, slice(3, 6)),
              "global_pose": ("pose", 6, slice(0, 3))}),
    "smirk": ("SMIRK", "2020", ("expression_params", "jaw_params"),
              {"expression": ("expression_params", None, None), "jaw": ("jaw_params", 3, None),
               "eyelids": ("eyelid_params", 2, None), "global_pose": ("pose_params", 3, None)}),
}
SMIRK_CLIP_FILES = {"expression": ("exp", None), "jaw": ("jawpose", 3), "eyelids": ("eyelid", 2),
                    "global_pose": ("globalpose", 3)}  # our field -> (the authors' file stem, size; None: any)
EMOCA_FRAME_FILES = {"exp": None, "pose": 6}


def natural_key(path: Path) -> list:
    """Sort key putting frame_2 before frame_10."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path.name)]


def read_npz(path: Path) -> dict[str, np.ndarray]:
    """The arrays of an `.npz` (those in `UNUSED` skipped), without unpickling anything."""
    try:
        with np.load(path, allow_pickle=False) as z:
            names = [k for k in z.files if k not in UNUSED]
            data = {}
            for k in names:
                try:
                    data[k] = z[k]
                except ValueError as exc:
                    if "allow_pickle" not in str(exc):
                        raise
                    raise file_error(path, f"'{k}' holds Python objects, not numbers (pickled arrays are not "
                                           "read)") from None
    except ARCHIVE_ERRORS as exc:  # truncated/foreign files
        raise file_error(path, f"not a readable .npz ({type(exc).__name__}: {exc})") from None
    return data


def _layout_of(path: Path, data: dict) -> str:
    for name, (_, _, required, _) in LAYOUTS.items():
        if all(k in data for k in required):
            return name
    keys = ", ".join(sorted(data)[:8]) or "none"
    raise file_error(path, f"not a driving-parameter layout agora knows (arrays: {keys}); --params takes {ACCEPTED}")


def _fields(path: Path, layout: str, data: dict) -> dict[str, np.ndarray]:
    """Our fields [T, d] from one file of `layout` (T frames, or 1 for a per-frame file)."""
    _, _, _, mapping = LAYOUTS[layout]
    t = None
    out: dict[str, np.ndarray] = {}
    for field, (key, columns, part) in mapping.items():
        if key not in data:
            continue
        value = data[key]
        if isinstance(value, np.ndarray) and value.ndim == 1 and t in (None, 1):  # a single frame's vector
            value = value[None]
        rows = param_rows(path, key, value, t, columns)
        t = rows.shape[0]
        out[field] = rows if part is None else rows[:, part]
    if t == 0:
        raise file_error(path, "has zero frames")
    if out["expression"].shape[1] > FLAME_EXPRESSIONS:
        raise file_error(path, f"'{mapping['expression'][0]}' has {out['expression'].shape[1]} columns; FLAME has "
                               f"{FLAME_EXPRESSIONS} expression components")
    return out


def _sequence(path: Path, layout: str, fields: dict[str, np.ndarray]) -> DrivingSequence:
    source, version, _, _ = LAYOUTS[layout]
    t = fields["expression"].shape[0]
    zeros = lambda d: np.zeros((t, d), np.float32)  # noqa: E731
    get = lambda k, d: fields.get(k, zeros(d)).copy()  # noqa: E731
    seq = DrivingSequence(fields["expression"].copy(), get("jaw", 3), get("eyelids", 2), get("global_pose", 3),
                          get("neck", 3), DEFAULT_FPS, None, get("eyes", 6), version, source)
    return in_plausible_range(path, seq)


def load_tracker_npz(path: Path, data: dict) -> DrivingSequence:
    """One `.npz` of another tracker (module docstring), recognised by its arrays."""
    layout = _layout_of(path, data)
    return _sequence(path, layout, _fields(path, layout, data))


def load_folder(path: Path) -> DrivingSequence:
    """A folder of per-frame files: the authors' SMIRK clip, EMOCA frame folders, or per-frame `.npz`."""
    root = path / "smirk" if (path / "smirk").is_dir() else path
    dirs = sorted((d for d in root.iterdir() if d.is_dir() and (d / "exp.npy").is_file()), key=natural_key)
    if any((d / "jawpose.npy").is_file() for d in dirs):
        return _load_smirk_clip(root, dirs)
    if any((d / "pose.npy").is_file() for d in dirs):
        return _load_emoca_frames(root, dirs)
    files = sorted((f for f in path.iterdir() if f.suffix == ".npz" and f.is_file()), key=natural_key)
    if files:
        return _load_npz_frames(path, files)
    raise file_error(path, f"holds no driving parameters; --params takes {ACCEPTED}")


def _read_npy(file: Path, size: int | None) -> np.ndarray:
    try:
        a = np.load(file, allow_pickle=False)
    except ARCHIVE_ERRORS as exc:
        raise file_error(file, f"not a readable .npy ({type(exc).__name__})") from None
    if not np.issubdtype(a.dtype, np.number):
        raise file_error(file, f"holds {a.dtype}, not numbers")
    a = np.asarray(a, np.float32).reshape(-1)
    if size is not None and a.size != size:
        raise file_error(file, f"holds {a.size} values, expected {size}")
    return a


def _stack(root: Path, frames: list[dict[str, np.ndarray]], what: str) -> dict[str, np.ndarray]:
    """Per-frame vectors (or [1, d] rows) stacked to [T, d]; every frame must have the same sizes."""
    out = {}
    for key in frames[0]:
        sizes = {f[key].size if key in f else -1 for f in frames}
        if len(sizes) != 1:
            raise file_error(root, f"{what} '{key}' sizes differ between frames: {sorted(sizes)}")
        out[key] = np.stack([f[key].reshape(-1) for f in frames])
    return out


def _load_smirk_clip(root: Path, dirs: list[Path]) -> DrivingSequence:
    frames = []
    for frame in dirs:
        values = {}
        for key, (stem, dim) in SMIRK_CLIP_FILES.items():
            file = frame / f"{stem}.npy"
            if file.is_file():
                values[key] = _read_npy(file, dim)
            elif key in ("eyelids", "global_pose"):  # optional: zeros
                values[key] = np.zeros(dim, np.float32)
            else:
                raise file_error(file, "missing (every SMIRK frame folder holds exp.npy and jawpose.npy)")
        frames.append(values)
    rows = {k: param_rows(root, k, v, len(dirs), None) for k, v in _stack(root, frames, "SMIRK").items()}
    return _sequence(root, "smirk", rows)


def _load_emoca_frames(root: Path, dirs: list[Path]) -> DrivingSequence:
    frames = []
    for frame in dirs:
        missing = [f"{k}.npy" for k in EMOCA_FRAME_FILES if not (frame / f"{k}.npy").is_file()]
        if missing:
            raise file_error(frame, f"lacks {', '.join(missing)} (every DECA/EMOCA frame folder holds exp.npy and "
                                    "pose.npy)")
        frames.append({k: _read_npy(frame / f"{k}.npy", size) for k, size in EMOCA_FRAME_FILES.items()})
    return _sequence(root, "deca", _fields(root, "deca", _stack(root, frames, "DECA/EMOCA")))


def _load_npz_frames(root: Path, files: list[Path]) -> DrivingSequence:
    layout, per_frame = None, []
    for file in files:
        data = read_npz(file)
        this = _layout_of(file, data)
        if layout is not None and this != layout:
            raise file_error(file, f"is a {LAYOUTS[this][0]} file among {LAYOUTS[layout][0]} ones")
        layout = this
        per_frame.append(_fields(file, layout, data))
    fields = {}
    for key in per_frame[0]:
        widths = {f[key].shape[1] for f in per_frame}
        if len(widths) != 1 or any(key not in f for f in per_frame):
            raise file_error(root, f"'{key}' differs in size or presence between its frame files")
        fields[key] = np.concatenate([f[key] for f in per_frame])
    return _sequence(root, layout, fields)
