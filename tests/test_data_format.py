"""Dataset folder format: writer/reader round trip, the torch Dataset, x-flip, bad folders."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch

from agora_core.data.format import DatasetHeader, DatasetRecord, read_dataset_index, write_dataset_index
from agora_core.data.torch_dataset import HeadImageDataset, mirror_camera_label
from agora_core.errors import AgoraError


def _random_flame(rng, s=20, e=10):
    return {
        "shape": rng.normal(size=s),
        "expression": rng.normal(size=e),
        "jaw": rng.normal(size=3) * 0.1,
        "neck": rng.normal(size=3) * 0.1,
        "eyes": np.zeros(6),
        "eyelids": rng.uniform(size=2),
    }


def _camera_label(rng):
    angle = rng.uniform(-0.5, 0.5)
    c, s = np.cos(angle), np.sin(angle)
    c2w = np.array([[c, 0, s, 2.7 * s], [0, 1, 0, 0], [-s, 0, c, 2.7 * c], [0, 0, 0, 1]])
    c2w[:3, 1:3] *= -1  # OpenCV: y down, z forward (towards the origin)
    k = np.array([[4.2647, 0, 0.5], [0, 4.2647, 0.5], [0, 0, 1]])
    return np.concatenate([c2w.reshape(-1), k.reshape(-1)])


def make_dataset(root, n=5, res=16, mirrored=False, seed=0):
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True)
    records = []
    for i in range(n):
        img = rng.integers(0, 255, size=(res, res, 3), dtype=np.uint8)
        name = f"images/{i:08d}.png"
        cv2.imwrite(str(root / name), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
        records.append(DatasetRecord(file=name, camera=_camera_label(rng), flame=_random_flame(rng), source=f"synthetic:{i}"))
    mirrored_flame = [_random_flame(rng) for _ in range(n)] if mirrored else None
    write_dataset_index(root, DatasetHeader("demo-head-v1", res, "synthetic", {"seed": seed}), records, mirrored_flame)
    return records, mirrored_flame


def test_round_trip(tmp_path):
    records, _ = make_dataset(tmp_path)
    index = read_dataset_index(tmp_path)
    assert len(index) == 5 and index.header.resolution == 16 and index.header.head_model == "demo-head-v1"
    for i, rec in enumerate(records):
        got = index.record(i)
        assert got.file == rec.file and got.source == rec.source
        np.testing.assert_allclose(got.camera, rec.camera, rtol=0, atol=1e-6)
        for key, value in rec.flame.items():
            np.testing.assert_allclose(got.flame[key], value, atol=1e-6)
    # EG3D/GGHEAD tools read the same labels
    doc = json.loads((tmp_path / "dataset.json").read_text())
    assert doc["labels"][0][0] == "images/00000000.png" and len(doc["labels"][0][1]) == 25
    assert not list(tmp_path.glob("*.tmp*")), "temporary files left behind"


def test_torch_dataset_items(tmp_path):
    make_dataset(tmp_path)
    ds = HeadImageDataset(tmp_path)
    item = ds[3]
    assert item["image"].shape == (3, 16, 16) and item["image"].dtype == torch.float32
    assert 0.0 <= item["image"].min() and item["image"].max() <= 1.0
    assert item["camera"].shape == (25,) and item["shape"].shape == (20,) and item["eyes"].shape == (6,)
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=2)))
    assert batch["image"].shape == (2, 3, 16, 16)


def test_xflip_needs_mirrored_estimates(tmp_path):
    make_dataset(tmp_path)
    with pytest.raises(AgoraError, match="mirror"):
        HeadImageDataset(tmp_path, xflip=True)


def test_xflip_flips_image_mirrors_camera_and_uses_mirrored_flame(tmp_path):
    records, mirrored = make_dataset(tmp_path, mirrored=True)
    ds = HeadImageDataset(tmp_path, xflip=True)
    assert len(ds) == 10
    plain, flipped = ds[1], ds[6]
    assert torch.equal(flipped["image"], plain["image"].flip(-1))
    np.testing.assert_allclose(flipped["camera"].numpy(), mirror_camera_label(plain["camera"].numpy()), atol=1e-6)
    np.testing.assert_allclose(flipped["expression"].numpy(), mirrored[1]["expression"], atol=1e-6)
    assert bool(flipped["flipped"]) and not bool(plain["flipped"])


def test_mirror_camera_label_is_an_involution_and_proper_rotation():
    rng = np.random.default_rng(1)
    label = _camera_label(rng)
    label[18] = 0.45  # off-centre principal point
    once = mirror_camera_label(label)
    np.testing.assert_allclose(mirror_camera_label(once), label, atol=1e-6)
    rot = once[:16].reshape(4, 4)[:3, :3]
    assert np.linalg.det(rot) == pytest.approx(1.0, abs=1e-5)
    assert once[18] == pytest.approx(0.55)
    # a world point and its mirror image project to mirrored pixels
    point = np.array([0.05, 0.02, 0.1, 1.0])
    def project(lab, p):
        c2w = lab[:16].reshape(4, 4); k = lab[16:].reshape(3, 3)
        pc = np.linalg.inv(c2w) @ p
        uv = k @ (pc[:3] / pc[2])
        return uv[:2]
    u, v = project(label, point)
    u2, v2 = project(once, point * np.array([-1, 1, 1, 1]))
    assert u2 == pytest.approx(1.0 - u, abs=1e-5) and v2 == pytest.approx(v, abs=1e-5)


@pytest.mark.parametrize("breakage,match", [
    ("no_json", "dataset.json: missing"),
    ("bad_json", "not valid JSON"),
    ("version", "format_version"),
    ("counts", "inconsistent counts"),
    ("no_npz", "flame.npz: missing"),
])
def test_bad_dataset_folders(tmp_path, breakage, match):
    make_dataset(tmp_path)
    meta = tmp_path / "dataset.json"
    doc = json.loads(meta.read_text())
    if breakage == "no_json":
        meta.unlink()
    elif breakage == "bad_json":
        meta.write_text("{not json")
    elif breakage == "version":
        doc["format_version"] = 99
        meta.write_text(json.dumps(doc))
    elif breakage == "counts":
        doc["num_images"] = 7
        meta.write_text(json.dumps(doc))
    elif breakage == "no_npz":
        (tmp_path / "flame.npz").unlink()
    with pytest.raises(AgoraError, match=match):
        read_dataset_index(tmp_path)


def test_unreadable_image_names_file(tmp_path):
    make_dataset(tmp_path)
    (tmp_path / "images" / "00000002.png").write_bytes(b"garbage")
    with pytest.raises(AgoraError, match="00000002.png"):
        HeadImageDataset(tmp_path)[2]
