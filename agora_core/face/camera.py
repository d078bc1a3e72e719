"""Cameras from estimated head rotations (paper sec. 4: "derive camera parameters from estimated
head rotations"): the head keeps zero global rotation and the camera orbits it instead.

World frame: FLAME canonical (metres, +y up, +z out of the face). The *frontal* camera sits at
``target + radius * e_z`` looking along -z (OpenCV axes: world-to-camera rotation
D = diag(1, -1, -1)). Rendering the head rotated about ``pivot`` by R = Rodrigues(global_pose),
``X' = R (X - pivot) + pivot``, with the frontal camera gives, in camera coordinates,

    D (X' - c_f) = D R (X - c),   c = pivot + Rᵀ (target + radius * e_z - pivot),

i.e. the unrotated head seen by a camera with world-to-camera rotation D R and centre c. With
pivot = target = 0 this is the brief's ``c = radius * Rᵀ e_z``; with target = 0 and pivot = J0
(FLAME's root joint) it is the AGORA code's ``c = J0 - Rᵀ J0 + Z0 * Rᵀ e_z``.

Intrinsics: the EG3D/GGHEAD ones (fx = fy = 4.2647, cx = cy = 0.5, normalised). AGORA's code
instead uses Z0 = 2.28 with focal 0.5 * s * Z0 from SMIRK's weak-perspective scale s; we use a
fixed ``radius`` with the fixed focal, so the head's image size does not follow s. The default
is `FLAME_CAMERA_RADIUS` (1.3): a metric FLAME head framed like the FFHQ-style dataset crop
(crop.py); EG3D's 2.7 (a 0.63 m window) would leave the head small in the image.
"""

from __future__ import annotations

import torch
from torch import Tensor

from agora_core.render.cameras import EG3D_FOCAL, FLAME_CAMERA_RADIUS, Camera, default_intrinsics

_FLIP_YZ = (1.0, -1.0, -1.0)  # D: world axes -> OpenCV camera axes for the frontal camera


def axis_angle_to_rotmat(axis_angle: Tensor) -> Tensor:
    """Rodrigues: [..., 3] axis-angle -> [..., 3, 3] rotation matrices (stable near zero)."""
    assert axis_angle.shape[-1] == 3, axis_angle.shape
    angle = axis_angle.norm(dim=-1, keepdim=True)[..., None]  # [..., 1, 1]
    x, y, z = axis_angle.unbind(-1)
    zero = torch.zeros_like(x)
    k = torch.stack([zero, -z, y, z, zero, -x, -y, x, zero], dim=-1).reshape(axis_angle.shape[:-1] + (3, 3))
    small = angle < 1e-6
    safe = torch.where(small, torch.ones_like(angle), angle)
    a = torch.where(small, 1.0 - angle**2 / 6.0, torch.sin(safe) / safe)  # sin(θ)/θ
    b = torch.where(small, 0.5 - angle**2 / 24.0, (1.0 - torch.cos(safe)) / safe**2)  # (1-cos θ)/θ²
    eye = torch.eye(3, dtype=axis_angle.dtype, device=axis_angle.device)
    return eye + a * k + b * (k @ k)


