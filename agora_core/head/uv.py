"""UV-space sampling of the head mesh: the Gaussians' anchor points x_uv (eq. 4-5) and UV baking
of per-vertex quantities such as the shape displacement ΔV_shape (eq. 6).

Conventions (docs/architecture.md): u, v in [0,1] with v up (OBJ); an R×R UV image has texel
(row r, column c) centred at u = (c + 0.5)/R, v = 1 − (r + 0.5)/R, so row 0 is v ≈ 1, matching
`torch.nn.functional.grid_sample(align_corners=False)` with gx = 2u − 1, gy = 1 − 2v.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

INSIDE_EPS = 1e-9  # barycentric slack so texel centres exactly on a shared edge are kept
CHUNK = 1 << 21  # candidate (texel, face) pairs tested per vectorised step


def _to_numpy(x) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


@dataclass
class UVSamples:
    """Points on the mesh addressed through the UV layout (texel centres inside UV islands).

    Attributes: x_uv [M,2] float32 (u, v up), face_idx [M] int64 (mesh face), bary [M,3] float32
    (weights of that face's three corners).
    """

    x_uv: torch.Tensor
    face_idx: torch.Tensor
    bary: torch.Tensor

    def __post_init__(self) -> None:
        m = self.x_uv.shape[0]
        assert self.x_uv.shape == (m, 2) and self.face_idx.shape == (m,) and self.bary.shape == (m, 3), (
            self.x_uv.shape, self.face_idx.shape, self.bary.shape)

    @property
    def num_samples(self) -> int:
        return self.x_uv.shape[0]

    def to(self, device) -> "UVSamples":
        return UVSamples(self.x_uv.to(device), self.face_idx.to(device), self.bary.to(device))

    def grid_coords(self) -> torch.Tensor:
        """[M,2] grid_sample coordinates (gx = 2u − 1, gy = 1 − 2v), for eq. (4)."""
        return torch.stack([2 * self.x_uv[:, 0] - 1, 1 - 2 * self.x_uv[:, 1]], dim=1)


@dataclass
class UVRasterMap:
    """Texel -> (face, barycentrics) map of a UV layout at resolution R.

    Attributes: face_idx [R,R] int64 (-1 outside every island), bary [R,R,3] float32 (zero outside).
    Built once by `build_uv_raster`; baking is then a gather (`bake`).
    """

    face_idx: torch.Tensor
    bary: torch.Tensor

    @property
    def resolution(self) -> int:
        return self.face_idx.shape[0]

    @property
    def valid(self) -> torch.Tensor:
        """[R,R] bool: texels inside some (allowed) UV triangle."""
        return self.face_idx >= 0

    def to(self, device) -> "UVRasterMap":
        return UVRasterMap(self.face_idx.to(device), self.bary.to(device))

    def bake(self, values: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
        """Per-vertex values [B,V,C] -> UV image [B,C,R,R] (barycentric interpolation; zeros
        outside islands). Used for the UV-aligned shape displacement map of eq. (6)."""
        assert values.ndim == 3, values.shape
        faces = torch.as_tensor(faces, device=values.device).long()
        assert faces.ndim == 2 and faces.shape[1] == 3, faces.shape
        b, _, c = values.shape
        r = self.resolution
        valid = self.valid.reshape(-1)
        face = self.face_idx.reshape(-1).clamp(min=0)
        bary = self.bary.reshape(-1, 3).to(values.dtype)
        baked = _barycentric_gather(values, faces[face], bary)  # [B,R*R,C]
        baked = baked * valid.to(values.dtype)[None, :, None]
        return baked.permute(0, 2, 1).reshape(b, c, r, r)


def _cells_in_boxes(lo: np.ndarray, hi: np.ndarray):
    """Enumerate the integer cells of inclusive boxes lo..hi [N,2] -> (box id, column, row)."""
    n_x, n_y = np.maximum(hi[:, 0] - lo[:, 0] + 1, 0), np.maximum(hi[:, 1] - lo[:, 1] + 1, 0)
    counts = n_x * n_y
    owner = np.repeat(np.arange(len(lo)), counts)
    local = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    width = np.maximum(n_x[owner], 1)
    return owner, lo[owner, 0] + local % width, lo[owner, 1] + local // width


def _texel_candidates(tri_all: np.ndarray, resolution: int, face_ids: np.ndarray):
    """(face, column, row-from-bottom) for every texel centre in each listed face's UV bbox.

    tri_all [F,3,2] UV triangles; face_ids: the faces to enumerate, in increasing order."""
    tri = tri_all[face_ids]
    lo = np.ceil(tri.min(axis=1) * resolution - 0.5).astype(np.int64)  # first centre >= min
    hi = np.floor(tri.max(axis=1) * resolution - 0.5).astype(np.int64)  # last centre <= max
    owner, col, row = _cells_in_boxes(np.clip(lo, 0, resolution - 1), np.clip(hi, 0, resolution - 1))
    return face_ids[owner], col, row


def _barycentrics(tri: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Barycentric coordinates [N,3] of points p [N,2] in triangles tri [N,3,2]."""
    a, b, c = tri[:, 0], tri[:, 1], tri[:, 2]
    v0, v1, v2 = b - a, c - a, p - a
    den = v0[:, 0] * v1[:, 1] - v1[:, 0] * v0[:, 1]
    w1 = (v2[:, 0] * v1[:, 1] - v1[:, 0] * v2[:, 1]) / den
    w2 = (v0[:, 0] * v2[:, 1] - v2[:, 0] * v0[:, 1]) / den
    return np.stack([1 - w1 - w2, w1, w2], axis=1)


def build_uv_raster(uv_coords, uv_faces, resolution: int, face_mask=None) -> UVRasterMap:
    """Rasterise the UV layout: for each texel centre the first allowed face containing it.

    Args:
        uv_coords [T,2], uv_faces [F,3]: the UV layout (numpy or torch).
        resolution: R.
        face_mask: optional bool [F], faces allowed to own texels (e.g. not the back of the head).
    Returns: `UVRasterMap` with face_idx [R,R] (-1 outside) and bary [R,R,3].
    Where UV triangles overlap the lowest face index wins.
    """
    uv = _to_numpy(uv_coords).astype(np.float64)
    uv_faces = _to_numpy(uv_faces).astype(np.int64)
    assert uv.ndim == 2 and uv.shape[1] == 2, uv.shape
    assert uv_faces.ndim == 2 and uv_faces.shape[1] == 3, uv_faces.shape
    assert resolution > 0
    tri_all = uv[uv_faces]
    e1, e2 = tri_all[:, 1] - tri_all[:, 0], tri_all[:, 2] - tri_all[:, 0]
    area2 = np.abs(e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0])
    allowed = area2 > 1e-14  # degenerate UV triangles own no texels
    if face_mask is not None:
        face_mask = _to_numpy(face_mask).astype(bool)
        assert face_mask.shape == (len(uv_faces),), face_mask.shape
        allowed &= face_mask
    face_ids, col, row = _texel_candidates(tri_all, resolution, np.nonzero(allowed)[0])
    best_face = np.full(resolution * resolution, -1, dtype=np.int64)
    best_bary = np.zeros((resolution * resolution, 3), dtype=np.float64)
    for s in range(0, len(face_ids), CHUNK):  # candidates come in increasing face order
        f, c, r = face_ids[s:s + CHUNK], col[s:s + CHUNK], row[s:s + CHUNK]
        p = (np.stack([c, r], axis=1) + 0.5) / resolution
        bary = _barycentrics(tri_all[f], p)
        inside = np.all(bary >= -INSIDE_EPS, axis=1)
        texel = (resolution - 1 - r) * resolution + c  # image row 0 is v = 1
        f, texel, bary = f[inside], texel[inside], bary[inside]
        texel_u, first = np.unique(texel, return_index=True)  # first hit = lowest face id
        take = best_face[texel_u] < 0
        best_face[texel_u[take]] = f[first[take]]
        best_bary[texel_u[take]] = np.clip(bary[first[take]], 0, 1)
    best_bary /= np.maximum(best_bary.sum(axis=1, keepdims=True), 1e-30)
    return UVRasterMap(torch.from_numpy(best_face.reshape(resolution, resolution)),
                       torch.from_numpy(best_bary.reshape(resolution, resolution, 3).astype(np.float32)))


