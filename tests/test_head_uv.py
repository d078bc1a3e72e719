"""UV sampling (eq. 4-5) and UV baking (eq. 6): conventions, fast path vs reference, coverage."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from tolerances import rounding_tol

from agora_core.head import (
    UVSamples,
    bake_to_uv,
    build_uv_raster,
    find_free_uv_rect,
    interpolate,
    interpolate_reference,
    sample_uv_grid,
    uv_validity_map,
)
from agora_core.head.uv import uv_occupancy


def grid_mesh(n: int = 12, islands: int = 2, seed: int = 0):
    """`islands` separate n×n vertex grids; island k's UVs fill a box in the left 60% of [0,1]².

    Every vertex has exactly one UV (no seams), so a per-vertex value linear in u is reproduced
    exactly by barycentric interpolation. Returns vertices [V,3], faces [F,3], uv [V,2].
    """
    rng = np.random.default_rng(seed)
    verts, faces, uvs = [], [], []
    for k in range(islands):
        ii, jj = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
        base = k * n * n
        u = 0.05 + 0.5 * jj.ravel() / (n - 1)
        v = 0.05 + k * 0.47 + 0.4 * ii.ravel() / (n - 1)
        uvs.append(np.stack([u, v], 1))
        verts.append(np.stack([jj.ravel(), ii.ravel(), rng.normal(size=n * n)], 1) * 0.01 + k)
        idx = np.arange(n * n).reshape(n, n) + base
        a, b, c, d = idx[:-1, :-1].ravel(), idx[:-1, 1:].ravel(), idx[1:, 1:].ravel(), idx[1:, :-1].ravel()
        faces.append(np.concatenate([np.stack([a, b, c], 1), np.stack([a, c, d], 1)]))
    return np.concatenate(verts), np.concatenate(faces), np.concatenate(uvs)


def test_samples_are_texel_centres_inside_islands():
    _, faces, uv = grid_mesh()
    s = sample_uv_grid(uv, faces, 64)
    assert s.x_uv.dtype == torch.float32 and s.face_idx.dtype == torch.int64 and s.bary.dtype == torch.float32
    texel = s.x_uv * 64 - 0.5
    torch.testing.assert_close(texel, texel.round(), atol=1e-4, rtol=0)
    assert (s.bary >= 0).all() and torch.allclose(s.bary.sum(1), torch.ones(s.num_samples))
    # the barycentrics reproduce x_uv from the face's UV corners
    corners = torch.as_tensor(uv, dtype=torch.float32)[torch.as_tensor(faces)[s.face_idx]]
    torch.testing.assert_close((corners * s.bary[:, :, None]).sum(1), s.x_uv, atol=1e-5, rtol=0)


def test_sample_count_scales_with_resolution_squared():
    _, faces, uv = grid_mesh()
    counts = [sample_uv_grid(uv, faces, r).num_samples for r in (64, 128, 256)]
    covered = 2 * 0.5 * 0.4  # two islands of 0.5 × 0.4
    for r, c in zip((64, 128, 256), counts):
        assert abs(c / r**2 - covered) < 0.03, (r, c)
    assert 3.8 < counts[1] / counts[0] < 4.2 and 3.9 < counts[2] / counts[1] < 4.1


def test_face_mask_and_first_face_wins():
    uv = np.array([[0.1, 0.1], [0.9, 0.1], [0.1, 0.9]])
    faces = np.array([[0, 1, 2], [0, 1, 2]])  # two identical (overlapping) UV triangles
    s = sample_uv_grid(uv, faces, 32)
    assert (s.face_idx == 0).all()
    s = sample_uv_grid(uv, faces, 32, face_mask=np.array([False, True]))
    assert (s.face_idx == 1).all() and s.num_samples > 0
    assert sample_uv_grid(uv, faces, 32, face_mask=np.array([False, False])).num_samples == 0


def test_grid_coords_match_grid_sample_convention():
    _, faces, uv = grid_mesh()
    s = sample_uv_grid(uv, faces, 32)
    r = 32
    cols = (torch.arange(r) + 0.5) / r
    rows_v = 1 - (torch.arange(r) + 0.5) / r  # row 0 is v ≈ 1
    image = torch.stack([cols[None, :].expand(r, r), rows_v[:, None].expand(r, r)])[None]  # [1,2,R,R]
    got = F.grid_sample(image, s.grid_coords()[None, None], align_corners=False)[0, :, 0].T
    # float32 on both sides, values in [0, 1]: the grid coordinates (2 roundings each) and x_uv (2), the
    # pixel position and bilinear weights inside grid_sample (4), its 4-term weighted sum (4)
    torch.testing.assert_close(got, s.x_uv, atol=rounding_tol(torch.float32, 1.0, steps=12), rtol=0)


def test_interpolate_matches_reference_and_corners():
    verts, faces, uv = grid_mesh(n=6)
    s = sample_uv_grid(uv, faces, 32)
    g = torch.Generator().manual_seed(0)
    vertices = torch.randn(2, len(verts), 3, generator=g, dtype=torch.float64)
    faces_t = torch.as_tensor(faces)
    rand = UVSamples(s.x_uv, s.face_idx, torch.rand(s.num_samples, 3, generator=g).softmax(1).float())
    for samples in (s, rand):
        fast = interpolate(vertices, faces_t, samples)
        assert fast.shape == (2, samples.num_samples, 3)
        # float64 vertices, same float32 weights: only summation order differs
        torch.testing.assert_close(fast, interpolate_reference(vertices, faces_t, samples),
                                   atol=1e-12, rtol=0)
    vertices.requires_grad_(True)  # gradients of the two paths agree as well
    (g1,) = torch.autograd.grad(interpolate(vertices, faces_t, rand).square().sum(), vertices)
    (g2,) = torch.autograd.grad(interpolate_reference(vertices, faces_t, rand).square().sum(), vertices)
    torch.testing.assert_close(g1, g2, atol=1e-12, rtol=0)
    corner = UVSamples(torch.zeros(3, 2), torch.tensor([5, 5, 9]),
                       torch.tensor([[1.0, 0, 0], [0, 0, 1.0], [0, 1.0, 0]]))
    out = interpolate(vertices.detach(), faces_t, corner)
    want = vertices.detach()[:, [faces[5, 0], faces[5, 2], faces[9, 1]]]
    torch.testing.assert_close(out, want)


def test_bake_linear_function_reproduces_u():
    verts, faces, uv = grid_mesh()
    values = torch.as_tensor(np.stack([uv[:, 0], uv[:, 1] * 2], 1), dtype=torch.float32)[None]  # [1,V,2]
    r = 48
    baked = bake_to_uv(values, faces, faces, uv, r)
    assert baked.shape == (1, 2, r, r)
    valid = uv_validity_map(uv, faces, r)
    cols = ((torch.arange(r) + 0.5) / r)[None, :].expand(r, r)
    rows_v = (1 - (torch.arange(r) + 0.5) / r)[:, None].expand(r, r)
    torch.testing.assert_close(baked[0, 0][valid], cols[valid], atol=1e-5, rtol=0)
    torch.testing.assert_close(baked[0, 1][valid], 2 * rows_v[valid], atol=1e-5, rtol=0)
    assert (baked[0][:, ~valid] == 0).all() and valid.any() and not valid.all()
    raster = build_uv_raster(uv, faces, r)
    torch.testing.assert_close(raster.bake(values.repeat(3, 1, 1), torch.as_tensor(faces)),
                               baked.repeat(3, 1, 1, 1))
    # samples and raster agree texel for texel
    s = sample_uv_grid(uv, faces, r)
    assert s.num_samples == int(raster.valid.sum())


def test_free_uv_rect_avoids_islands():
    _, faces, uv = grid_mesh()
    rect = find_free_uv_rect(uv, faces)
    u0, v0, w, h = rect
    assert u0 >= 0.55 and u0 + w <= 1 and v0 >= 0 and v0 + h <= 1 and w * h > 0.3
    occ = uv_occupancy(uv, faces, 64)
    assert occ[5:20, 5:30].all() and not occ[:, 40:].any()
    full = np.array([[0, 0], [1, 0], [1, 1], [0, 1]], dtype=float)
    assert find_free_uv_rect(full, np.array([[0, 1, 2], [0, 2, 3]])) is None
