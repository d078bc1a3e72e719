"""prep-data's resumable journal: what a run has done, kept so a killed run can continue.

```
OUT/
  prep.json        the run's resolved settings (head model, resolution, mirror, aligned, input
                   folder); a restart with other settings is refused
  records.jsonl    one JSON line per input that became dataset images (its images, cameras, FLAME)
  rejected.jsonl   one JSON line per input that was rejected, with a reason
  images/*.png     written to ``<name>.tmp``, fsynced and renamed *before* their line is appended
  dataset.json, flame.npz   consolidated from records.jsonl at the end (`write_dataset_index`)
```

Every line is written with one ``write`` and then flushed and fsynced, so a killed run leaves at
most one torn (unterminated) last line; reading drops it and truncates the file back to the last
complete line before anything is appended. An input is done once its line is complete; a torn or
missing line means the input is processed again, and since image names come from the record
number (the count of complete lines), its images are rewritten under the same names.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import cv2
import numpy as np

from agora_core.data.format import FLAME_KEYS, DatasetHeader, DatasetRecord, read_run_state, write_dataset_index
from agora_core.errors import file_error

STATE_FILE = "prep.json"
RECORDS_FILE = "records.jsonl"
REJECTED_FILE = "rejected.jsonl"
IMAGES_DIR = "images"
STATE_FORMAT = "agora-prep-data"
STATE_VERSION = 1
TMP_SUFFIX = ".tmp"
# Names prep-data gives dataset images; only these are ever removed as orphans.
_IMAGE_NAME = re.compile(r"^\d{8}(_mirror)?\.png$")
# The settings a resumed run must share with the run that started OUT, and the flag naming each.
STATE_FLAGS = {"head_model": None, "resolution": "--resolution", "mirror": "--mirror", "aligned": "--aligned", "input_dir": "DIR"}


def read_jsonl(path: Path) -> list[dict]:
    """The complete lines of a journal file. A torn (unterminated) last line is dropped and the
    file truncated to the last complete line, so the next append starts on a fresh line; a complete
    line that is not JSON means the file was edited or damaged otherwise (`AgoraError`)."""
    if not path.exists():
        return []
    data = path.read_bytes()
    end = data.rfind(b"\n") + 1  # bytes up to and including the last newline
    if end < len(data):
        with open(path, "r+b") as f:
            f.truncate(end)
            f.flush()
            os.fsync(f.fileno())
    entries = []
    for number, line in enumerate(data[:end].splitlines(), start=1):
        try:
            entry = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError):
            entry = None
        if not isinstance(entry, dict) or "input" not in entry:
            raise file_error(path, f"line {number} is not a prep-data entry; delete the output folder and rerun")
        entries.append(entry)
    return entries


class PrepJournal:
    """records.jsonl and rejected.jsonl of an output folder, opened for appending.

    ``records``: complete record entries (first entry per input kept); ``rejections`` likewise;
    ``done``: inputs that need no more work; ``next_number``: the record number of the next entry.
    """

    def __init__(self, out: Path):
        self.out = Path(out)
        self.records = _first_per_input(read_jsonl(self.out / RECORDS_FILE))
        self.rejections = _first_per_input(read_jsonl(self.out / REJECTED_FILE))
        self.done = {e["input"] for e in self.records} | {e["input"] for e in self.rejections}
        self.next_number = 1 + max((int(e["number"]) for e in self.records), default=-1)
        self._files = {}

    def append_record(self, entry: dict) -> None:
        """Append one input's record entry (its images must already be in place)."""
        assert entry["number"] == self.next_number and entry["input"] not in self.done, entry["input"]
        self._append(RECORDS_FILE, entry)
        self.records.append(entry)
        self.done.add(entry["input"])
        self.next_number += 1

    def append_rejection(self, input_name: str, reason: str, detail: str) -> None:
        entry = {"input": input_name, "reason": reason, "detail": detail}
        self._append(REJECTED_FILE, entry)
        self.rejections.append(entry)
        self.done.add(input_name)

    def _append(self, name: str, entry: dict) -> None:
        if name not in self._files:
            self._files[name] = open(self.out / name, "ab")
        f = self._files[name]
        f.write((json.dumps(entry, separators=(",", ":")) + "\n").encode())
        f.flush()
        os.fsync(f.fileno())

    def close(self) -> None:
        for f in self._files.values():
            f.close()
        self._files.clear()

    def __enter__(self) -> "PrepJournal":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _first_per_input(entries: list[dict]) -> list[dict]:
    seen, kept = set(), []
    for entry in entries:
        if entry["input"] not in seen:
            seen.add(entry["input"])
            kept.append(entry)
    return kept