def uv_validity_map(uv_coords, uv_faces, resolution: int, face_mask=None) -> torch.Tensor:
    """[R,R] bool: texels whose centre lies inside an (allowed) UV triangle."""
    return build_uv_raster(uv_coords, uv_faces, resolution, face_mask).valid


def sample_uv_grid(uv_coords, uv_faces, resolution: int, face_mask=None) -> UVSamples:
    """The predefined UV sample points x_uv of eq. (4): texel centres of an R×R grid that fall
    inside an allowed UV triangle, in image raster order (row 0 = v≈1), with face and barycentrics.
    """
    raster = build_uv_raster(uv_coords, uv_faces, resolution, face_mask)
    flat = raster.face_idx.reshape(-1)
    texel = torch.nonzero(flat >= 0).squeeze(1)
    row, col = texel // resolution, texel % resolution
    x_uv = torch.stack([(col + 0.5) / resolution, 1 - (row + 0.5) / resolution], dim=1)
    return UVSamples(x_uv.float(), flat[texel].long(), raster.bary.reshape(-1, 3)[texel].float())


def _barycentric_gather(values: torch.Tensor, corners: torch.Tensor, bary: torch.Tensor) -> torch.Tensor:
    """values [B,V,C], corners [M,3] vertex ids, bary [M,3] -> [B,M,C]: Σ_k bary[:, k] · values[corner k],
    one gather and one multiply-add per corner (at full size ~4x faster than gathering all three
    corners and summing over a dimension of 3)."""
    out = torch.index_select(values, 1, corners[:, 0]) * bary[None, :, 0, None]
    for k in (1, 2):
        out = out.addcmul(torch.index_select(values, 1, corners[:, k]), bary[None, :, k, None])
    return out


