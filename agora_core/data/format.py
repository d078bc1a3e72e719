"""The dataset folder format: one writer, one reader, a version field.

```
DATASET/
  dataset.json     header + EG3D/GGHEAD-compatible "labels": [[file, [25 camera floats]], ...]
                   + per-record metadata (mirrored, source file)
  flame.npz        per-image FLAME parameters, row-aligned with "labels":
                   shape [N,S], expression [N,E], jaw [N,3], neck [N,3], eyes [N,6], eyelids [N,2];
                   optionally the same keys prefixed "mirrored_": the FLAME estimate of the
                   x-flipped image (used by the Dataset's xflip; the paper mirrors, then estimates)
  images/*.png     RGB, composited on white, all of one square resolution
```

FLAME parameters live in a side `.npz` rather than inside the JSON: FFHQ mirrored is 140K images
x ~360 floats, which as JSON text is ~0.5 GB and slow to parse; as npz it is ~200 MB and loads
in a second. The camera labels stay in JSON so EG3D/GGHEAD tools read the folder unchanged.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from agora_core.errors import ARCHIVE_ERRORS, AgoraError, check_finite, file_error
from agora_core.gaussians.files import atomic_write_bytes
from agora_core.head.flame_params import FIXED_DIMS as FLAME_FIXED_DIMS
from agora_core.head.flame_params import FLAME_KEYS

FORMAT_NAME = "agora-dataset"
FORMAT_VERSION = 1


@dataclass
class DatasetRecord:
    """One image of a dataset folder."""

    file: str  # path relative to the dataset folder, e.g. "images/00000012.png"
    camera: np.ndarray  # [25] EG3D label: cam2world 4x4 row-major, normalised intrinsics 3x3
    flame: dict[str, np.ndarray]  # FLAME_KEYS -> 1-D arrays
    mirrored: bool = False  # an x-flipped copy (camera mirrored, FLAME re-estimated on the flip)
    source: str = ""  # where the image came from (input file, or "synthetic:<identity>")


@dataclass
class DatasetHeader:
    head_model: str  # model_id of the head model the FLAME parameters belong to
    resolution: int  # square image side in pixels
    source: str  # "synthetic" or "prep-data"
    extra: dict = field(default_factory=dict)  # free-form provenance (seed, config, ...)


def read_run_state(path: Path) -> dict:
    """A JSON object a run keeps beside its output (prep-data's state, the synthetic settings);
    anything else is one line naming the file."""
    try:
        doc = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise file_error(path, "not valid JSON; delete the output folder and rerun") from None
    if not isinstance(doc, dict):
        raise file_error(path, "not a JSON object; delete the output folder and rerun")
    return doc


def _stack_flame(dicts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    out = {}
    for key in FLAME_KEYS:
        rows = [np.asarray(d[key], dtype=np.float32).reshape(-1) for d in dicts]
        arr = np.zeros((len(rows), max(len(r) for r in rows)), dtype=np.float32)
        for i, row in enumerate(rows):
            arr[i, : len(row)] = row
        out[key] = arr
    return out


def write_dataset_index(
    root: str | Path,
    header: DatasetHeader,
    records: list[DatasetRecord],
    mirrored_flame: list[dict[str, np.ndarray]] | None = None,
) -> None:
    """Write dataset.json and flame.npz for `records` (images must already be in place).

    Both files are written to temporary names and renamed, so a reader never sees a half file.
    """
    root = Path(root)
    if not records:
        raise AgoraError(f"{root}: no images to write")
    flame = _stack_flame([r.flame for r in records])
    if mirrored_flame is not None:
        assert len(mirrored_flame) == len(records)
        flame.update({f"mirrored_{k}": v for k, v in _stack_flame(mirrored_flame).items()})
    tmp_npz = root / "flame.npz.tmp.npz"
    np.savez(tmp_npz, **flame)
    os.replace(tmp_npz, root / "flame.npz")
    doc = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "head_model": header.head_model,
        "resolution": int(header.resolution),
        "source": header.source,
        "num_images": len(records),
        "extra": header.extra,
        "labels": [[r.file, [float(x) for x in np.asarray(r.camera).reshape(25)]] for r in records],
        "records": [{"file": r.file, "mirrored": bool(r.mirrored), "source": r.source} for r in records],
    }
    atomic_write_bytes(root / "dataset.json", json.dumps(doc).encode())


@dataclass
class DatasetIndex:
    """What the reader returns: header, per-image files/cameras/flags, FLAME arrays."""

    root: Path
    header: DatasetHeader
    files: list[str]
    cameras: np.ndarray  # [N, 25]
    mirrored: np.ndarray  # [N] bool
    sources: list[str]
    flame: dict[str, np.ndarray]  # FLAME_KEYS -> [N, D]
    mirrored_flame: dict[str, np.ndarray] | None = None  # FLAME of the x-flipped images, if stored

    def __len__(self) -> int:
        return len(self.files)

    def record(self, i: int) -> DatasetRecord:
        return DatasetRecord(
            file=self.files[i],
            camera=self.cameras[i],
            flame={k: v[i] for k, v in self.flame.items()},
            mirrored=bool(self.mirrored[i]),
            source=self.sources[i],
        )


def _check_index_structure(meta_path: Path, doc: object) -> None:
    """One line naming the field when dataset.json is not shaped as `write_dataset_index` writes it."""
    if not isinstance(doc, dict):
        raise AgoraError(f"{meta_path}: not an agora dataset (a JSON object is expected)")
    if not isinstance(doc.get("format"), str) or doc["format"] != FORMAT_NAME:
        raise AgoraError(f"{meta_path}: not an agora dataset (format={doc.get('format')!r})")
    if type(doc.get("format_version")) is not int or doc["format_version"] != FORMAT_VERSION:
        raise AgoraError(f"{meta_path}: format_version {doc.get('format_version')!r} not supported (this agora reads {FORMAT_VERSION})")
    labels, records = doc.get("labels"), doc.get("records")
    if not isinstance(labels, list) or not all(isinstance(lab, list) and len(lab) == 2 and isinstance(lab[0], str)
                                               for lab in labels):
        raise AgoraError(f"{meta_path}: 'labels' must be a list of [file name, 25 camera floats]")
    if not isinstance(records, list) or not all(isinstance(r, dict) and isinstance(r.get("mirrored", False), bool)
                                                and isinstance(r.get("source", ""), str) for r in records):
        raise AgoraError(f"{meta_path}: 'records' must be a list of objects (mirrored: bool, source: str)")
    for key, kind in (("num_images", int), ("resolution", int), ("head_model", str), ("source", str), ("extra", dict)):
        value = doc.get(key)
        required = key in ("num_images", "resolution")
        if (value is None and required) or (value is not None and (type(value) is not kind)):
            raise AgoraError(f"{meta_path}: '{key}' must be {'an integer' if kind is int else f'a {kind.__name__}'}, "
                             f"got {value!r}")
    if doc["resolution"] < 1:
        raise AgoraError(f"{meta_path}: 'resolution' must be positive, got {doc['resolution']}")


def read_dataset_index(root: str | Path) -> DatasetIndex:
    """Read and validate a dataset folder's index. Errors name the file and the problem."""
    root = Path(root)
    meta_path = root / "dataset.json"
    if not root.is_dir():
        raise AgoraError(f"{root}: dataset folder not found")
    if not meta_path.is_file():
        raise AgoraError(f"{meta_path}: missing; make a dataset with `agora prep-data` (or --synthetic N)")
    try:
        doc = json.loads(meta_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise AgoraError(f"{meta_path}: not valid JSON ({exc})") from None
    _check_index_structure(meta_path, doc)
    labels = doc["labels"]
    n = len(labels)
    if n == 0 or n != doc.get("num_images") or len(doc["records"]) != n:
        raise AgoraError(f"{meta_path}: inconsistent counts (labels {n}, num_images {doc.get('num_images')}, records {len(doc['records'])})")
    try:
        cameras = np.asarray([lab[1] for lab in labels], dtype=np.float32)
    except (TypeError, ValueError):
        cameras = np.zeros((0,), np.float32)
    if cameras.shape != (n, 25) or not np.isfinite(cameras).all():
        raise AgoraError(f"{meta_path}: camera labels must be 25 finite floats each")
    npz_path = root / "flame.npz"
    if not npz_path.is_file():
        raise AgoraError(f"{npz_path}: missing (FLAME parameters of the dataset)")
    try:
        with np.load(npz_path, allow_pickle=False) as z:
            flame = {k: np.asarray(z[k], dtype=np.float32) for k in FLAME_KEYS}
            has_mirrored = all(f"mirrored_{k}" in z for k in FLAME_KEYS)
            mirrored_flame = {k: np.asarray(z[f"mirrored_{k}"], dtype=np.float32) for k in FLAME_KEYS} if has_mirrored else None
    except (KeyError, *ARCHIVE_ERRORS) as exc:  # truncated/foreign files
        raise AgoraError(f"{npz_path}: unreadable or incomplete ({type(exc).__name__}: {exc})") from None
    for key, arr in list(flame.items()) + [(f"mirrored_{k}", v) for k, v in (mirrored_flame or {}).items()]:
        key = key.removeprefix("mirrored_")
        if arr.ndim != 2 or arr.shape[0] != n:
            raise AgoraError(f"{npz_path}: '{key}' has shape {arr.shape}, expected ({n}, D)")
        if key in FLAME_FIXED_DIMS and arr.shape[1] != FLAME_FIXED_DIMS[key]:
            raise AgoraError(f"{npz_path}: '{key}' has {arr.shape[1]} columns, expected {FLAME_FIXED_DIMS[key]}")
    check_finite({**flame, **{f"mirrored_{k}": v for k, v in (mirrored_flame or {}).items()}}, npz_path, "FLAME parameter")
    header = DatasetHeader(
        head_model=str(doc.get("head_model", "unknown")),
        resolution=int(doc["resolution"]),
        source=str(doc.get("source", "")),
        extra=doc.get("extra", {}),
    )
    return DatasetIndex(
        root=root,
        header=header,
        files=[lab[0] for lab in labels],
        cameras=cameras,
        mirrored=np.asarray([r.get("mirrored", False) for r in doc["records"]], dtype=bool),
        sources=[r.get("source", "") for r in doc["records"]],
        flame=flame,
        mirrored_flame=mirrored_flame,
    )
