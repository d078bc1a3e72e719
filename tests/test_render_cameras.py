"""Cameras: EG3D labels, look-at orientation, mirroring, the FFHQ-like distribution."""

import math

import pytest
import torch

from agora_core.render import EG3D_FOCAL, Camera, orbit_cameras, sample_ffhq_like_cameras
from agora_core.render.cameras import default_intrinsics


def _project(cam: Camera, points: torch.Tensor, width: int, height: int) -> torch.Tensor:
    """[B, 3] world points -> [B, 3] (pixel x, pixel y, depth) through each camera."""
    w2c = cam.world2cam()
    pc = (w2c[:, :3, :3] @ points[..., None])[..., 0] + w2c[:, :3, 3]
    k = cam.pixel_intrinsics(width, height)
    uv = (k @ pc[..., None])[..., 0]
    return torch.stack([uv[:, 0] / uv[:, 2], uv[:, 1] / uv[:, 2], pc[:, 2]], dim=1)


def test_label_round_trip_is_exact():
    g = torch.Generator().manual_seed(0)
    cams = sample_ffhq_like_cameras(5, generator=g)
    label = cams.to_label()
    assert label.shape == (5, 25)
    back = Camera.from_label(label)
    # pure reshapes: bit-exact
    assert torch.equal(back.cam2world, cams.cam2world)
    assert torch.equal(back.intrinsics, cams.intrinsics)
    assert torch.equal(back.to_label(), label)


def test_label_layout_matches_eg3d():
    # The GGHEAD/EG3D frontal FFHQ label: camera at +z at 2.7, row-major c2w then K.
    cam = orbit_cameras(torch.zeros(1), torch.zeros(1))
    label = cam.to_label()[0]
    assert label[3].item() == pytest.approx(0.0, abs=1e-6)  # t_x
    assert label[11].item() == pytest.approx(2.7, abs=1e-6)  # t_z (row 2, column 3)
    assert label[15].item() == 1.0
    assert label[16:].tolist() == pytest.approx([EG3D_FOCAL, 0, 0.5, 0, EG3D_FOCAL, 0.5, 0, 0, 1])


def test_world2cam_inverts_cam2world():
    cams = sample_ffhq_like_cameras(4, generator=torch.Generator().manual_seed(1))
    eye = torch.eye(4).expand(4, 4, 4)
    # float32 rotation products: a few ulps
    torch.testing.assert_close(cams.world2cam() @ cams.cam2world, eye, atol=1e-6, rtol=0)


def test_look_at_centres_target_and_keeps_up_up():
    eye = torch.tensor([[0.3, 0.2, 2.5], [-1.0, -0.4, 2.0]], dtype=torch.float64)
    target = torch.tensor([[0.0, 0.05, 0.0], [0.1, 0.0, -0.1]], dtype=torch.float64)
    cam = Camera.look_at(eye, target)
    rot = cam.cam2world[:, :3, :3]
    torch.testing.assert_close(rot.transpose(1, 2) @ rot, torch.eye(3, dtype=torch.float64).expand(2, 3, 3))
    assert torch.allclose(torch.linalg.det(rot), torch.ones(2, dtype=torch.float64))
    at = _project(cam, target, 64, 48)
    torch.testing.assert_close(at[:, :2], torch.tensor([[32.0, 24.0]] * 2, dtype=torch.float64))
    assert (at[:, 2] > 0).all()  # in front
    above = _project(cam, target + torch.tensor([0.0, 0.1, 0.0], dtype=torch.float64), 64, 48)
    assert (above[:, 1] < at[:, 1]).all()  # world +y is image up (smaller pixel y)


def test_frontal_camera_sees_head_left_on_image_right():
    # FLAME: +x is the head's left; seen from the front it appears on the viewer's right.
    cam = orbit_cameras(torch.zeros(1), torch.zeros(1))
    p = _project(cam, torch.tensor([[0.1, 0.0, 0.0]]), 64, 64)
    assert p[0, 0] > 32


