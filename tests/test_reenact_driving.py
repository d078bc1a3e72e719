"""Driving parameters (agora_core.reenact.driving, demo_sequence): files, smoothing, cameras."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from scipy.signal import savgol_filter

from agora_core.errors import AgoraError
from agora_core.face.camera import camera_from_head_pose
from agora_core.reenact.demo_sequence import make_demo_sequence
from agora_core.reenact.driving import DrivingSequence


def _sequence(t: int = 12, camera: bool = False) -> DrivingSequence:
    rng = np.random.default_rng(0)
    f = lambda d: rng.normal(scale=0.1, size=(t, d)).astype(np.float32)  # noqa: E731
    cam = camera_from_head_pose(torch.as_tensor(f(3), dtype=torch.float64)).to_label().float().numpy() if camera else None
    return DrivingSequence(f(50), f(3), np.abs(f(2)), f(3), f(3), 30.0, cam)


def test_npz_round_trip_keeps_every_field(tmp_path):
    seq = _sequence(camera=True)
    back = DrivingSequence.load(seq.save(tmp_path / "d.npz"))
    for k in ("expression", "jaw", "eyelids", "global_pose", "neck", "camera"):
        np.testing.assert_array_equal(getattr(back, k), getattr(seq, k))
    assert back.fps == 30.0 and not list(tmp_path.glob(".*tmp*"))


def test_npz_optional_fields_default_to_zero(tmp_path):
    np.savez(tmp_path / "min.npz", expression=np.ones((4, 10)), jaw=np.zeros((4, 3)))
    seq = DrivingSequence.load(tmp_path / "min.npz")
    assert seq.num_frames == 4 and seq.fps == 25.0 and seq.camera is None
    assert not seq.eyelids.any() and not seq.global_pose.any() and not seq.neck.any()


def test_authors_json_format_reads_and_writes(tmp_path):
    rng = np.random.default_rng(1)
    frames = rng.normal(size=(7, 55))
    path = tmp_path / "driving_sequence.json"
    path.write_text(json.dumps({"num_frames": 7, "params_dim": 55, "fps": 25.0, "frames": frames.tolist()}))
    seq = DrivingSequence.load(path)
    np.testing.assert_allclose(seq.expression, frames[:, :50], rtol=1e-6)
    np.testing.assert_allclose(seq.jaw, frames[:, 50:53], rtol=1e-6)
    np.testing.assert_allclose(seq.eyelids, frames[:, 53:], rtol=1e-6)
    assert not seq.global_pose.any() and seq.fps == 25.0
    doc = json.loads(seq.save(tmp_path / "again.json").read_text())
    assert doc["num_frames"] == 7 and doc["params_dim"] == 55
    np.testing.assert_allclose(np.asarray(doc["frames"]), frames, rtol=1e-6)


@pytest.mark.parametrize("content, match", [
    ({"frames": [[0.0] * 54]}, "shape"),
    ({"num_frames": 3, "params_dim": 55, "frames": [[0.0] * 55]}, "num_frames 3"),
    ({"params_dim": 4, "frames": [[0.0] * 4]}, "params_dim 4"),
    ([1, 2], "not a driving_sequence.json"),
])
def test_bad_json_is_one_line(tmp_path, content, match):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(content))
    with pytest.raises(AgoraError, match=match):
        DrivingSequence.load(path)


def test_bad_npz_and_missing_files(tmp_path):
    np.savez(tmp_path / "nojaw.npz", expression=np.zeros((3, 50)))
    with pytest.raises(AgoraError, match="lacks 'jaw'"):
        DrivingSequence.load(tmp_path / "nojaw.npz")
    np.savez(tmp_path / "short.npz", expression=np.zeros((3, 50)), jaw=np.zeros((2, 3)))
    with pytest.raises(AgoraError, match=r"'jaw' has shape \(2, 3\)"):
        DrivingSequence.load(tmp_path / "short.npz")
    (tmp_path / "junk.npz").write_bytes(b"junk")
    with pytest.raises(AgoraError, match="not a readable .npz"):
        DrivingSequence.load(tmp_path / "junk.npz")
    with pytest.raises(AgoraError, match="no such file"):
        DrivingSequence.load(tmp_path / "missing.npz")
    (tmp_path / "x.txt").write_text("")
    with pytest.raises(AgoraError, match=r"--params takes a \.npz .*driving_sequence\.json"):
        DrivingSequence.load(tmp_path / "x.txt")


def test_smoothing_is_savitzky_golay_5_3():
    seq = _sequence(t=20)
    smooth = seq.smoothed()
    for k in ("expression", "jaw", "global_pose", "neck"):
        np.testing.assert_allclose(getattr(smooth, k), savgol_filter(getattr(seq, k), 5, 3, axis=0, mode="interp"),
                                   rtol=1e-5, atol=1e-6)
    assert 0 <= smooth.eyelids.min() and smooth.eyelids.max() <= 1
    # a cubic is reproduced exactly by an order-3 filter
    t = np.linspace(-1, 1, 15, dtype=np.float32)[:, None]
    cubic = DrivingSequence(np.repeat(t**3 - t, 50, 1), np.repeat(t, 3, 1), np.zeros((15, 2), np.float32),
                            np.repeat(0.2 * t**2, 3, 1), np.zeros((15, 3), np.float32))
    np.testing.assert_allclose(cubic.smoothed().expression, cubic.expression, atol=1e-5)


def test_short_sequences_shrink_the_window():
    seq = _sequence(t=4)  # window 5 does not fit: 3 <= order 3, so nothing happens
    assert seq.smoothed() is seq
    seq6 = _sequence(t=6)
    np.testing.assert_allclose(seq6.smoothed(7, 2).jaw, savgol_filter(seq6.jaw, 5, 2, axis=0, mode="interp"), rtol=1e-5, atol=1e-6)


def test_cameras_follow_the_head_pose_unless_given():
    seq = _sequence()
    expected = camera_from_head_pose(torch.as_tensor(seq.global_pose, dtype=torch.float64))
    torch.testing.assert_close(seq.cameras().cam2world, expected.cam2world.float())
    given = _sequence(camera=True)
    given.global_pose[:] = 1.0  # ignored
    torch.testing.assert_close(given.cameras().to_label(), torch.as_tensor(given.camera))


def test_demo_sequence_is_smooth_and_reproducible():
    a, b = make_demo_sequence(40, 20.0, seed=3), make_demo_sequence(40, 20.0, seed=3)
    np.testing.assert_array_equal(a.expression, b.expression)
    assert a.num_frames == 40 and a.fps == 20.0 and a.expression.shape == (40, 50)
    assert np.abs(a.expression[:, :10]).max() > 0.3 and not a.expression[:, 10:].any()
    assert 0 <= a.jaw[:, 0].min() and a.jaw[:, 0].max() <= 0.3 + 1e-6
    assert np.abs(a.global_pose[:, 1]).max() > 0.05  # the head turns
    # smooth: frame-to-frame steps are small next to the range
    assert np.abs(np.diff(a.expression, axis=0)).max() < 0.25 * np.ptp(a.expression[:, 0])
    assert not np.array_equal(make_demo_sequence(40, 20.0, seed=4).expression, a.expression)
