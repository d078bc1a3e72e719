"""Cameras from head rotations (agora_core.face.camera, paper sec. 4)."""

from __future__ import annotations

import math

import pytest
import torch

from agora_core.face.camera import (
    axis_angle_to_rotmat,
    camera_from_head_pose,
    head_pose_from_camera,
    rotmat_to_axis_angle,
)
from agora_core.render.cameras import EG3D_FOCAL, Camera

DTYPE = torch.float64  # the identities below are exact; float64 keeps them at 1e-10


def _project(points: torch.Tensor, camera: Camera) -> torch.Tensor:
    """[B, N, 3] world points -> [B, N, 2] normalised image coordinates (pinhole, OpenCV)."""
    w2c = camera.world2cam()
    cam = points @ w2c[:, :3, :3].transpose(1, 2) + w2c[:, None, :3, 3]
    uv = cam[..., :2] / cam[..., 2:]
    k = camera.intrinsics[:, None]  # [B, 1, 3, 3]
    return torch.stack([k[..., 0, 0] * uv[..., 0] + k[..., 0, 2], k[..., 1, 1] * uv[..., 1] + k[..., 1, 2]], -1)


def _random_poses(b: int, max_angle: float = 0.8) -> torch.Tensor:
    axis = torch.nn.functional.normalize(torch.randn(b, 3, dtype=DTYPE), dim=1)
    return axis * torch.rand(b, 1, dtype=DTYPE) * max_angle


@pytest.mark.parametrize(
    "pivot,target", [(None, None), ((0.0, -0.03, -0.01), None), ((0.01, -0.05, 0.02), (0.0, 0.02, 0.01))]
)
def test_orbit_camera_sees_unrotated_head_as_frontal_camera_sees_rotated_head(pivot, target):
    b, n = 6, 50
    pose = _random_poses(b)
    pivot_t = None if pivot is None else torch.tensor(pivot, dtype=DTYPE)
    target_t = None if target is None else torch.tensor(target, dtype=DTYPE)
    p = torch.zeros(3, dtype=DTYPE) if pivot_t is None else pivot_t
    points = torch.randn(b, n, 3, dtype=DTYPE) * 0.1  # a head-sized cloud around the origin
    rot = axis_angle_to_rotmat(pose)
    rotated = (points - p) @ rot.transpose(1, 2) + p  # R (X - pivot) + pivot
    frontal = camera_from_head_pose(torch.zeros(b, 3, dtype=DTYPE), pivot_t, target_t)
    orbit = camera_from_head_pose(pose, pivot_t, target_t)
    torch.testing.assert_close(_project(points, orbit), _project(rotated, frontal), rtol=0, atol=1e-10)


def test_zero_pose_is_the_frontal_eg3d_camera():
    cam = camera_from_head_pose(torch.zeros(1, 3), radius=2.7)
    torch.testing.assert_close(cam.cam2world[0, :3, :3], torch.diag(torch.tensor([1.0, -1.0, -1.0])))
    torch.testing.assert_close(cam.position()[0], torch.tensor([0.0, 0.0, 2.7]))
    expected_k = torch.tensor([[EG3D_FOCAL, 0, 0.5], [0, EG3D_FOCAL, 0.5], [0, 0, 1.0]])
    torch.testing.assert_close(cam.intrinsics[0], expected_k)
    assert cam.to_label().shape == (1, 25)


def test_camera_centre_formula_and_rigidity():
    pose, pivot = _random_poses(4), torch.tensor([0.0, -0.04, -0.02], dtype=DTYPE)
    cam = camera_from_head_pose(pose, pivot, radius=1.3)
    rot = axis_angle_to_rotmat(pose)
    expected = pivot + (rot.transpose(1, 2) @ (torch.tensor([0, 0, 1.3], dtype=DTYPE) - pivot)[:, None])[..., 0]
    torch.testing.assert_close(cam.position(), expected, rtol=0, atol=1e-12)
    c2w = cam.cam2world[:, :3, :3]
    torch.testing.assert_close(c2w @ c2w.transpose(1, 2), torch.eye(3, dtype=DTYPE).expand(4, 3, 3), rtol=0, atol=1e-12)
    assert torch.allclose(torch.linalg.det(c2w), torch.ones(4, dtype=DTYPE))


def test_a_head_turned_to_its_left_moves_the_camera_to_its_right():
    # yaw +0.3 about +y turns the face towards +x (its left); the orbiting camera moves to -x
    cam = camera_from_head_pose(torch.tensor([[0.0, 0.3, 0.0]]))
    assert cam.position()[0, 0] < 0


def test_head_pose_from_camera_inverts():
    pose = torch.cat([_random_poses(8, max_angle=3.0), torch.zeros(1, 3, dtype=DTYPE)])
    cam = camera_from_head_pose(pose, torch.tensor([0.0, -0.04, 0.0], dtype=DTYPE), radius=2.0)
    torch.testing.assert_close(head_pose_from_camera(cam), pose, rtol=0, atol=1e-9)


@pytest.mark.parametrize("angle", [0.0, 1e-9, 1e-4, 1.0, math.pi - 1e-4, math.pi])
def test_rotation_conversions_round_trip(angle):
    axis = torch.nn.functional.normalize(torch.tensor([[0.3, -0.8, 0.5], [1.0, 0.0, 0.0]], dtype=DTYPE), dim=1)
    aa = axis * angle
    rot = axis_angle_to_rotmat(aa)
    torch.testing.assert_close(rot @ rot.transpose(1, 2), torch.eye(3, dtype=DTYPE).expand(2, 3, 3), rtol=0, atol=1e-12)
    back = rotmat_to_axis_angle(rot)
    torch.testing.assert_close(axis_angle_to_rotmat(back), rot, rtol=0, atol=1e-9)  # ±π give the same rotation
    if angle < math.pi - 1e-3:
        torch.testing.assert_close(back, aa, rtol=0, atol=1e-9)
