"""FID / KID: the statistics (torch-fidelity's) on a stand-in feature network, the weight loaders."""

from __future__ import annotations

from pathlib import Path
from unittest import mock

import cv2
import numpy as np
import pytest
import torch

from agora_core.errors import AgoraError
from agora_core.metrics.features import (
    extract_features, fid_between_folders, fid_from_features, folder_batches, kid_from_features, load_inception,
)
from test_metrics_fixtures import StandInFeatures


def _blobs(rng: np.random.Generator, size: int = 32) -> np.ndarray:
    """A smooth 'face-like' image: a bright ellipse on white with a random colour and position."""
    img = np.full((size, size, 3), 255, np.uint8)
    centre = (int(size / 2 + rng.integers(-3, 4)), int(size / 2 + rng.integers(-3, 4)))
    colour = tuple(int(c) for c in rng.integers(120, 220, size=3))
    cv2.ellipse(img, centre, (size // 3, size // 2 - 2), 0, 0, 360, colour, -1)
    return cv2.GaussianBlur(img, (5, 5), 1.0)


def _write_folder(folder: Path, images: list[np.ndarray]) -> Path:
    folder.mkdir(parents=True)
    for i, img in enumerate(images):
        cv2.imwrite(str(folder / f"{i:04d}.png"), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    return folder


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """A: 48 smooth images; A2: 48 others from the same distribution; B: A with heavy noise."""
    root = tmp_path_factory.mktemp("fid")
    rng = np.random.default_rng(0)
    a = [_blobs(rng) for _ in range(48)]
    a2 = [_blobs(rng) for _ in range(48)]
    b = [np.clip(x.astype(np.int16) + rng.integers(-90, 91, size=x.shape), 0, 255).astype(np.uint8) for x in a]
    return _write_folder(root / "a", a), _write_folder(root / "a2", a2), _write_folder(root / "b", b)


def test_fid_of_a_set_with_itself_is_zero_and_a_worse_set_scores_worse(folders):
    net = StandInFeatures()
    a, a2, b = folders
    same = fid_between_folders(net, a, a)
    # (Σ²)^½ comes from eigenvalues of a product; float64 round-off leaves ~1e-10 of the trace
    assert abs(same) < 1e-6
    near, far = fid_between_folders(net, a, a2), fid_between_folders(net, a, b)
    assert 0 < near < far / 5, (near, far)


def test_kid_is_near_zero_for_one_distribution_and_larger_for_a_worse_set(folders):
    net = StandInFeatures()
    fa, fa2, fb = (extract_features(net, folder_batches(f, batch=16)) for f in folders)
    near_mean, near_std, size = kid_from_features(fa, fa2, subsets=50, subset_size=32, seed=0)
    far_mean, _, _ = kid_from_features(fa, fb, subsets=50, subset_size=32, seed=0)
    assert size == 32
    assert abs(near_mean) < far_mean / 10 and near_std >= 0
    # subset size capped at the smaller set
    assert kid_from_features(fa[:10], fb, subsets=5)[2] == 10


def test_fid_needs_two_images_per_set():
    with pytest.raises(AgoraError, match="--n"):
        fid_from_features(torch.randn(1, 4), torch.randn(5, 4))


def test_extract_features_accepts_float_images_like_saved_pngs():
    net = StandInFeatures()
    x = torch.rand(3, 3, 16, 16)
    as_uint8 = (x * 255 + 0.5).to(torch.uint8)
    assert torch.equal(extract_features(net, [x]), extract_features(net, [as_uint8]))


def test_load_inception_rejects_missing_pickled_and_foreign_files(tmp_path):
    with pytest.raises(AgoraError, match="--inception wants torch-fidelity's weights-inception"):
        load_inception(tmp_path / "nope.pth")
    pkl = tmp_path / "inception-2015-12-05.pkl"
    pkl.write_bytes(b"\x80\x04N.")
    with pytest.raises(AgoraError, match="pickled network is never loaded"):
        load_inception(pkl)
    foreign = tmp_path / "other.pth"
    torch.save({"weight": torch.zeros(2)}, foreign)
    with pytest.raises(AgoraError, match="state dict"):
        load_inception(foreign)


class _ScriptedStandIn(torch.nn.Module):
    """StyleGAN2-ADA's TorchScript detector interface: forward(x uint8, return_features) -> [B, D]."""

    def forward(self, x: torch.Tensor, return_features: bool = False) -> torch.Tensor:
        return x.float().mean(dim=(2, 3))


@pytest.mark.filterwarnings("ignore:`torch.jit:FutureWarning")  # torch deprecates TorchScript
def test_load_inception_refuses_torchscript_without_loading_it(tmp_path):
    """Loading TorchScript runs the code stored in it; the file is refused before torch opens it."""
    path = tmp_path / "inception-2015-12-05.pt"
    torch.jit.script(_ScriptedStandIn()).save(str(path))
    with mock.patch.object(torch.jit, "load", side_effect=AssertionError("torch.jit.load called")):
        with pytest.raises(AgoraError, match="TorchScript archive, which is never loaded") as err:
            load_inception(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)
    assert "weights-inception-2015-12-05-6726825d.pth" in str(err.value)


def test_load_inception_runs_torch_fidelity_inception_from_a_local_state_dict(tmp_path):
    """The real network class with random weights in torch-fidelity's file layout (no download)."""
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    empty = tmp_path / "empty.pth"
    torch.save({}, empty)
    with mock.patch.object(FeatureExtractorInceptionV3, "load_state_dict", lambda self, sd: None):
        state = FeatureExtractorInceptionV3("inception-v3-compat", ["2048"], feature_extractor_weights_path=str(empty)).state_dict()
    path = tmp_path / "weights-inception-2015-12-05-6726825d.pth"
    torch.save(state, path)
    real_load, opened = torch.load, []

    def spy(f, *args, **kwargs):  # torch-fidelity reads its weights with weights_only=False
        opened.append((f, kwargs.get("weights_only")))
        return real_load(f, *args, **kwargs)

    with mock.patch.object(torch, "load", spy):
        net = load_inception(path)
    assert all(weights_only for f, weights_only in opened if isinstance(f, (str, Path)))  # the file: weights only
    feats = net(torch.randint(0, 256, (2, 3, 16, 16), dtype=torch.uint8))
    assert feats.shape == (2, 2048) and torch.isfinite(feats).all()

    state["Mixed_6b.branch1x1.conv.weight"][0, 0, 0, 0] = float("nan")
    torch.save(state, path)
    with pytest.raises(AgoraError, match="Inception weight 'Mixed_6b.branch1x1.conv.weight' holds NaN or inf"):
        load_inception(path)
