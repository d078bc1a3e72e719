"""Parsers never crash: every reader of a user file is fed empty, truncated, bit-flipped, random and
type-swapped versions of a valid file and must either accept it or raise `AgoraError` (one line);
any other exception is a traceback a user would see. A few hundred files in all, seeded."""

from __future__ import annotations

import io
import json
import shutil
import warnings
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import torch

from agora_core.errors import AgoraError
from test_export_fixtures import tiny_generator, write_random_agora_m, write_tiny_checkpoint
from test_train_fixtures import cached_build_head, write_tiny_dataset
from user_file_readers import READERS

SWAPS = [None, True, -1, 1.5e300, "x", [], [1, "a"], {}, {"a": None}]  # JSON values of every type


def byte_mutations(data: bytes, seed: int) -> list[bytes]:
    """Empty, truncated at several points, bit-flipped, random and zero-filled versions of `data`."""
    rng = np.random.default_rng(seed)
    out = [b"", data[:1], data[:16], data[: len(data) // 2], data[:-1], b"\0" * len(data),
           rng.integers(0, 256, 64, dtype=np.uint8).tobytes(), rng.integers(0, 256, len(data), dtype=np.uint8).tobytes()]
    for _ in range(4):  # a few flipped bytes anywhere (headers included)
        flipped = bytearray(data)
        for i in rng.integers(0, max(len(data), 1), 8):
            if flipped:
                flipped[i] ^= 0xFF
        out.append(bytes(flipped))
    for cut in rng.integers(1, max(len(data), 2), 3):
        out.append(data[:cut])
    return out


def json_mutations(doc: dict) -> list[object]:
    """Each top-level field replaced by each JSON type, or removed; plus non-dict documents."""
    out: list[object] = [[], "x", 3, None, [doc]]
    for key in doc:
        out.append({k: v for k, v in doc.items() if k != key})
        out.extend({**doc, key: swap} for swap in SWAPS)
    return out


def torch_mutations(doc: dict) -> list[object]:
    """`torch.save`-able documents of the wrong types (what a weights_only load can return)."""
    out: list[object] = [[], torch.zeros(3), {"format": 3}, "text", 7]
    for key in doc:
        out.append({k: v for k, v in doc.items() if k != key})
        out.extend({**doc, key: swap} for swap in (None, "x", 1.5, [1, 2], {}, torch.zeros(2, 2)))
    return out


def _run(read: Callable[[Path], object], path: Path, what: str, failures: list[str]) -> None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            read(path)
    except AgoraError as exc:
        if "\n" in str(exc):
            failures.append(f"{what}: multi-line AgoraError {str(exc)[:200]!r}")
    except Exception as exc:  # noqa: BLE001 - the point: anything else is a crash
        failures.append(f"{what}: {type(exc).__name__}: {str(exc)[:200]}")


def fuzz_bytes(read: Callable[[Path], object], valid: Path, tmp: Path, seed: int = 0) -> list[str]:
    failures: list[str] = []
    data = valid.read_bytes()
    target = tmp / f"fuzz_{valid.name}"
    for i, blob in enumerate(byte_mutations(data, seed)):
        target.write_bytes(blob)
        _run(read, target, f"byte mutation {i} ({len(blob)} bytes)", failures)
    return failures


# --- the readers and a valid file for each ---------------------------------------------------------

@pytest.fixture(scope="module")
def valid(tmp_path_factory, fixtures_dir) -> dict[str, Path]:
    from agora_core.gaussians import write_ply, write_splat
    from agora_core.gaussians.gaussian_set import GaussianSet
    from agora_core.gaussians.quaternions import normalize_quat
    from agora_core.invert.avatar_file import FRAME_FIELDS, NEUTRAL_KEYS, AvatarFile
    from agora_core.reenact.driving import DrivingSequence

    root = tmp_path_factory.mktemp("valid")
    G, config = tiny_generator()
    files = {"checkpoint": write_tiny_checkpoint(root / "run", G, config)}
    z = lambda *s: torch.zeros(*s)  # noqa: E731
    files["avatar"] = AvatarFile(generator={"w": z(2, 2)}, generator_config={}, head_config={}, head_model="demo",
                                 resolution=16, w=z(1, 4), shape=z(1, 3), frames={k: z(1, 3) for k in FRAME_FIELDS},
                                 crops=torch.zeros(1, 16, 16, 3, dtype=torch.uint8),
                                 neutral={k: z(1, 2, 3) for k in NEUTRAL_KEYS}, mapping_camera=z(25)
                                 ).save(root / "avatar.pt")
    files["basis"], files["mlp"] = write_random_agora_m(root, num_gaussians=6, w_dim=4, expr_dim=5)
    seq = DrivingSequence(np.zeros((3, 50), np.float32), *(np.zeros((3, d), np.float32) for d in (3, 2, 3, 3)))
    files["driving.npz"] = seq.save(root / "drive.npz")
    files["driving.json"] = seq.save(root / "driving_sequence.json")
    files["dataset"] = write_tiny_dataset(root / "data", n=2, mirrored=True)
    files["config"] = root / "c.yaml"
    files["config"].write_text("resolution: 64\nloss:\n  r1_gamma: 2.0\noptim:\n  betas: [0.0, 0.99]\n")
    n = 5
    gs = GaussianSet(torch.randn(1, n, 3), torch.randn(1, n, 3) - 4, normalize_quat(torch.randn(1, n, 4)),
                     torch.randn(1, n, 4, 3), torch.rand(1, n) * 0.9 + 0.05)
    files["ply"] = write_ply(root / "a.ply", gs)
    files["splat"] = write_splat(root / "a.splat", gs)
    files["flame_pkl"] = fixtures_dir / "flame2020_schema_tiny.pkl"
    files["smirk"] = fixtures_dir / "smirk_em1_format_random.pt"
    files["eyelids"] = root / "eyelids.npy"
    np.save(files["eyelids"], np.zeros((4, 3, 2)))
    files["state_dict"] = root / "vgg16.pth"
    torch.save({"features.0.weight": torch.zeros(2, 2)}, files["state_dict"])
    return files


def _reader(name: str) -> Callable[[Path], object]:
    """Each user-file reader, as the CLI calls it (`user_file_readers.READERS`)."""
    special = {"flame_pkl": READERS["flame pickle"], "vgg": READERS["vgg16"]}
    if name in special:
        return special[name]
    return READERS["driving" if name.startswith("driving") else name]


BYTE_READERS = {  # reader -> its valid file
    "checkpoint": "checkpoint", "export source": "checkpoint", "avatar": "avatar", "basis": "basis", "mlp": "mlp",
    "driving.npz": "driving.npz", "driving.json": "driving.json", "config": "config", "ply": "ply",
    "splat": "splat", "flame_pkl": "flame_pkl", "eyelids": "eyelids", "vgg": "state_dict", "inception": "state_dict",
}


@pytest.mark.parametrize("reader", sorted(BYTE_READERS))
def test_readers_survive_damaged_bytes(valid, tmp_path, reader):
    failures = fuzz_bytes(_reader(reader), valid[BYTE_READERS[reader]], tmp_path)
    assert not failures, "\n".join(failures)


def test_smirk_reader_survives_damaged_bytes(valid, tmp_path):
    """The 15 MB SMIRK layout: truncations and a flipped header only (each load reads it all)."""
    data, failures = valid["smirk"].read_bytes(), []
    target = tmp_path / "SMIRK_em1.pt"
    for i, blob in enumerate([b"", data[:100], data[: len(data) // 2], data[:-10]]):
        target.write_bytes(blob)
        _run(_reader("smirk"), target, f"truncation {i}", failures)
    assert not failures, "\n".join(failures)


def test_dataset_reader_survives_damaged_index_and_flame_files(valid, tmp_path):
    from agora_core.data.format import read_dataset_index

    root = tmp_path / "data"
    shutil.copytree(valid["dataset"], root)
    failures: list[str] = []
    good_json, good_npz = (root / "dataset.json").read_bytes(), (root / "flame.npz").read_bytes()
    for i, blob in enumerate(byte_mutations(good_json, 1)):
        (root / "dataset.json").write_bytes(blob)
        _run(read_dataset_index, root, f"dataset.json byte mutation {i}", failures)
    doc = json.loads(good_json)
    for i, bad in enumerate(json_mutations(doc) + [{**doc, "labels": [[1, 2]] * len(doc["labels"])},
                                                    {**doc, "labels": [None] * len(doc["labels"])},
                                                    {**doc, "records": [None] * len(doc["records"])}]):
        (root / "dataset.json").write_text(json.dumps(bad))
        _run(read_dataset_index, root, f"dataset.json field swap {i}", failures)
    (root / "dataset.json").write_bytes(good_json)
    for i, blob in enumerate(byte_mutations(good_npz, 2)):
        (root / "flame.npz").write_bytes(blob)
        _run(read_dataset_index, root, f"flame.npz byte mutation {i}", failures)
    with np.load(io.BytesIO(good_npz)) as z:
        arrays = {k: z[k] for k in z.files}
    for i, (key, swap) in enumerate((k, s) for k in ("expression", "jaw") for s in
                                    (np.array("text"), np.zeros(0), np.zeros((2, 3, 4)), np.array([True, False]))):
        np.savez(root / "flame.npz", **{**arrays, key: swap})
        _run(read_dataset_index, root, f"flame.npz '{key}' swap {i}", failures)
    assert not failures, "\n".join(failures)


def test_driving_readers_survive_type_swapped_fields(valid, tmp_path):
    read = _reader("driving.json")
    failures: list[str] = []
    doc = json.loads(valid["driving.json"].read_text())
    path = tmp_path / "driving_sequence.json"
    for i, bad in enumerate(json_mutations(doc) + [{**doc, "frames": [[0.0] * 55, [0.0] * 54]},
                                                    {**doc, "frames": [["a"] * 55]}]):
        path.write_text(json.dumps(bad))
        _run(read, path, f"json swap {i}", failures)
    with np.load(valid["driving.npz"]) as z:
        arrays = {k: z[k] for k in z.files}
    path = tmp_path / "drive.npz"
    for key in arrays:
        for j, swap in enumerate((np.array("text"), np.zeros(0), np.zeros((2, 3, 4)), np.zeros((1, 1)), np.array([1, 2]))):
            np.savez(path, **{**arrays, key: swap})
            _run(read, path, f"npz '{key}' swap {j}", failures)
    assert not failures, "\n".join(failures)


TORCH_DOCS = ("checkpoint", "avatar")


@pytest.mark.parametrize("name", TORCH_DOCS)
def test_torch_file_readers_survive_documents_of_the_wrong_types(valid, tmp_path, monkeypatch, name):
    monkeypatch.setattr("agora_core.head.build.build_head", cached_build_head)  # build the demo head once
    read = _reader(name)
    failures: list[str] = []
    doc = torch.load(valid[name], weights_only=True)
    path = tmp_path / valid[name].name
    for i, bad in enumerate(torch_mutations(doc)):
        torch.save(bad, path)
        _run(read, path, f"document {i}", failures)
        if name == "checkpoint":
            _run(_reader("export source"), path, f"export source document {i}", failures)
    assert not failures, "\n".join(failures)


def test_config_reader_survives_type_swapped_fields(tmp_path):
    import yaml

    read = _reader("config")
    failures: list[str] = []
    doc = {"resolution": 64, "loss": {"r1_gamma": 2.0}, "optim": {"betas": [0.0, 0.99]}, "total_kimg": 10.0}
    path = tmp_path / "c.yaml"
    for i, bad in enumerate(json_mutations(doc) + [{"loss": {"r1_gamma": s}} for s in SWAPS]):
        path.write_text(yaml.safe_dump(bad))
        _run(read, path, f"yaml swap {i}", failures)
    assert not failures, "\n".join(failures)
