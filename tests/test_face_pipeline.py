"""The photo -> (image, matte, FLAME, camera) chain (agora_core.face.pipeline) on a real photo."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from face_helpers import ASTRONAUT_FACE_X, ASTRONAUT_FACE_Y, astronaut, smirk_estimator, write_mean_sigmoid_onnx

from agora_core.errors import AgoraError
from agora_core.face import (
    FaceAnalysis,
    HaarDetector,
    ModnetMatter,
    NoFaceError,
    analyse_face,
    axis_angle_to_rotmat,
    camera_from_head_pose,
    crop_dataset_image,
    head_pose_from_camera,
)


@pytest.fixture(scope="module")
def matter(tmp_path_factory) -> ModnetMatter:
    return ModnetMatter(write_mean_sigmoid_onnx(tmp_path_factory.mktemp("modnet") / "toy_modnet.onnx"))


def _check_flame(result: FaceAnalysis) -> None:
    sizes = {"shape": 300, "expression": 50, "jaw": 3, "eyelids": 2, "neck": 3, "eyes": 6, "global_pose": 3, "cam": 3}
    assert {k: v.shape for k, v in result.flame.items()} == {k: (n,) for k, n in sizes.items()}
    assert all(v.dtype == np.float32 and np.isfinite(v).all() for v in result.flame.values())
    assert not result.flame["neck"].any() and not result.flame["eyes"].any()
    assert 0 <= result.flame["eyelids"].min() and result.flame["eyelids"].max() <= 1
    assert result.flame["jaw"][0] >= 0 and np.abs(result.flame["jaw"][1:]).max() <= 0.2 + 1e-7
    assert result.flame_vector().shape == (358,)


def test_analyse_a_photo(matter):
    photo = astronaut()
    result = analyse_face(photo, detector=HaarDetector(), matter=matter, estimator=smirk_estimator(), size=256)
    assert result.image.shape == (256, 256, 3) and result.image.dtype == np.uint8
    assert result.matte.shape == (256, 256) and result.matte.dtype == np.float32
    assert 0 <= result.matte.min() and result.matte.max() <= 1
    _check_flame(result)
    # the face found is the astronaut's, and the dataset crop is centred near it
    cx, cy = result.detection.centre
    assert ASTRONAUT_FACE_X[0] <= cx <= ASTRONAUT_FACE_X[1] and ASTRONAUT_FACE_Y[0] <= cy <= ASTRONAUT_FACE_Y[1]
    centre_in_photo = result.crop_transform.to_image(np.array([[127.5, 127.5]]))[0]
    assert np.hypot(centre_in_photo[0] - cx, centre_in_photo[1] - cy) < 0.3 * result.detection.mean_side
    # composited on white with the returned matte
    crop, _ = crop_dataset_image(photo, result.detection.box, size=256)
    expected = result.matte[..., None] * crop + (1 - result.matte[..., None]) * 255.0
    assert np.abs(result.image - expected).max() <= 0.5 + 1e-3
    # the camera carries the estimated head rotation
    assert result.camera_label.shape == (25,) and result.camera_label.dtype == np.float32
    # (compared as rotations: the random fixture weights give angles far beyond π)
    pose = head_pose_from_camera(result.camera.to(torch.float64))
    estimated = torch.from_numpy(result.flame["global_pose"]).double()[None]
    torch.testing.assert_close(axis_angle_to_rotmat(pose), axis_angle_to_rotmat(estimated), rtol=0, atol=1e-5)


def test_analyse_an_aligned_photo_skips_detection():
    photo = astronaut()
    result = analyse_face(photo, detector=None, matter=None, estimator=smirk_estimator(), aligned=True, size=128)
    assert result.detection is None and result.matte is None
    assert result.image.shape == (128, 128, 3) and result.smirk_crop_transform.size == 224
    _check_flame(result)
    expected = camera_from_head_pose(torch.from_numpy(result.flame["global_pose"])[None].double()).to_label()
    np.testing.assert_allclose(result.camera_label, expected[0].float().numpy(), atol=1e-6)


def test_aligned_photo_must_be_square():
    with pytest.raises(AgoraError, match=r"wide\.png: 512x256 px is not square"):
        analyse_face(
            astronaut()[:256], detector=None, matter=None, estimator=smirk_estimator(), aligned=True, source="wide.png"
        )


def test_blank_photo_has_no_face():
    blank = np.full((300, 300, 3), 255, np.uint8)
    with pytest.raises(NoFaceError, match=r"^blank\.jpg: no face found"):
        analyse_face(blank, detector=HaarDetector(), matter=None, estimator=smirk_estimator(), source="blank.jpg")