def test_mirror_is_involution_and_proper_rotation():
    cams = sample_ffhq_like_cameras(6, generator=torch.Generator().manual_seed(2))
    mirrored = cams.mirror()
    assert torch.equal(mirrored.mirror().cam2world, cams.cam2world)
    assert torch.equal(mirrored.mirror().intrinsics, cams.intrinsics)
    det = torch.linalg.det(mirrored.cam2world[:, :3, :3])
    torch.testing.assert_close(det, torch.ones(6), atol=1e-5, rtol=0)
    torch.testing.assert_close(mirrored.position(), cams.position() * torch.tensor([-1.0, 1.0, 1.0]))


def test_mirror_camera_renders_the_flipped_image_geometry():
    # A point p seen by camera c lands at pixel x; the mirrored point through the mirrored camera
    # lands at W - x (same y): exactly what a horizontal flip of the image does.
    cams = sample_ffhq_like_cameras(3, generator=torch.Generator().manual_seed(3)).to(torch.float64)
    k = cams.intrinsics.clone()
    k[:, 0, 2] = 0.45  # off-centre principal point, to exercise cx -> 1 - cx
    cams = Camera(cams.cam2world, k)
    p = torch.tensor([[0.05, 0.02, 0.03], [-0.1, 0.1, 0.0], [0.0, -0.05, 0.1]], dtype=torch.float64)
    a = _project(cams, p, 64, 48)
    b = _project(cams.mirror(), p * torch.tensor([-1.0, 1.0, 1.0], dtype=torch.float64), 64, 48)
    torch.testing.assert_close(b[:, 0], 64 - a[:, 0])
    torch.testing.assert_close(b[:, 1:], a[:, 1:])


def test_ffhq_like_cameras_spread_and_framing():
    cams = sample_ffhq_like_cameras(2000, generator=torch.Generator().manual_seed(4))
    pos = cams.position().double()
    radius = torch.full((2000,), 2.7, dtype=torch.float64)
    torch.testing.assert_close(pos.norm(dim=1), radius, atol=1e-5, rtol=0)  # float32 cam2world
    yaw = torch.atan2(pos[:, 0], pos[:, 2])
    pitch = torch.asin(pos[:, 1] / 2.7)
    assert yaw.abs().max() <= 0.9 + 1e-5 and pitch.abs().max() <= 0.5 + 1e-5
    # std of N(0, 0.3) clipped at 3σ / N(0, 0.15) clipped at 3.3σ: 2000 samples, ±10 %
    assert 0.27 < yaw.std() < 0.33 and 0.135 < pitch.std() < 0.165
    centre = _project(cams, torch.zeros(2000, 3), 64, 64)
    torch.testing.assert_close(centre[:, :2], torch.full((2000, 2), 32.0), atol=1e-3, rtol=0)
    # deterministic given the generator
    again = sample_ffhq_like_cameras(2000, generator=torch.Generator().manual_seed(4))
    assert torch.equal(again.cam2world, cams.cam2world)


def test_select_expand_and_pixel_intrinsics():
    cams = sample_ffhq_like_cameras(4, generator=torch.Generator().manual_seed(5))
    assert cams.select(2).batch_size == 1 and cams[1:3].batch_size == 2
    assert cams.select(0).expand(3).batch_size == 3
    k = cams.pixel_intrinsics(128, 64)[0]
    assert k[0, 0].item() == pytest.approx(EG3D_FOCAL * 128) and k[1, 2].item() == pytest.approx(32)
    assert default_intrinsics(2).shape == (2, 3, 3)
    half_height = 2.7 * 0.5 / EG3D_FOCAL
    assert 2 * half_height == pytest.approx(0.633, abs=1e-3)  # framing documented in cameras.py
    assert math.isfinite(half_height)


def test_camera_checks_shapes():
    with pytest.raises(AssertionError):
        Camera(torch.eye(4).expand(2, 4, 4), torch.eye(3).expand(3, 3, 3))
