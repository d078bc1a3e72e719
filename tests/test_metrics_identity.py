"""ID: the ArcFace ONNX path (insightface preprocessing) on a tiny model with ArcFace's signature."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from agora_core.errors import AgoraError
from agora_core.metrics.identity import ArcFaceEmbedder, arcface_crops, arcface_window, id_scores, pair_cosines
from test_metrics_fixtures import write_tiny_arcface_onnx


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory):
    return write_tiny_arcface_onnx(tmp_path_factory.mktemp("arcface") / "w600k_r50.onnx")


def test_identical_images_have_cosine_one_and_the_paper_score_is_its_sqrt(tiny_onnx):
    emb = ArcFaceEmbedder(tiny_onnx)
    assert (emb.input_mean, emb.input_std) == (127.5, 127.5)
    images = torch.rand(4, 3, 32, 32)
    e = emb.embed(images)
    assert e.shape == (4, 512)
    torch.testing.assert_close(e.norm(dim=1), torch.ones(4))
    same = pair_cosines(e, emb.embed(images.clone()))
    torch.testing.assert_close(same, torch.ones(4), rtol=0, atol=1e-5)
    other = pair_cosines(e, emb.embed(torch.rand(4, 3, 32, 32)))
    assert (other < 0.999).all()
    scores = id_scores(torch.tensor([0.81, 0.49, float("nan")]))
    assert scores["mean_cosine"] == pytest.approx(0.65) and scores["paper_id"] == pytest.approx(math.sqrt(0.65))
    assert (scores["pairs"], scores["failed"]) == (3, 1)


def test_preprocessing_follows_insightface(tiny_onnx):
    """(x − 127.5) / 127.5 on the RGB 112² crop, fed NCHW: reproduce the network by hand."""
    import onnx
    from onnx import numpy_helper

    weight = numpy_helper.to_array(onnx.load(str(tiny_onnx)).graph.initializer[0])
    images = torch.rand(2, 3, 24, 24)
    crops = arcface_crops(images).astype(np.float32)  # [B, 112, 112, 3] RGB
    blob = ((crops - 127.5) / 127.5).transpose(0, 3, 1, 2)
    pooled = blob.reshape(2, 3, 8, 14, 8, 14).mean(axis=(3, 5)).reshape(2, 192)
    expected = torch.from_numpy(pooled @ weight)
    expected = expected / expected.norm(dim=1, keepdim=True)
    torch.testing.assert_close(ArcFaceEmbedder(tiny_onnx).embed(images), expected, rtol=1e-4, atol=1e-5)


def test_a_self_normalising_graph_gets_raw_pixels(tmp_path):
    emb = ArcFaceEmbedder(write_tiny_arcface_onnx(tmp_path / "mx.onnx", normalising_prefix=True))
    assert (emb.input_mean, emb.input_std) == (0.0, 1.0)


def test_wrong_files_are_one_line_errors(tmp_path):
    with pytest.raises(AgoraError, match="--arcface"):
        ArcFaceEmbedder(tmp_path / "missing.onnx")
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not onnx")
    with pytest.raises(AgoraError, match="ONNX"):
        ArcFaceEmbedder(bad)


def test_arcface_window_is_the_central_part_of_an_ffhq_aligned_image():
    x0, y0, side = arcface_window(512)
    # eye midpoint of the template lands at FFHQ's eye height, horizontally centred
    assert x0 + side / 2 == pytest.approx(256, abs=1)
    assert 0.7 * 512 < side < 0.8 * 512 and 0 < y0 < 0.2 * 512
