"""The synthetic demo-head dataset: readable, labels consistent with the pixels, resumable."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from agora_core.data.format import read_dataset_index
from agora_core.data.synthetic import make_synthetic_dataset
from agora_core.data.torch_dataset import HeadImageDataset
from agora_core.errors import AgoraError
from agora_core.render import Camera


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    out = tmp_path_factory.mktemp("synthetic")
    return make_synthetic_dataset(12, out, resolution=32, seed=5, progress=False, batch_size=5)


def test_dataset_class_reads_it(synthetic):
    ds = HeadImageDataset(synthetic)
    assert len(ds) == 12
    item = ds[7]
    assert item["image"].shape == (3, 32, 32)
    assert item["expression"].shape[0] >= 50 and item["shape"].shape[0] >= 50
    index = read_dataset_index(synthetic)
    assert index.header.head_model.startswith("demo-head") and index.header.source == "synthetic"
    assert (synthetic / "sample_grid.png").is_file()


def test_white_background_and_a_head_in_the_middle(synthetic):
    ds = HeadImageDataset(synthetic)
    for i in range(len(ds)):
        img = ds[i]["image"]
        corners = img[:, [0, 0, -1], [0, -1, 0]]
        assert torch.allclose(corners, torch.ones_like(corners), atol=2 / 255), "background must be white"
        foreground = (img < 0.9).any(0)
        assert foreground.float().mean() > 0.15, "the head should fill a good part of the frame"


def test_labels_agree_with_pixels(synthetic):
    """The head's origin projected with the stored camera lands inside the rendered silhouette."""
    ds = HeadImageDataset(synthetic)
    for i in range(len(ds)):
        item = ds[i]
        cam = Camera.from_label(item["camera"][None].double())
        origin = torch.tensor([0.0, 0.0, 0.0, 1.0], dtype=torch.float64)
        pc = cam.world2cam()[0] @ origin
        k = cam.pixel_intrinsics(32, 32)[0]
        uv = k @ (pc[:3] / pc[2])
        x, y = int(uv[0]), int(uv[1])
        assert 0 <= x < 32 and 0 <= y < 32
        assert (item["image"][:, y, x] < 0.95).any(), f"image {i}: the projected head centre is background"


def test_deterministic_and_resumable(synthetic, tmp_path):
    again = make_synthetic_dataset(12, tmp_path / "again", resolution=32, seed=5, progress=False, batch_size=4)
    a = read_dataset_index(synthetic)
    b = read_dataset_index(again)
    np.testing.assert_array_equal(a.cameras, b.cameras)
    np.testing.assert_array_equal(a.flame["expression"], b.flame["expression"])
    victim = again / "images" / "00000003.png"
    before = (again / "images" / "00000004.png").read_bytes()
    victim.unlink()
    make_synthetic_dataset(12, again, resolution=32, seed=5, progress=False, batch_size=4)
    assert victim.is_file()
    assert (again / "images" / "00000004.png").read_bytes() == before
    assert (synthetic / "images" / "00000003.png").read_bytes() == victim.read_bytes()
    assert not list((again / "images").glob("*.tmp*"))


def test_bad_arguments():
    with pytest.raises(AgoraError, match="--synthetic"):
        make_synthetic_dataset(0, "/tmp/never", progress=False)