def check_output_folder(out: Path, state: dict) -> None:
    """Check, writing nothing, that OUT is new, empty, or a prep-data run with the same settings.

    Refuses (one-line `AgoraError`) an OUT holding a dataset of another head model or resolution,
    a dataset not made by prep-data, a prep-data run with other settings, or unrelated files.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise file_error(out, "exists and is not a folder; choose another OUT")
    state_path = out / STATE_FILE
    if state_path.is_file():
        before = read_run_state(state_path)
        if before.get("format") != STATE_FORMAT or before.get("format_version") != STATE_VERSION:
            raise file_error(state_path, "not a prep-data state file of this version; choose another OUT")
        for key, flag in STATE_FLAGS.items():
            if before.get(key) != state[key]:
                raise file_error(
                    out,
                    f"was started with {key}={before.get(key)!r} (this run: {state[key]!r}); "
                    f"{_resume_hint(flag, before.get(key))} to resume, or choose another OUT",
                )
        return
    dataset_json = out / "dataset.json"
    if dataset_json.is_file():
        try:
            doc = json.loads(dataset_json.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError):
            doc = {}
        head, res = doc.get("head_model"), doc.get("resolution")
        if head != state["head_model"] or res != state["resolution"]:
            raise file_error(
                out,
                f"holds a dataset of head model {head!r} at {res} px (this run: {state['head_model']!r} at "
                f"{state['resolution']} px); choose another OUT",
            )
        raise file_error(out, "holds a dataset not made by prep-data (no prep.json); choose another OUT")
    if out.is_dir() and any(out.iterdir()):
        raise file_error(out, "exists, is not empty and is not a prep-data output; choose another OUT")


def _resume_hint(flag: str | None, before) -> str:
    if flag is None:
        return "use the same head model"
    if isinstance(before, bool):
        return f"{'pass' if before else 'drop'} {flag}"
    return f"pass {flag} {before}" if flag.startswith("--") else f"pass {before} as {flag}"


def start_output_folder(out: Path, state: dict) -> None:
    """`check_output_folder`, then create OUT/images and (for a new OUT) write prep.json."""
    out = Path(out)
    check_output_folder(out, state)
    (out / IMAGES_DIR).mkdir(parents=True, exist_ok=True)
    state_path = out / STATE_FILE
    if not state_path.is_file():
        doc = {"format": STATE_FORMAT, "format_version": STATE_VERSION, **state}
        tmp = state_path.with_name(state_path.name + TMP_SUFFIX)
        tmp.write_text(json.dumps(doc, indent=2))
        os.replace(tmp, state_path)


def write_png_atomic(path: Path, image_rgb: np.ndarray) -> None:
    """Write RGB uint8 [H, W, 3] as PNG: to ``path.tmp``, fsync, rename (never a half image)."""
    assert image_rgb.dtype == np.uint8 and image_rgb.ndim == 3 and image_rgb.shape[2] == 3, image_rgb.shape
    ok, buf = cv2.imencode(".png", cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise file_error(path, "PNG encoding failed")
    tmp = path.with_name(path.name + TMP_SUFFIX)
    with open(tmp, "wb") as f:
        f.write(buf.tobytes())
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def remove_temp_files(out: Path) -> None:
    """Remove what a killed run left half-written: ``*.tmp`` in OUT and OUT/images, and
    write_dataset_index's ``flame.npz.tmp.npz``."""
    out = Path(out)
    for folder in (out, out / IMAGES_DIR):
        if folder.is_dir():
            for path in folder.iterdir():
                if path.is_file() and (path.name.endswith(TMP_SUFFIX) or path.name.endswith(".tmp.npz")):
                    path.unlink()