def bake_vertex_raster(values: torch.Tensor, raster_vertices: torch.Tensor, raster_bary: torch.Tensor) -> torch.Tensor:
    """Per-vertex values [B,V,C] -> UV image [B,C,R,R] through a raster that names each texel's three
    vertices (raster_vertices [R,R,3] long) and weights (raster_bary [R,R,3]; zero outside islands),
    the form the authors' checkpoints store (`assets.UVTables`)."""
    assert values.ndim == 3 and raster_vertices.shape == raster_bary.shape, (values.shape, raster_vertices.shape)
    r = raster_vertices.shape[0]
    corners = raster_vertices.reshape(-1, 3).to(values.device)
    baked = _barycentric_gather(values, corners, raster_bary.reshape(-1, 3).to(values))
    return baked.permute(0, 2, 1).reshape(values.shape[0], values.shape[2], r, r)


def locate_uv_points(uv_coords, uv_faces, x_uv, resolution: int = 1024) -> tuple[torch.Tensor, torch.Tensor]:
    """Face and barycentrics of arbitrary UV points x_uv [M,2] (u, v up): the face of the nearest
    covered texel of an R×R raster, barycentrics of the point in that face (slightly outside [0, 1]
    for points on a seam or just off an island). For sample grids given by a model file."""
    from scipy.ndimage import distance_transform_edt

    raster = build_uv_raster(uv_coords, uv_faces, resolution)
    face_img = raster.face_idx.numpy()
    _, (rows, cols) = distance_transform_edt(face_img < 0, return_indices=True)
    p = _to_numpy(x_uv).astype(np.float64)
    col = np.clip(np.floor(p[:, 0] * resolution).astype(np.int64), 0, resolution - 1)
    row = np.clip(np.floor((1 - p[:, 1]) * resolution).astype(np.int64), 0, resolution - 1)
    face = face_img[rows[row, col], cols[row, col]]
    uv = _to_numpy(uv_coords).astype(np.float64)
    tri = uv[_to_numpy(uv_faces).astype(np.int64)[face]]
    return torch.as_tensor(face, dtype=torch.long), torch.as_tensor(_barycentrics(tri, p), dtype=torch.float32)


def interpolate(vertices: torch.Tensor, faces: torch.Tensor, samples: UVSamples) -> torch.Tensor:
    """Interpolate(M(β,ψ,θ), x_uv) of eq. (5): base positions of the samples on the posed mesh.

    Args: vertices [B,V,C] (C=3 for positions; any C works), faces [F,3] long, samples (M points).
    Returns: [B,M,C].
    """
    assert vertices.ndim == 3 and faces.ndim == 2 and faces.shape[1] == 3, (vertices.shape, faces.shape)
    corners = faces.long()[samples.face_idx.to(faces.device)]
    return _barycentric_gather(vertices, corners, samples.bary.to(vertices.dtype))


