"""prep-data (agora_core.data.prep*): real photos -> dataset folder, rejections, mirroring, resume.

Models: the random-weight SMIRK fixture (real checkpoint format) and a toy MODNet-format ONNX
(tests/face_helpers.py); detection: OpenCV's Haar cascade on skimage's astronaut photo. Images
are written at 64² to keep MODNet/PNG work small.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from face_helpers import one_thread_per_module  # noqa: F401  (autouse)
from face_helpers import SMIRK_FIXTURE, astronaut, smirk_estimator, write_mean_sigmoid_onnx

from agora_core.data.format import DatasetHeader, DatasetRecord, read_dataset_index, write_dataset_index
from agora_core.data.prep import PrepConfig, prepare_dataset, prepare_dataset_with
from agora_core.data.prep_inputs import RejectReason, decode_photo, find_inputs
from agora_core.data.prep_records import RECORDS_FILE, read_jsonl
from agora_core.data.torch_dataset import HeadImageDataset
from agora_core.errors import AgoraError
from agora_core.face import HaarDetector, ModnetMatter, analyse_face

REPO = Path(__file__).resolve().parents[1]
RES = 64


def _write_rgb(path: Path, image: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    return path


def _resized(size: int) -> np.ndarray:
    return cv2.resize(astronaut(), (size, size), interpolation=cv2.INTER_AREA)


def _no_temp_files(root: Path) -> bool:
    return not [p for p in root.rglob("*") if ".tmp" in p.name]


@pytest.fixture(scope="module")
def modnet_path(tmp_path_factory) -> Path:
    return write_mean_sigmoid_onnx(tmp_path_factory.mktemp("modnet") / "toy_modnet.onnx")


@pytest.fixture(scope="module")
def photo_dir(tmp_path_factory) -> Path:
    """Two good photos (jpg; png in a subfolder) and one of each kind of bad input."""
    root = tmp_path_factory.mktemp("photos")
    jpg = _write_rgb(root / "astronaut.jpg", astronaut())
    _write_rgb(root / "sub" / "astronaut.PNG", astronaut())
    data = jpg.read_bytes()
    (root / "broken.jpg").write_bytes(data[: len(data) // 2])  # truncated mid-scan
    (root / "notes.jpg").write_text("a text file renamed .jpg\n")
    _write_rgb(root / "tiny.png", np.full((10, 10, 3), 128, np.uint8))
    _write_rgb(root / "blank.png", np.full((128, 128, 3), 255, np.uint8))
    _write_rgb(root / "small_face.png", _resized(128))  # face found, but its SMIRK crop is ~33 px
    (root / "readme.txt").write_text("not a photo suffix: ignored\n")
    return root


@pytest.fixture(scope="module")
def prepared(photo_dir, modnet_path, tmp_path_factory):
    out = tmp_path_factory.mktemp("prepared") / "dataset"
    config = PrepConfig(resolution=RES, mirror=True, workers=2, device="cpu")
    summary = prepare_dataset(photo_dir, out, config, smirk=SMIRK_FIXTURE, modnet=modnet_path, detector=HaarDetector(), progress=False)
    return summary, out


def test_good_photos_become_records_and_bad_ones_are_rejected_with_reasons(prepared):
    summary, out = prepared
    rejected = {e["input"]: e["reason"] for e in read_jsonl(out / "rejected.jsonl")}
    assert rejected == {
        "blank.png": RejectReason.NO_FACE,
        "broken.jpg": RejectReason.CORRUPT,
        "notes.jpg": RejectReason.NOT_AN_IMAGE,
        "small_face.png": RejectReason.FACE_TOO_SMALL,
        "tiny.png": RejectReason.TOO_SMALL,
    }
    assert (summary.found, summary.resumed, summary.processed, summary.written) == (7, 0, 7, 4)
    assert summary.rejected == {"corrupt": 1, "face_too_small": 1, "no_face": 1, "not_an_image": 1, "too_small": 1}
    assert summary.dataset_images == 4 and summary.images_per_s > 0
    entries = read_jsonl(out / RECORDS_FILE)
    assert [(e["input"], e["number"]) for e in entries] == [("astronaut.jpg", 0), ("sub/astronaut.PNG", 1)]
    index = read_dataset_index(out)
    assert index.header.head_model == "flame2020" and index.header.resolution == RES
    assert index.header.source == "prep-data" and index.header.extra["mirror"] is True
    assert index.files == ["images/00000000.png", "images/00000000_mirror.png", "images/00000001.png", "images/00000001_mirror.png"]
    assert index.mirrored.tolist() == [False, True, False, True]
    assert index.sources == ["astronaut.jpg", "astronaut.jpg", "sub/astronaut.PNG", "sub/astronaut.PNG"]
    assert sorted(p.name for p in (out / "images").iterdir()) == [Path(f).name for f in index.files]
    assert _no_temp_files(out)


def test_stored_values_are_the_analysis_of_the_photo_and_of_its_flip(prepared, photo_dir, modnet_path):
    """Row 0 holds analyse_face(photo), row 1 analyse_face(flipped photo); each row's mirrored_*
    FLAME is the other's (float32 values survive the JSON journal exactly)."""
    _, out = prepared
    index = read_dataset_index(out)
    photo = decode_photo(photo_dir / "astronaut.jpg")
    kwargs = dict(detector=HaarDetector(), matter=ModnetMatter(modnet_path), estimator=smirk_estimator(), size=RES)
    for row, image in ((0, photo), (1, np.ascontiguousarray(photo[:, ::-1]))):
        expected = analyse_face(image, **kwargs)
        for key in ("shape", "expression", "jaw", "eyelids", "neck", "eyes"):
            np.testing.assert_array_equal(index.flame[key][row], expected.flame[key])
            np.testing.assert_array_equal(index.mirrored_flame[key][1 - row], expected.flame[key])
        np.testing.assert_array_equal(index.cameras[row], expected.camera_label)
        stored = cv2.cvtColor(cv2.imread(str(out / index.files[row])), cv2.COLOR_BGR2RGB)
        np.testing.assert_array_equal(stored, expected.image)  # PNG is lossless