def remove_orphan_images(out: Path, records: list[dict]) -> int:
    """Delete prep-data-named images no record refers to (written by a run killed before their
    line was appended, whose input was not processed again); returns how many."""
    referenced = {Path(r["file"]).name for entry in records for r in entry["images"]}
    removed = 0
    for path in (Path(out) / IMAGES_DIR).glob("*.png"):
        if _IMAGE_NAME.match(path.name) and path.name not in referenced:
            path.unlink()
            removed += 1
    return removed


def float_list(values: np.ndarray) -> list[float]:
    """float32 values as JSON floats that read back to the same float32 (9 significant digits)."""
    return [float(f"{v:.9g}") for v in np.asarray(values, dtype=np.float32).reshape(-1).tolist()]


def image_entry(file: str, camera_label: np.ndarray, flame: dict[str, np.ndarray], mirrored: bool) -> dict:
    """One dataset image of a record entry: file, [25] camera label, FLAME dict (all keys), flag."""
    assert np.asarray(camera_label).shape == (25,), np.asarray(camera_label).shape
    return {
        "file": file,
        "camera": float_list(camera_label),
        "flame": {k: float_list(v) for k, v in flame.items()},
        "mirrored": bool(mirrored),
    }


def dataset_records(entries: list[dict], mirror: bool) -> tuple[list[DatasetRecord], list[dict] | None]:
    """Record entries -> `DatasetRecord`s in entry order, and with ``mirror`` the FLAME of each
    record's x-flipped image: an input's photo and its flip are each other's mirror, so the
    original's ``mirrored_*`` row is the flip's estimate and vice versa."""
    records, mirrored_flame = [], []
    for entry in entries:
        images = entry["images"]
        assert len(images) == (2 if mirror else 1), (entry["input"], len(images))
        flames = [{k: np.asarray(im["flame"][k], dtype=np.float32) for k in FLAME_KEYS} for im in images]
        for im, flame in zip(images, flames):
            records.append(
                DatasetRecord(
                    file=im["file"],
                    camera=np.asarray(im["camera"], dtype=np.float32),
                    flame=flame,
                    mirrored=bool(im["mirrored"]),
                    source=entry["input"],
                )
            )
        if mirror:
            mirrored_flame += [flames[1], flames[0]]
    return records, (mirrored_flame if mirror else None)


def consolidate(out: Path, header: DatasetHeader, entries: list[dict], mirror: bool) -> int:
    """Write dataset.json + flame.npz for all record entries; returns the dataset's image count
    (0: nothing written). Raises if an image a record names is missing."""
    if not entries:
        return 0
    records, mirrored_flame = dataset_records(entries, mirror)
    for record in records:
        if not (Path(out) / record.file).is_file():
            raise file_error(Path(out) / record.file, "listed in records.jsonl but missing; delete the output folder and rerun")
    write_dataset_index(out, header, records, mirrored_flame)
    return len(records)


__all__ = [
    "IMAGES_DIR",
    "PrepJournal",
    "RECORDS_FILE",
    "REJECTED_FILE",
    "STATE_FILE",
    "check_output_folder",
    "consolidate",
    "dataset_records",
    "image_entry",
    "read_jsonl",
    "remove_orphan_images",
    "remove_temp_files",
    "start_output_folder",
    "write_png_atomic",
]