def rotmat_to_axis_angle(rotmat: Tensor) -> Tensor:
    """[..., 3, 3] rotation matrices -> [..., 3] axis-angle with angle in [0, π], via the unit
    quaternion (Shepperd's branch on the largest of w², x², y², z², stable at all angles)."""
    assert rotmat.shape[-2:] == (3, 3), rotmat.shape
    (m00, m01, m02), (m10, m11, m12), (m20, m21, m22) = (row.unbind(-1) for row in rotmat.unbind(-2))
    trace = m00 + m11 + m22
    rows = torch.stack(  # row i = 4 q_i (w, x, y, z); its diagonal entry is 4 q_i²
        [
            torch.stack([1 + trace, m21 - m12, m02 - m20, m10 - m01], -1),
            torch.stack([m21 - m12, 1 + m00 - m11 - m22, m01 + m10, m02 + m20], -1),
            torch.stack([m02 - m20, m01 + m10, 1 - m00 + m11 - m22, m12 + m21], -1),
            torch.stack([m10 - m01, m02 + m20, m12 + m21, 1 - m00 - m11 + m22], -1),
        ],
        dim=-2,
    )  # [..., 4, 4]
    best = torch.diagonal(rows, dim1=-2, dim2=-1).argmax(dim=-1)  # largest |q_i|: best conditioned
    quat = torch.gather(rows, -2, best[..., None, None].expand(best.shape + (1, 4)))[..., 0, :]
    quat = quat / quat.norm(dim=-1, keepdim=True)
    quat = torch.where(quat[..., :1] < 0, -quat, quat)  # w >= 0: angle in [0, π]
    w, xyz = quat[..., 0], quat[..., 1:]
    sin_half = xyz.norm(dim=-1)
    angle = 2.0 * torch.atan2(sin_half, w)
    scale = torch.where(sin_half < 1e-8, 2.0 / w.clamp_min(1e-8), angle / sin_half.clamp_min(1e-12))
    return xyz * scale[..., None]


def camera_from_head_pose(
    global_pose: Tensor,
    pivot: Tensor | None = None,
    target: Tensor | None = None,
    radius: float = FLAME_CAMERA_RADIUS,
    focal: float = EG3D_FOCAL,
) -> Camera:
    """The orbiting camera that sees the unrotated head as the frontal camera sees the rotated one.

    Args:
        global_pose: [B, 3] FLAME global rotation (axis-angle) estimated from the image.
        pivot: [3] point the head rotates about (FLAME's root joint J0 for LBS); default origin.
        target: [3] point the frontal camera looks at; default origin.
        radius: frontal camera distance to ``target`` (see module docstring).
    Returns:
        `Camera` with cam2world [B, 4, 4] (OpenCV axes) and EG3D intrinsics [B, 3, 3].
    """
    b = global_pose.shape[0]
    assert global_pose.shape == (b, 3), global_pose.shape
    dtype, device = global_pose.dtype, global_pose.device
    pivot = _point(pivot, dtype, device)
    target = _point(target, dtype, device)
    rot = axis_angle_to_rotmat(global_pose)  # [B, 3, 3] R_head
    flip = torch.tensor(_FLIP_YZ, dtype=dtype, device=device)
    world2cam_rot = flip[None, :, None] * rot  # D R
    offset = target + torch.tensor([0.0, 0.0, radius], dtype=dtype, device=device) - pivot
    centre = pivot + torch.einsum("bji,j->bi", rot, offset)  # pivot + Rᵀ offset
    cam2world = torch.eye(4, dtype=dtype, device=device).repeat(b, 1, 1)
    cam2world[:, :3, :3] = world2cam_rot.transpose(1, 2)
    cam2world[:, :3, 3] = centre
    return Camera(cam2world, default_intrinsics(b, focal, dtype=dtype, device=device))


def head_pose_from_camera(camera: Camera) -> Tensor:
    """[B, 3] axis-angle head pose of an orbiting camera (inverse of `camera_from_head_pose`).

    The camera's rotation alone determines the pose: R_head = D · R_world2cam with
    D = diag(1, -1, -1); its centre only encodes pivot/target/radius, so none are needed here.
    """
    world2cam_rot = camera.cam2world[:, :3, :3].transpose(1, 2)
    flip = torch.tensor(_FLIP_YZ, dtype=world2cam_rot.dtype, device=world2cam_rot.device)
    return rotmat_to_axis_angle(flip[None, :, None] * world2cam_rot)


def _point(p: Tensor | None, dtype: torch.dtype, device: torch.device) -> Tensor:
    if p is None:
        return torch.zeros(3, dtype=dtype, device=device)
    p = torch.as_tensor(p, dtype=dtype, device=device)
    assert p.shape == (3,), p.shape
    return p


__all__ = [
    "axis_angle_to_rotmat",
    "camera_from_head_pose",
    "head_pose_from_camera",
    "rotmat_to_axis_angle",
]
