"""Unit-quaternion algebra for Gaussian rotations (w, x, y, z; Hamilton product), pure torch.

Rotations of the main and deformation branches are composed by quaternion multiplication
(paper sec. 3.4). Every function here is smooth and NaN-free at the identity, so gradients can
flow through zero rotations (a zero residual is the common case at initialisation).

`quat_to_rotmat` and `rotmat_to_quat` are the slow, obviously correct twins used to check the
quaternion fast paths (R(q1 ⊗ q2) = R(q1) · R(q2)).
"""

from __future__ import annotations

import torch
from torch import Tensor

# Below this squared angle (rad^2) the series forms are used: their truncation error is O(theta^4)
# ~ 1e-16, below float64 resolution, and they avoid 0/0 in value and gradient.
_SMALL_ANGLE_SQ = 1e-8


def normalize_quat(q: Tensor, eps: float = 1e-12) -> Tensor:
    """Unit quaternion q / |q|; a (near-)zero quaternion maps to the identity (1, 0, 0, 0).

    Args:
        q: [..., 4] (w, x, y, z), any norm.
    Returns:
        [..., 4] unit quaternions. Gradients are finite everywhere (zero where |q| < eps).
    """
    assert q.shape[-1] == 4, q.shape
    # The squared norm as a sum, not `torch.linalg.vector_norm`: on a transposed [B, C, N] view (how
    # the UV planes hand out per-Gaussian attributes, models/lifting.py) the latter runs strided,
    # ~15x slower at full size (`benchmarks/cpu_full_size.py`).
    floor = max(eps * eps, torch.finfo(q.dtype).tiny)
    sq = q.square().sum(-1, keepdim=True)
    unit = q / sq.clamp_min(floor).sqrt()
    identity = torch.zeros_like(q)
    identity[..., 0] = 1.0
    return torch.where(sq < floor, identity, unit)


def quat_multiply(q1: Tensor, q2: Tensor) -> Tensor:
    """Hamilton product q1 ⊗ q2 (apply q2 first, then q1: R(q1 ⊗ q2) = R(q1) · R(q2)).

    Args:
        q1, q2: [..., 4] (w, x, y, z), broadcastable.
    Returns:
        [..., 4]; unit if both inputs are unit (renormalise after long chains).
    """
    assert q1.shape[-1] == 4 and q2.shape[-1] == 4, (q1.shape, q2.shape)
    w1, x1, y1, z1 = q1.unbind(-1)
    w2, x2, y2, z2 = q2.unbind(-1)
    return torch.stack(
        [
            w1 * w2 - x1 * x2 - y1 * y2 - z1 * z2,
            w1 * x2 + x1 * w2 + y1 * z2 - z1 * y2,
            w1 * y2 - x1 * z2 + y1 * w2 + z1 * x2,
            w1 * z2 + x1 * y2 - y1 * x2 + z1 * w2,
        ],
        dim=-1,
    )


def axis_angle_to_quat(axis_angle: Tensor) -> Tensor:
    """Rotation vector (axis · angle, radians) -> unit quaternion (cos θ/2, sin(θ/2) · axis).

    Args:
        axis_angle: [..., 3].
    Returns:
        [..., 4] (w, x, y, z) with w = cos(θ/2) >= 0 for θ <= π.
    """
    assert axis_angle.shape[-1] == 3, axis_angle.shape
    theta_sq = (axis_angle * axis_angle).sum(-1, keepdim=True)
    small = theta_sq < _SMALL_ANGLE_SQ
    # Double-where: the unused branch must see a safe argument, or its NaN gradient leaks through.
    theta = torch.sqrt(torch.where(small, torch.ones_like(theta_sq), theta_sq))
    w = torch.where(small, 1.0 - theta_sq / 8.0, torch.cos(0.5 * theta))
    sin_half_over_theta = torch.where(small, 0.5 - theta_sq / 48.0, torch.sin(0.5 * theta) / theta)
    return torch.cat([w, axis_angle * sin_half_over_theta], dim=-1)


def quat_to_rotmat(q: Tensor) -> Tensor:
    """Rotation matrix of a quaternion (normalised first).

    Args:
        q: [..., 4] (w, x, y, z).
    Returns:
        [..., 3, 3] R with R @ v rotating column vectors v.
    """
    assert q.shape[-1] == 4, q.shape
    w, x, y, z = normalize_quat(q).unbind(-1)
    rows = [
        1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
        2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
        2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
    ]  # fmt: skip
    return torch.stack(rows, dim=-1).reshape(*q.shape[:-1], 3, 3)


def rotmat_to_quat(rot: Tensor) -> Tensor:
    """Unit quaternion of a rotation matrix (Shepperd's method; slow reference path).

    Of the four algebraically equal formulas, the one whose pivot (4w², 4x², 4y² or 4z²) is largest
    is used, so the division is always by at least 1/2 and the result is stable. The sign of the
    result is arbitrary (q and −q are the same rotation); compare up to sign.

    Args:
        rot: [..., 3, 3] rotation matrices.
    Returns:
        [..., 4] (w, x, y, z).
    """
    assert rot.shape[-2:] == (3, 3), rot.shape
    r = rot.reshape(*rot.shape[:-2], 9)
    r00, r01, r02, r10, r11, r12, r20, r21, r22 = r.unbind(-1)
    pivots = torch.stack(
        [1 + r00 + r11 + r22, 1 + r00 - r11 - r22, 1 - r00 + r11 - r22, 1 - r00 - r11 + r22], dim=-1
    )
    # The chosen pivot is >= 1 (the four sum to 4); the clamp only keeps unused candidates finite.
    s = 2.0 * torch.sqrt(pivots.clamp_min(0.1))  # s = 4 · (pivot component)
    s_w, s_x, s_y, s_z = s.unbind(-1)
    candidates = torch.stack(
        [
            torch.stack([s_w / 4, (r21 - r12) / s_w, (r02 - r20) / s_w, (r10 - r01) / s_w], -1),
            torch.stack([(r21 - r12) / s_x, s_x / 4, (r01 + r10) / s_x, (r02 + r20) / s_x], -1),
            torch.stack([(r02 - r20) / s_y, (r01 + r10) / s_y, s_y / 4, (r12 + r21) / s_y], -1),
            torch.stack([(r10 - r01) / s_z, (r02 + r20) / s_z, (r12 + r21) / s_z, s_z / 4], -1),
        ],
        dim=-2,
    )  # [..., 4 candidates, 4]
    best = pivots.argmax(-1)[..., None, None].expand(*pivots.shape[:-1], 1, 4)
    return normalize_quat(torch.gather(candidates, -2, best).squeeze(-2))
