"""Reference checks of the maths added for imported models (float64 where it states exactness)."""

from __future__ import annotations

import math

import torch

from agora_core.gaussians import colour_sh, normalize_quat_columns, opacity, rotation_axis_angle
from agora_core.gaussians.quaternions import quat_to_rotmat
from agora_core.head.uv import bake_vertex_raster
from agora_core.render.cameras import deca_camera, deca_mapping_label

F64 = 1e-12  # float64 comparisons of a handful of operations


def _rodrigues(v: torch.Tensor) -> torch.Tensor:
    """R = I + sin θ K + (1 − cos θ) K² for the rotation vector v [3] (textbook)."""
    theta = v.norm()
    k = v / theta
    kx = torch.tensor([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]], dtype=v.dtype)
    return torch.eye(3, dtype=v.dtype) + math.sin(theta) * kx + (1 - math.cos(theta)) * kx @ kx


def test_rotation_axis_angle_is_rodrigues_of_pi_tanh():
    raw = torch.randn(20, 3, dtype=torch.float64) * 2
    got = quat_to_rotmat(rotation_axis_angle(raw))
    for i in range(raw.shape[0]):
        assert torch.allclose(got[i], _rodrigues(math.pi * torch.tanh(raw[i])), atol=F64)


def test_column_normalisation_matches_a_loop_and_has_its_gradient():
    q = torch.randn(2, 7, 4, dtype=torch.float64, requires_grad=True)
    ref = torch.empty_like(q)
    for b in range(2):
        cols = [math.sqrt(sum(float(q.detach()[b, g, c]) ** 2 for g in range(7))) for c in range(4)]
        for g in range(7):
            ref[b, g] = torch.tensor([float(q.detach()[b, g, c]) / cols[c] for c in range(4)], dtype=torch.float64)
    assert torch.allclose(normalize_quat_columns(q), ref, atol=F64)
    assert torch.autograd.gradcheck(normalize_quat_columns, (q,))


def test_overshoot_widens_colour_and_opacity_ranges():
    big = torch.tensor([-50.0, 0.0, 50.0], dtype=torch.float64)
    assert torch.allclose(opacity(big, 0.001), torch.tensor([-0.001, 0.5, 1.001], dtype=torch.float64), atol=F64)
    dc = 0.5 + 0.28209479177387814 * colour_sh(big[:, None].expand(3, 3), 0, 0.001)[:, 0, 0]
    assert torch.allclose(dc, torch.tensor([-0.0015, 0.4995, 1.0005], dtype=torch.float64), atol=F64)


def test_bake_vertex_raster_matches_a_loop():
    values = torch.randn(2, 9, 3, dtype=torch.float64)
    verts = torch.randint(0, 9, (4, 4, 3))
    bary = torch.rand(4, 4, 3, dtype=torch.float64)
    got = bake_vertex_raster(values, verts, bary)
    for b in range(2):
        for i in range(4):
            for j in range(4):
                ref = sum(bary[i, j, k] * values[b, verts[i, j, k]] for k in range(3))
                assert torch.allclose(got[b, :, i, j], ref, atol=F64)


def test_deca_camera_orbits_the_pivot():
    """Head rotation R is a camera orbit about the pivot: the identity-rotation camera at z0·e_z
    looking at the origin, rotated by Rᵀ about the pivot."""
    cam6 = torch.tensor([[0.3, -0.2, 0.1, 9.0, 0.02, -0.01], [0.0, 0.0, 0.0, 8.0, 0.0, 0.0]], dtype=torch.float64)
    pivot = torch.tensor([[0.01, -0.02, 0.03], [0.0, 0.1, 0.0]], dtype=torch.float64)
    cam = deca_camera(cam6, pivot)
    ez = torch.tensor([0.0, 0.0, 2.28], dtype=torch.float64)
    assert torch.allclose((cam.position() - pivot).norm(dim=1), (ez - pivot).norm(dim=1), atol=F64)
    rot_t = quat_to_rotmat(rotation_axis_angle(torch.zeros(1, 3, dtype=torch.float64)))  # identity
    assert torch.allclose(cam.cam2world[1, :3, :3], torch.diag(torch.tensor([1.0, -1.0, -1.0], dtype=torch.float64)) @ rot_t[0], atol=F64)
    r = torch.stack([_rodrigues(cam6[0, :3]), torch.eye(3, dtype=torch.float64)])
    origin = pivot - (r.transpose(1, 2) @ pivot[:, :, None])[:, :, 0]  # the world origin, orbited
    p = cam.world2cam() @ torch.cat([origin, torch.ones(2, 1, dtype=torch.float64)], 1)[:, :, None]
    uv = (cam.intrinsics @ p[:, :3])[:, :2, 0] / p[:, 2]
    assert torch.allclose(uv, cam.intrinsics[:, :2, 2], atol=F64)
    assert torch.allclose(cam.intrinsics[:, 0, 0], 0.5 * cam6[:, 3] * 2.28, atol=F64)
    label = deca_mapping_label(cam6)
    assert torch.allclose(label[:, :9].reshape(2, 3, 3), r, atol=F64) and (label[:, 9:] == 0).all()


def test_the_mapping_label_of_a_camera_is_the_head_rotation_it_realises():
    """`deca_mapping_label_of(deca_camera(c, pivot))` gives back `deca_mapping_label(c)` for any pivot and
    framing; the frontal EG3D camera (looking down −z) realises no head rotation."""
    from agora_core.render import FLAME_CAMERA_RADIUS, orbit_cameras
    from agora_core.render.cameras import deca_mapping_label_of

    g = torch.Generator().manual_seed(3)
    cam6 = torch.cat([0.4 * torch.randn(5, 3, generator=g, dtype=torch.float64),
                      8 + torch.rand(5, 1, generator=g, dtype=torch.float64),
                      0.05 * torch.randn(5, 2, generator=g, dtype=torch.float64)], dim=1)
    pivot = 0.05 * torch.randn(5, 3, generator=g, dtype=torch.float64)
    assert torch.allclose(deca_mapping_label_of(deca_camera(cam6, pivot)), deca_mapping_label(cam6), atol=F64)
    frontal = orbit_cameras(torch.zeros(1), torch.zeros(1), FLAME_CAMERA_RADIUS, (0.0, 0.0, 0.0))
    expected = torch.cat([torch.eye(3).reshape(1, 9), torch.zeros(1, 3)], dim=1)
    assert torch.allclose(deca_mapping_label_of(frontal), expected, atol=1e-6)