def test_dataset_class_reads_the_output_with_xflip(prepared):
    _, out = prepared
    dataset = HeadImageDataset(out, xflip=True)
    assert len(dataset) == 8
    item, flipped = dataset[0], dataset[4]
    assert item["image"].shape == (3, RES, RES) and not item["flipped"] and flipped["flipped"]
    assert (flipped["image"] == item["image"].flip(-1)).all()
    index = dataset.index
    assert (flipped["expression"].numpy() == index.mirrored_flame["expression"][0]).all()
    assert (flipped["expression"].numpy() == index.flame["expression"][1]).all()  # = the mirror record's


def test_resume_drops_a_torn_last_line_and_finishes_with_one_record_per_photo(tmp_path, modnet_path):
    photos = tmp_path / "photos"
    for i, size in enumerate((256, 288, 320)):
        _write_rgb(photos / f"p{i}.jpg", _resized(size))
    out = tmp_path / "out"
    models = dict(estimator=smirk_estimator(), matter=ModnetMatter(modnet_path), detector=HaarDetector(), progress=False)
    first = prepare_dataset_with(photos, out, PrepConfig(resolution=RES, limit=2, workers=0), **models)
    assert (first.processed, first.dataset_images) == (2, 2)
    # A run killed while appending p2's line: its image renamed in place, a torn line, a temp file.
    line = (out / RECORDS_FILE).read_bytes().splitlines()[0]
    torn = line.replace(b'"p0.jpg","number":0', b'"p2.jpg","number":2')[: len(line) // 2]
    with open(out / RECORDS_FILE, "ab") as f:
        f.write(torn)
    (out / "images" / "00000002.png").write_bytes(b"stale")
    (out / "images" / "00000003.png.tmp").write_bytes(b"half")
    assert len(read_jsonl(out / RECORDS_FILE)) == 2  # the torn line is dropped ...
    assert (out / RECORDS_FILE).read_bytes().endswith(b"}\n")  # ... and cut off the file

    second = prepare_dataset_with(photos, out, PrepConfig(resolution=RES, workers=2), **models)
    assert (second.found, second.resumed, second.processed, second.written) == (3, 2, 1, 1)
    entries = read_jsonl(out / RECORDS_FILE)
    assert [(e["input"], e["number"]) for e in entries] == [("p0.jpg", 0), ("p1.jpg", 1), ("p2.jpg", 2)]
    assert cv2.imread(str(out / "images" / "00000002.png")).shape == (RES, RES, 3)  # rewritten
    assert _no_temp_files(out) and read_dataset_index(out).sources == ["p0.jpg", "p1.jpg", "p2.jpg"]
    third = prepare_dataset_with(photos, out, PrepConfig(resolution=RES), **models)  # nothing left
    assert (third.processed, third.dataset_images) == (0, 3)


def test_a_damaged_journal_line_before_the_end_is_an_error(tmp_path):
    path = tmp_path / RECORDS_FILE
    path.write_bytes(b'{"input": "a.jpg"}\nnot json\n{"input": "b.jpg"}\n')
    with pytest.raises(AgoraError, match=r"records\.jsonl: line 2 is not a prep-data entry"):
        read_jsonl(path)


def test_kill_and_resume_in_a_subprocess(tmp_path, modnet_path):
    photos = tmp_path / "photos"
    names = [f"face_{size}.jpg" for size in range(280, 520, 40)]  # 6 photos
    for name in names:
        _write_rgb(photos / name, _resized(int(name[5:8])))
    out = tmp_path / "out"
    command = [
        sys.executable, "-c", "import typer; from agora_cli.prep_data import prep_data; typer.run(prep_data)",
        str(photos), str(out), "--smirk", str(SMIRK_FIXTURE), "--modnet", str(modnet_path),
        "--device", "cpu", "--resolution", str(RES), "--mirror", "--workers", "2",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    records = out / RECORDS_FILE
    deadline = time.monotonic() + 60
    while proc.poll() is None and time.monotonic() < deadline:
        if records.exists() and b"\n" in records.read_bytes():
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.005)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()[-2000:]
    done_before = len(read_jsonl(records))
    assert 1 <= done_before < len(names) and not (out / "dataset.json").exists()

    resumed = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    entries = read_jsonl(records)
    assert sorted(e["input"] for e in entries) == names  # exactly one record per photo
    assert [e["number"] for e in entries] == list(range(len(names)))
    assert _no_temp_files(out) and not (out / "rejected.jsonl").exists()
    index = read_dataset_index(out)
    assert len(index) == 2 * len(names) and index.mirrored_flame is not None
    assert sorted(p.name for p in (out / "images").iterdir()) == sorted(Path(f).name for f in index.files)
    assert len(HeadImageDataset(out, xflip=True)) == 4 * len(names)


def test_aligned_inputs_skip_detection_and_must_be_square(tmp_path, modnet_path):
    photos = tmp_path / "photos"
    _write_rgb(photos / "aligned.png", _resized(256))
    _write_rgb(photos / "wide.png", np.full((128, 256, 3), 200, np.uint8))
    out = tmp_path / "out"
    summary = prepare_dataset_with(
        photos, out, PrepConfig(resolution=RES, aligned=True),
        estimator=smirk_estimator(), matter=ModnetMatter(modnet_path), detector=None, progress=False,
    )
    assert summary.rejected == {"not_square": 1} and summary.dataset_images == 1
    assert read_dataset_index(out).header.extra["detector"] is None


def test_output_folder_checks_come_before_any_work(tmp_path, photo_dir, modnet_path):
    assets = dict(smirk=SMIRK_FIXTURE, modnet=modnet_path, progress=False)
    config = PrepConfig(resolution=RES)
    with pytest.raises(AgoraError, match=r"nowhere: input folder not found"):
        prepare_dataset(tmp_path / "nowhere", tmp_path / "o1", config, **assets)
    other = tmp_path / "demo"
    (other / "images").mkdir(parents=True)
    _write_rgb(other / "images" / "0.png", np.zeros((RES, RES, 3), np.uint8))
    flame = {"shape": np.zeros(4), "expression": np.zeros(2), "jaw": np.zeros(3), "neck": np.zeros(3), "eyes": np.zeros(6), "eyelids": np.zeros(2)}
    write_dataset_index(other, DatasetHeader("demo-head-v1", RES, "synthetic"), [DatasetRecord("images/0.png", np.eye(5).reshape(25), flame)])
    with pytest.raises(AgoraError, match=r"holds a dataset of head model 'demo-head-v1' at 64 px"):
        prepare_dataset(photo_dir, other, config, **assets)
    clutter = tmp_path / "clutter"
    clutter.mkdir()
    (clutter / "notes.txt").write_text("x")
    with pytest.raises(AgoraError, match=r"not empty and is not a prep-data output"):
        prepare_dataset(photo_dir, clutter, config, **assets)
    assert sorted(p.name for p in clutter.iterdir()) == ["notes.txt"]


def test_a_resumed_run_must_keep_its_settings(prepared, photo_dir, modnet_path):
    _, out = prepared
    for config, hint in ((PrepConfig(resolution=128, mirror=True), "pass --resolution 64"), (PrepConfig(resolution=RES), "pass --mirror")):
        with pytest.raises(AgoraError, match=hint):
            prepare_dataset(photo_dir, out, config, smirk=SMIRK_FIXTURE, modnet=modnet_path, progress=False)


def test_inputs_are_found_recursively_sorted_and_outside_out(tmp_path):
    for name in ("b.JPEG", "a/z.webp", "a/y.png", "c.txt", "out/images/00000000.png"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    assert find_inputs(tmp_path, exclude=tmp_path / "out") == ["a/y.png", "a/z.webp", "b.JPEG"]


@pytest.mark.parametrize("suffix", [".png", ".webp"])
def test_decode_tells_whole_from_truncated_files(tmp_path, suffix):
    image = _resized(96)
    path = _write_rgb(tmp_path / f"face{suffix}", image)
    decoded = decode_photo(path)
    assert isinstance(decoded, np.ndarray) and decoded.shape == (96, 96, 3)
    if suffix == ".png":
        np.testing.assert_array_equal(decoded, image)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 2 // 3])
    assert decode_photo(path).reason == RejectReason.CORRUPT


def test_rejection_entries_are_json_lines(prepared):
    _, out = prepared
    for line in (out / "rejected.jsonl").read_text().splitlines():
        entry = json.loads(line)
        assert set(entry) == {"input", "reason", "detail"} and entry["detail"]