def interpolate_reference(vertices: torch.Tensor, faces: torch.Tensor, samples: UVSamples) -> torch.Tensor:
    """Slow, obviously correct twin of `interpolate` (Python loop over samples)."""
    out = vertices.new_zeros(vertices.shape[0], samples.num_samples, vertices.shape[2])
    for m in range(samples.num_samples):
        face = faces[int(samples.face_idx[m])]
        for k in range(3):
            out[:, m] += samples.bary[m, k].to(vertices.dtype) * vertices[:, int(face[k])]
    return out


def bake_to_uv(values: torch.Tensor, faces, uv_faces, uv_coords, resolution: int) -> torch.Tensor:
    """Per-vertex values [B,V,C] -> UV image [B,C,R,R] (row 0 = v=1; zeros outside islands).

    Convenience wrapper that rasterises the layout on every call; in a loop, build the map once
    with `build_uv_raster` and call `raster.bake(values, faces)`.
    """
    assert values.ndim == 3, values.shape
    raster = build_uv_raster(uv_coords, uv_faces, resolution).to(values.device)
    return raster.bake(values, torch.as_tensor(faces))


def uv_occupancy(uv_coords, uv_faces, grid: int = 64) -> np.ndarray:
    """[G,G] bool (row = v cell from the bottom, column = u cell): cells a UV triangle touches.

    Exact (separating-axis test of each triangle against each cell of its bounding box), so a
    cell marked free is free of every triangle, however thin.
    """
    uv = _to_numpy(uv_coords).astype(np.float64)
    tri_all = uv[_to_numpy(uv_faces).astype(np.int64)]
    lo = np.clip(np.floor(tri_all.min(axis=1) * grid), 0, grid - 1).astype(np.int64)
    hi = np.clip(np.floor(tri_all.max(axis=1) * grid), 0, grid - 1).astype(np.int64)
    owner, col, row = _cells_in_boxes(lo, hi)
    tri = tri_all[owner]
    centre = (np.stack([col, row], axis=1) + 0.5) / grid
    overlap = np.ones(len(owner), dtype=bool)
    for k in range(3):  # the box axes are covered by the bounding-box candidate selection
        edge = tri[:, (k + 1) % 3] - tri[:, k]
        n = np.stack([-edge[:, 1], edge[:, 0]], axis=1)
        proj = np.einsum("nkd,nd->nk", tri, n)
        c = np.einsum("nd,nd->n", centre, n)
        r = 0.5 / grid * (np.abs(n[:, 0]) + np.abs(n[:, 1]))
        overlap &= (proj.max(axis=1) >= c - r) & (proj.min(axis=1) <= c + r)
    occ = np.zeros((grid, grid), dtype=bool)
    occ[row[overlap], col[overlap]] = True
    return occ


def find_free_uv_rect(uv_coords, uv_faces, grid: int = 64, min_cells: int = 4):
    """Largest empty axis-aligned rectangle (u0, v0, w, h) of the UV square, or None.

    Used to place the UVs of added geometry (mouth interior, appendix 0.B.1.1) without overlapping
    the existing islands. Cells touched by any triangle are occupied (`uv_occupancy`); the
    rectangle keeps half a cell of margin to them. Both sides must span >= `min_cells` cells.
    """
    occ = uv_occupancy(uv_coords, uv_faces, grid)
    heights = np.zeros(grid, dtype=np.int64)
    best, best_area = None, 0
    for row in range(grid):  # largest rectangle in a histogram, row by row
        heights = np.where(occ[row], 0, heights + 1)
        stack: list[int] = []
        for col in range(grid + 1):
            h = heights[col] if col < grid else 0
            while stack and heights[stack[-1]] >= h:
                top = stack.pop()
                left = stack[-1] + 1 if stack else 0
                w, hh = col - left, heights[top]
                if min(w, hh) >= min_cells and w * hh > best_area:
                    best_area, best = w * hh, (left, row - hh + 1, w, hh)
            stack.append(col)
    if best is None:
        return None
    c0, r0, w, h = best
    margin = 0.5 / grid
    return (c0 / grid + margin, r0 / grid + margin, w / grid - 2 * margin, h / grid - 2 * margin)
