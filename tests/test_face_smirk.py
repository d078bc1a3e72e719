"""SMIRK's encoder (agora_core.face.smirk) against the format fixture of SMIRK_em1.pt."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from face_helpers import SMIRK_FIXTURE, SMIRK_FIXTURE_IO, astronaut, smirk_estimator
from tolerances import assert_within, rounding_tol

from agora_core.errors import AgoraError
from agora_core.face.crop import crop_face
from agora_core.face.detect import HaarDetector, detect_largest_face
from agora_core.face.smirk import SmirkEncoder, SmirkEstimator, encoder_state_dict, load_smirk_encoder

OUTPUT_KEYS = ("pose_params", "cam", "shape_params", "expression_params", "eyelid_params", "jaw_params")


def _assert_reproduces_fixture(encoder: SmirkEncoder) -> None:
    io = torch.load(SMIRK_FIXTURE_IO, weights_only=True)
    with torch.no_grad():
        out = encoder(io["input"])
        exact = copy.deepcopy(encoder).double()(io["input"].double())
    for key in OUTPUT_KEYS:
        # Same timm graph and weights; the fixture's outputs are another float32 evaluation (another
        # machine's kernels and summation order). This network's float32 rounding, measured against its
        # float64 evaluation here (values reach ~2.5e3), bounds both: |ours - fixture| <= |ours - exact|
        # + |fixture - exact|, the fixture's own error allowed up to 3x ours (a few ulps of the output floor it).
        ours_error = (out[key].double() - exact[key]).abs().max().item()
        tol = 4 * ours_error + rounding_tol(torch.float32, io[key].abs().max(), steps=4)
        assert_within(out[key], io[key], tol, key)


def test_official_layout_reproduces_the_fixture_outputs():
    encoder = load_smirk_encoder(SMIRK_FIXTURE)
    assert not encoder.training
    _assert_reproduces_fixture(encoder)


def test_plain_encoder_state_dict_loads_too(tmp_path):
    state = encoder_state_dict(torch.load(SMIRK_FIXTURE, weights_only=True))
    assert not any(k.startswith(("smirk_encoder.", "smirk_generator.")) for k in state)
    path = tmp_path / "tracker_encoder.pt"
    torch.save(state, path)
    _assert_reproduces_fixture(load_smirk_encoder(path))


def test_missing_and_unexpected_keys_name_the_file(tmp_path):
    state = torch.load(SMIRK_FIXTURE, weights_only=True)
    state.pop("smirk_encoder.shape_encoder.shape_layers.0.bias")
    state["smirk_encoder.extra.weight"] = torch.zeros(1)
    path = tmp_path / "damaged.pt"
    torch.save(state, path)
    with pytest.raises(AgoraError) as info:
        load_smirk_encoder(path)
    message = str(info.value)
    assert message.startswith(f"{path}: not a SMIRK encoder checkpoint") and "\n" not in message
    assert "shape_layers.0.bias" in message and "extra.weight" in message


def test_wrong_shapes_and_garbage_name_the_file(tmp_path):
    state = torch.load(SMIRK_FIXTURE, weights_only=True)
    state["smirk_encoder.shape_encoder.shape_layers.0.bias"] = torch.zeros(7)
    torch.save(state, tmp_path / "resized.pt")
    with pytest.raises(AgoraError, match=r"resized\.pt: weights do not fit"):
        load_smirk_encoder(tmp_path / "resized.pt")
    (tmp_path / "garbage.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(AgoraError, match=r"garbage\.pt: not a readable PyTorch state dict"):
        load_smirk_encoder(tmp_path / "garbage.pt")


def test_missing_checkpoint_names_the_flag_and_the_source(tmp_path):
    with pytest.raises(AgoraError) as info:
        SmirkEstimator.from_asset(None)
    message = str(info.value)
    assert "--smirk" in message and "github.com/georgeretsi/smirk" in message and "\n" not in message
    with pytest.raises(AgoraError, match="SMIRK_em1.pt"):
        SmirkEstimator.from_asset(tmp_path / "nowhere.pt")


def test_estimator_on_a_real_face_crop():
    photo = astronaut()
    crop, _ = crop_face(photo, detect_largest_face(photo, HaarDetector()).box)
    params = smirk_estimator().estimate(crop)
    shapes = {"shape": 300, "expression": 50, "eyelids": 2, "jaw": 3, "global_pose": 3, "cam": 3}
    assert {k: v.shape for k, v in params.items()} == {k: (1, n) for k, n in shapes.items()}
    assert all(v.dtype == np.float32 and np.isfinite(v).all() for v in params.values())
    assert (params["eyelids"] >= 0).all() and (params["eyelids"] <= 1).all()
    assert (params["jaw"][:, 0] >= 0).all() and (np.abs(params["jaw"][:, 1:]) <= 0.2 + 1e-7).all()


def test_estimator_batches_match_single_crops():
    crops = np.random.default_rng(0).integers(0, 256, (2, 224, 224, 3), dtype=np.uint8)
    batch = smirk_estimator().estimate(crops)
    single = smirk_estimator().estimate(crops[1])
    for key, value in single.items():
        np.testing.assert_allclose(batch[key][1:], value, rtol=1e-5, atol=1e-4 * np.abs(value).max())
