"""AED/APD/ASD: labels, RMSE per group, failed fits, tracker files, and the protocol with a stand-in tracker."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from agora_core.head import FlameParams
from agora_core.face.camera import camera_from_head_pose
from agora_core.face.smirk import SmirkEncoder, load_smirk_encoder
from agora_core.metrics.tracking import (
    EncoderTracker, TrackerInfo, head_pose_label, load_tracker, read_tracker_info, save_tracker, smirk_crop_window,
    tracking_errors, tracking_targets, weak_perspective_label,
)
from agora_core.render.cameras import FLAME_CAMERA_RADIUS


def _labels(poses: torch.Tensor) -> torch.Tensor:
    return camera_from_head_pose(poses.double()).to_label().float()


def test_head_pose_label_is_the_inverse_camera_rotation_composed_with_the_neck():
    poses = torch.tensor([[0.1, -0.3, 0.05], [0.0, 0.4, 0.0]])
    labels = _labels(poses)
    torch.testing.assert_close(head_pose_label(labels), poses, atol=1e-5, rtol=0)
    neck = torch.tensor([[0.0, 0.0, 0.0], [0.0, 0.1, 0.0]])
    # rotations about one axis add up
    torch.testing.assert_close(head_pose_label(labels, neck), torch.tensor([[0.1, -0.3, 0.05], [0.0, 0.5, 0.0]]),
                               atol=1e-5, rtol=0)
    frontal = _labels(torch.zeros(1, 3))
    torch.testing.assert_close(head_pose_label(frontal, torch.tensor([[0.2, 0.0, 0.1]])),
                               torch.tensor([[0.2, 0.0, 0.1]]), atol=1e-5, rtol=0)


def test_weak_perspective_label_matches_the_pinhole_projection_near_the_origin():
    """s·(X + t) in crop NDC equals the projected point for a small offset X (first order)."""
    res = 64
    label = _labels(torch.tensor([[0.0, 0.2, 0.0]]))
    s, tx, ty = weak_perspective_label(label, res)[0].double()
    from agora_core.render.cameras import Camera

    cam = Camera.from_label(label.double())
    (cx, cy), side = smirk_crop_window(res)
    X = torch.tensor([0.004, -0.003, 0.0], dtype=torch.float64)
    pc = cam.world2cam()[0, :3, :3] @ X + cam.world2cam()[0, :3, 3]
    k = cam.intrinsics[0]
    px = (k[0, 0] * pc[0] / pc[2] + k[0, 2]) * res - 0.5
    py = (k[1, 1] * pc[1] / pc[2] + k[1, 2]) * res - 0.5
    ndc = torch.stack([2 * (px - cx) / side, -2 * (py - cy) / side])
    # the camera looks from +z rotated by the pose: X in the head frame -> FLAME x/y (y up)
    rot = cam.world2cam()[0, :3, :3]
    head_xy = torch.stack([(rot @ X)[0], -(rot @ X)[1]])
    torch.testing.assert_close(s * (head_xy + torch.stack([tx, ty])), ndc, atol=2e-3, rtol=0)
    assert s == pytest.approx(2 * 4.2647 * res / (FLAME_CAMERA_RADIUS * side), rel=1e-3)


def test_rmse_equals_the_rms_of_known_noise_and_failed_fits_are_counted_not_used():
    gen = torch.Generator().manual_seed(0)
    n = 40
    truth = {"expression": torch.randn(n, 50, generator=gen), "jaw": torch.randn(n, 3, generator=gen),
             "eyelids": torch.rand(n, 2, generator=gen), "pose": torch.randn(n, 3, generator=gen),
             "shape": torch.randn(n, 20, generator=gen)}
    scales = {"expression": 0.3, "jaw": 0.02, "eyelids": 0.1, "pose": 0.05, "shape": 0.5}
    noise = {k: scales[k] * torch.randn(v.shape, generator=gen) for k, v in truth.items()}
    pred = {k: truth[k] + noise[k] for k in truth}
    pred["shape"] = torch.cat([pred["shape"], torch.zeros(n, 280)], dim=1)  # a 300-d tracker on a 20-d head
    fail = [3, 17]
    for v in pred.values():
        v[fail] = float("nan")
    keep = torch.ones(n, dtype=torch.bool)
    keep[fail] = False
    errors = tracking_errors(pred, truth)
    assert (errors.samples, errors.failed) == (n, 2)
    for group, v in noise.items():
        expected = float(v[keep].double().pow(2).mean().sqrt())
        # (truth + noise) − truth in float32 recovers the noise to ~1e-7 of |truth|
        assert errors.rmse[group] == pytest.approx(expected, rel=1e-5), group
    assert errors.dims == {"expression": 50, "jaw": 3, "eyelids": 2, "pose": 3, "shape": 20}
    assert set(errors.as_metrics()) == {"aed", "aed_jaw", "apd", "asd", "aed_eyelids"}


def test_tracking_targets_pad_expression_to_fifty_and_keep_the_heads_shape():
    labels = _labels(torch.zeros(2, 3))
    flame = FlameParams(shape=torch.randn(2, 60), expression=torch.randn(2, 20), jaw=torch.zeros(2, 3),
                        neck=torch.zeros(2, 3), eyelids=torch.rand(2, 2))
    t = tracking_targets(labels, flame)
    assert t["expression"].shape == (2, 50) and (t["expression"][:, 20:] == 0).all()
    assert t["shape"].shape == (2, 60)


@pytest.fixture(scope="module")
def encoder():
    torch.manual_seed(0)
    return SmirkEncoder().eval()  # three timm backbones: built once per module (~2 s)


def test_tracker_checkpoint_loads_as_a_smirk_encoder_and_keeps_its_sidecar(tmp_path, encoder):
    path = save_tracker(tmp_path / "tracker.pt", encoder, TrackerInfo(input_size=64, kind="agora-demo-tracker",
                                                                      head_model="demo-head-v1+mouth", num_shape=60))
    loaded = load_smirk_encoder(path)  # the loader every SMIRK consumer uses
    for (k, a), (_, b) in zip(encoder.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), k
    info = read_tracker_info(path)
    assert (info.input_size, info.kind, info.num_shape) == (64, "agora-demo-tracker", 60)
    assert json.loads((tmp_path / "tracker.json").read_text())["format"] == "agora-tracker"
    tracker = load_tracker(path)
    out = tracker.track(torch.rand(2, 3, 32, 32))
    assert {k: tuple(v.shape) for k, v in out.items()} == {
        "expression": (2, 50), "jaw": (2, 3), "eyelids": (2, 2), "pose": (2, 3), "shape": (2, 60), "cam": (2, 3)}
    # SMIRK_em1.pt has no sidecar: SMIRK's 224² input
    (tmp_path / "tracker.json").unlink()
    assert read_tracker_info(path).input_size == 224


class _NoFaces:
    name = "none"

    def detect(self, rgb):
        return []


def test_no_face_found_is_a_failed_fit(encoder):
    tracker = EncoderTracker(encoder, TrackerInfo(input_size=64), detector=_NoFaces())
    out = tracker.track(torch.rand(2, 3, 32, 32))
    assert all(torch.isnan(v).all() for v in out.values())


def test_protocol_with_a_stand_in_tracker_reports_the_noise_rms(tmp_path, monkeypatch):
    """evaluate() renders identities × pairs in protocol order; a tracker returning truth + noise
    gives RMSE = RMS of the noise per group, and its NaN rows are counted as failed."""
    from agora_core.data.format import read_dataset_index
    from agora_core.metrics.evaluate import Evaluators, evaluate
    from agora_core.metrics.protocol import ProtocolConfig, animation_samples
    from agora_core.data.conditions import ConditionSampler
    from test_metrics_fixtures import NoisyTruthTracker, cached_build_head, write_tiny_checkpoint

    monkeypatch.setattr("agora_core.head.build.build_head", cached_build_head)
    ckpt, data = write_tiny_checkpoint(tmp_path)
    protocol = ProtocolConfig(identities=3, pairs_per_identity=2, seed=5, batch=4)
    conditions = ConditionSampler(read_dataset_index(data), xflip=False, seed=protocol.seed)
    samples = animation_samples(conditions, 3, 2, 16, protocol.seed + 2)  # what evaluate() draws (z_dim 16)
    cams, flame = samples.frame_slice(0, 3)
    truth = tracking_targets(cams, flame)
    gen = torch.Generator().manual_seed(1)
    noise = {k: 0.1 * torch.randn(v.shape, generator=gen) for k, v in truth.items()}
    tracker = NoisyTruthTracker(truth, noise, fail_rows=[4])
    doc = evaluate(ckpt, data, ("aed",), protocol, evaluators=Evaluators(tracker=tracker), progress=False)
    keep = torch.tensor([i != 4 for i in range(6)])
    names = {"aed": "expression", "aed_jaw": "jaw", "apd": "pose", "asd": "shape", "aed_eyelids": "eyelids"}
    for metric, group in names.items():
        entry = doc["metrics"][metric]
        assert entry["status"] == "ok" and (entry["samples"], entry["failed"]) == (6, 1)
        assert entry["value"] == pytest.approx(float(noise[group][keep].double().pow(2).mean().sqrt()), rel=1e-6)
    assert np.isclose(doc["protocol"]["truncation_animation"], 0.7)


def test_training_forward_is_the_encoder_before_its_clamps(encoder):
    """train-tracker fits the expression head before SMIRK's clamps (a clamped unit that starts out
    of range would never get a gradient); in range both agree, and --no-shape skips that backbone."""
    from agora_core.metrics.tracker_training import _forward

    x = torch.rand(2, 3, 64, 64)
    ref = encoder(x)
    clamped, raw = _forward(encoder, x, 10), _forward(encoder, x, 0, clamp=False)
    assert torch.equal(clamped["jaw"], ref["jaw_params"]) and torch.equal(clamped["eyelids"], ref["eyelid_params"])
    torch.testing.assert_close(raw["expression"], ref["expression_params"])
    assert torch.equal(raw["eyelids"].clamp(0, 1), ref["eyelid_params"])
    assert "shape" not in raw and clamped["shape"].shape == (2, 10)
