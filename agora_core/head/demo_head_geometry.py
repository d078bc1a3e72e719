"""Procedural demo head, part 1: the template surface, built by code in FLAME's canonical frame.

Metres, +y up, +z towards the face, +x the head's left; sized like FLAME (crown to chin ~0.23 m).

Construction (pure numpy, deterministic):
1. A smooth implicit *base* volume: cranium, mid-face and (V-tapered) jaw ellipsoids and a neck
   cylinder, joined by a soft minimum.
2. A latitude/longitude grid of rays -- crown pole to neck bottom, seam at the back of the head,
   denser on the face -- each cut with the base surface: one vertex per grid node.
3. Facial relief (`demo_head_relief`) as height fields on top of the base: brow ridge, nose,
   cheekbones, lips around a closed slit, chin, eye sockets with lids over the eyeballs, ears.
   Before that, grid rows are snapped to the inner-lip line and the eyelid margins.
4. The mouth: the quads between the two slit rows are removed, so the hole's boundary is the
   inner-lip loop; the rest of the surface is closed (the neck bottom stays open, as in FLAME).
5. Two closed eyeballs, each its own UV island.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from agora_core.head.demo_head_relief import (  # noqa: F401  (landmarks re-exported)
    EAR_CENTRE,
    EYE_CENTRE,
    EYE_OPENING,
    EYE_RADIUS,
    MOUTH_HALF_WIDTH,
    MOUTH_Y,
    NASION_Y,
    NOSE_TIP_Y,
    SUBNASALE_Y,
    eye_curves,
    eye_region,
    facial_relief,
    front_mask,
    mouth_lateral,
    opening_depth,
    smoothstep,
)

# --- grid ---------------------------------------------------------------------------------------
NUM_COLUMNS = 76  # azimuth samples; column 0 is the back midline (the UV seam), NUM_COLUMNS//2 the front
NUM_HEAD_ROWS = 60  # rings cast from the head centre, crown -> under the chin
NUM_NECK_ROWS = 7  # rings cast from the neck axis
FACE_COLUMN_DENSITY = 7.0  # columns per radian on the face relative to the back of the head
SIDE_COLUMN_DENSITY = 2.2  # ... around the ears
FACE_ROW_DENSITY = 5.0  # rows per radian from brow to chin relative to the crown
POLAR_START, POLAR_END = np.radians(5.0), np.radians(160.0)

# --- base volume (centre, semi-axes) ---------------------------------------------------------------
HEAD_CENTRE = np.array([0.0, 0.02, -0.005])  # ray origin of the head rings
CRANIUM = (np.array([0.0, 0.026, -0.012]), np.array([0.076, 0.1, 0.101]))
CRANIUM_POWER = 2.35
MIDFACE = (np.array([0.0, -0.004, 0.024]), np.array([0.064, 0.058, 0.066]))
JAW = (np.array([0.0, -0.054, 0.02]), np.array([0.06, 0.05, 0.066]))
JAW_TAPER = 0.36  # the jaw narrows towards the chin (V shape seen from below)
NECK_AXIS_Z, NECK_RADII, NECK_TOP = -0.024, np.array([0.054, 0.05]), -0.035
NECK_BOTTOM_Y = -0.175
SOFT_UNION = 0.011

EYEBALL_RINGS = np.radians([14.0, 28.0, 44.0, 62.0, 84.0, 112.0, 145.0])
EYEBALL_SEGMENTS = 12
UV_FREE_STRIP = 0.135  # v below this stays free for the eyeballs and the mouth interior
EYEBALL_UV_BOXES = ((0.72, 0.01, 0.835, 0.125), (0.855, 0.01, 0.97, 0.125))  # left, right


@dataclass
class HeadSurface:
    """The template mesh and the bookkeeping the rig and blendshapes are built from.

    Attributes:
        vertices [V,3], faces [F,3], uv_coords [T,2], uv_faces [F,3].
        row, col [V] int: grid node of each vertex (-1 for the crown pole and the eyeballs).
        left_eyeball, right_eyeball: vertex ids of the two eyeball spheres.
        eye_centres [2,3]: left, right eyeball centres.
        upper_lip, lower_lip: the inner-lip loop split in two, each ordered by increasing x.
        mouth_row: grid row of the upper inner lip (the lower one is mouth_row + 1).
        azimuth, polar [V]: the ray angles of the grid vertices (0 for the others).
        eye_opening [V] bool: skin inside the lid openings (hidden inside the eyeballs).
        eye_rows: per eye (left, right) the grid rows (upper, lower) of the lid margins.
    """

    vertices: np.ndarray
    faces: np.ndarray
    uv_coords: np.ndarray
    uv_faces: np.ndarray
    row: np.ndarray
    col: np.ndarray
    left_eyeball: np.ndarray
    right_eyeball: np.ndarray
    eye_centres: np.ndarray
    upper_lip: np.ndarray
    lower_lip: np.ndarray
    mouth_row: int
    azimuth: np.ndarray
    polar: np.ndarray
    eye_opening: np.ndarray
    eye_rows: tuple


def _ellipsoid_field(p, centre, axes, taper=0.0, power=2.0):
    """Approximate signed distance [N] to an ellipsoid (power 2) or a rounder-boxed superellipsoid
    (power > 2); first-order estimate, exact zero set. `taper` narrows x towards +z."""
    q = p - centre
    if taper:
        q = q.copy()
        q[:, 0] = q[:, 0] / (1.0 - taper * np.clip(q[:, 2] / axes[2], 0.0, 1.0))
    k0 = (np.abs(q / axes) ** power).sum(axis=1) ** (1.0 / power)
    k1 = np.linalg.norm(q / axes**2, axis=1)
    return k0 * (k0 - 1.0) / np.maximum(k1, 1e-12)


def base_field(p: np.ndarray) -> np.ndarray:
    """Implicit base volume [N] (< 0 inside) at points p [N,3]: soft union of skull, face, jaw, neck."""
    assert p.ndim == 2 and p.shape[1] == 3, p.shape
    q = (p[:, [0, 2]] - [0.0, NECK_AXIS_Z]) / NECK_RADII
    neck = (np.linalg.norm(q, axis=1) - 1.0) * NECK_RADII.min()
    neck = np.maximum(neck, p[:, 1] - NECK_TOP)
    parts = np.stack([_ellipsoid_field(p, *CRANIUM, power=CRANIUM_POWER), _ellipsoid_field(p, *MIDFACE),
                      _ellipsoid_field(p, *JAW, taper=JAW_TAPER), neck], axis=1)
    m = parts.min(axis=1, keepdims=True)
    return m[:, 0] - SOFT_UNION * np.log(np.exp(-(parts - m) / SOFT_UNION).sum(axis=1))


def base_normals(p: np.ndarray) -> np.ndarray:
    """Unit outward normals [N,3] of the base field (central differences)."""
    h = 1e-5
    g = np.stack([base_field(p + h * e) - base_field(p - h * e) for e in np.eye(3)], axis=1)
    return g / np.linalg.norm(g, axis=1, keepdims=True)


def _warp(n: int, lo: float, hi: float, density, endpoint: bool) -> np.ndarray:
    """n samples of [lo, hi] spaced inversely to `density` (inverse-CDF warping)."""
    grid = np.linspace(lo, hi, 8193)
    d = density(grid)
    cdf = np.concatenate([[0.0], np.cumsum(0.5 * (d[1:] + d[:-1]) * np.diff(grid))])
    cdf /= cdf[-1]
    targets = np.linspace(0.0, 1.0, n) if endpoint else np.arange(n) / n
    return np.interp(targets, cdf, grid)


def column_azimuths() -> np.ndarray:
    """[NUM_COLUMNS] azimuths (0 = front, +pi/2 = the head's left), symmetric, column 0 at -pi."""
    def density(a):
        a = np.abs(a)
        return (1.0 + (SIDE_COLUMN_DENSITY - 1.0) * smoothstep(np.radians(125), np.radians(80), a)
                + (FACE_COLUMN_DENSITY - SIDE_COLUMN_DENSITY) * smoothstep(np.radians(60), np.radians(38), a))
    alpha = _warp(NUM_COLUMNS, -np.pi, np.pi, density, endpoint=False)
    half = NUM_COLUMNS // 2
    alpha[half + 1:] = -alpha[half - 1:0:-1]  # exact mirror symmetry about the front column
    alpha[half] = 0.0
    return alpha


def row_polars() -> np.ndarray:
    """[NUM_HEAD_ROWS] polar angles from +y of the head rings, dense from brow to chin."""
    def density(p):
        face = smoothstep(np.radians(50), np.radians(66), p) * smoothstep(np.radians(158), np.radians(140), p)
        return 1.0 + (FACE_ROW_DENSITY - 1.0) * face + (0.5 * FACE_ROW_DENSITY - 1.0) * smoothstep(
            np.radians(140), np.radians(150), p)
    return _warp(NUM_HEAD_ROWS, POLAR_START, POLAR_END, density, endpoint=True)


def _cast(origins: np.ndarray, dirs: np.ndarray, r_max: float = 0.32, steps: int = 160) -> np.ndarray:
    """Distance along each ray [N] to the base surface's outermost crossing (sample + bisect)."""
    t = np.linspace(0.0, r_max, steps)
    pts = origins[:, None, :] + t[None, :, None] * dirs[:, None, :]
    inside = (base_field(pts.reshape(-1, 3)) < 0).reshape(len(origins), steps)
    assert inside[:, 0].all() and not inside[:, -1].any(), "a ray starts outside or never leaves"
    last = steps - 1 - np.argmax(inside[:, ::-1], axis=1)
    lo, hi = t[last], t[last + 1]
    for _ in range(30):  # 2 mm / 2^30: far below float32 resolution
        mid = 0.5 * (lo + hi)
        ins = base_field(origins + mid[:, None] * dirs) < 0
        lo, hi = np.where(ins, mid, lo), np.where(ins, hi, mid)
    return 0.5 * (lo + hi)


def _ray_dirs(alpha: np.ndarray, polar: float) -> np.ndarray:
    return np.stack([np.sin(polar) * np.sin(alpha), np.full_like(alpha, np.cos(polar)),
                     np.sin(polar) * np.cos(alpha)], axis=1)


def cast_grid(alpha: np.ndarray, polar: np.ndarray) -> np.ndarray:
    """Base-surface grid points [R, C, 3]: head rings cast from the head centre at the given polar
    angles, then neck rings cast horizontally from the neck axis."""
    head = []
    for p in polar:
        d = _ray_dirs(alpha, p)
        o = np.repeat(HEAD_CENTRE[None], len(alpha), 0)
        head.append(o + _cast(o, d)[:, None] * d)
    # Neck rings: horizontal rays from the neck axis, at heights that run from just below the
    # last head ring (which dips from the throat in front to low on the nape) to the neck cut.
    last_y = head[-1][:, 1]
    d = np.stack([np.sin(alpha), np.zeros_like(alpha), np.cos(alpha)], 1)
    rings = []
    for k in range(NUM_NECK_ROWS):
        t = (k + 1) / NUM_NECK_ROWS
        y = (last_y - 0.006) * (1.0 - t) + NECK_BOTTOM_Y * t
        o = np.stack([np.zeros_like(y), y, np.full_like(y, NECK_AXIS_Z)], 1)
        rings.append(o + _cast(o, d)[:, None] * d)
    return np.stack(head + rings)


# --- assembling the mesh -----------------------------------------------------------------------------
def _project_to_base(p: np.ndarray, iterations: int = 3) -> np.ndarray:
    for _ in range(iterations):
        n = base_normals(p)
        p = p - base_field(p)[:, None] * n
    return p


def _fit_rows(grid: np.ndarray, k_top: int, k_bot: int, cx: float, half: float,
              y_top: np.ndarray, y_bot: np.ndarray, falloff: float) -> np.ndarray:
    """Move grid rows k_top..k_bot (front columns within `falloff` of [cx - half, cx + half]) so
    that row k_top follows y_top [C] and row k_bot follows y_bot [C], rows between spread evenly;
    the two rows above and below follow part of the way, so nothing folds."""
    grid = grid.copy()
    x, z = grid[k_top, :, 0], grid[k_top, :, 2]
    near = smoothstep(half + falloff, half, np.abs(x - cx)) * (z > 0.03)
    span = k_bot - k_top
    shift = {}
    for k in range(k_top, k_bot + 1):
        target = y_bot + (y_top - y_bot) * (k_bot - k) / span
        shift[k] = (target - grid[k, :, 1]) * near
    for offset, share in ((1, 0.5), (2, 0.2)):
        shift[k_top - offset] = share * shift[k_top]
        shift[k_bot + offset] = share * shift[k_bot]
    for k, d in shift.items():
        grid[k, :, 1] += d
    return grid


def _row_nearest(grid: np.ndarray, col: int, y: float) -> int:
    return int(np.argmin(np.abs(grid[:, col, 1] - y) + 1e3 * (grid[:, col, 2] < 0)))


def _fit_features(grid: np.ndarray):
    """Snap grid rows to the inner-lip line and the eyelid margins.

    Returns the new grid, the mouth's upper row, and per eye (k_top, k_bot) rows of the lid margins.
    """
    cols = grid.shape[1]
    half = cols // 2
    k = int(np.nonzero(grid[:, half, 1] >= MOUTH_Y)[0].max())
    x = grid[k, :, 0]
    gap = 0.0003 + 0.0008 * np.sqrt(mouth_lateral(x))
    grid = _fit_rows(grid, k, k + 1, 0.0, MOUTH_HALF_WIDTH, MOUTH_Y + 0.5 * gap, MOUTH_Y - 0.5 * gap, 0.018)
    eye_rows = []
    for side in (1.0, -1.0):
        col = int(np.argmin(np.abs(grid[k, :, 0] - side * EYE_CENTRE[0]) + 1e3 * (grid[k, :, 2] < 0)))
        k_top = _row_nearest(grid, col, EYE_CENTRE[1] + EYE_OPENING[1])
        k_bot = max(_row_nearest(grid, col, EYE_CENTRE[1] - EYE_OPENING[2]), k_top + 2)
        top, bottom, _ = eye_curves(grid[k_top, :, 0], side)
        grid = _fit_rows(grid, k_top, k_bot, side * EYE_CENTRE[0], EYE_OPENING[0], top, bottom, 0.012)
        eye_rows.append((k_top, k_bot))
    flat = _project_to_base(grid.reshape(-1, 3))
    return flat.reshape(grid.shape), k, eye_rows


def _eyeball(side: float, base_index: int, uv_base: int):
    """A closed UV sphere around the eye on `side`, its front pole on the gaze axis (+z).

    Returns vertices [N,3], faces [K,3], uv_coords [T,2], uv_faces [K,3] (indices offset by
    base_index / uv_base). UV: an azimuthal (polar) projection about the pupil in its own box.
    """
    centre = EYE_CENTRE * [side, 1.0, 1.0]
    n_ring, n_seg = len(EYEBALL_RINGS), EYEBALL_SEGMENTS
    psi = 2 * np.pi * np.arange(n_seg) / n_seg
    th = np.repeat(EYEBALL_RINGS, n_seg)
    ps = np.tile(psi, n_ring)
    dirs = np.stack([np.sin(th) * np.cos(ps), np.sin(th) * np.sin(ps), np.cos(th)], 1)
    verts = centre + EYE_RADIUS * np.concatenate([[[0, 0, 1.0]], dirs, [[0, 0, -1.0]]])
    back = 1 + n_ring * n_seg
    box = np.array(EYEBALL_UV_BOXES[0 if side > 0 else 1])
    c_uv, half = 0.5 * (box[:2] + box[2:]), 0.5 * (box[2:] - box[:2])
    uv_dirs = np.stack([np.cos(ps), np.sin(ps)], 1) * (th / np.pi)[:, None]
    uvs = [c_uv[None], c_uv + half * uv_dirs]
    ring = lambda r, s: 1 + r * n_seg + (s % n_seg)  # noqa: E731
    faces, uv_faces = [], []
    for s in range(n_seg):
        faces.append((0, ring(0, s), ring(0, s + 1)))
        uv_faces.append(faces[-1])
    for r in range(n_ring - 1):
        for s in range(n_seg):
            a, b, c, d = ring(r, s), ring(r, s + 1), ring(r + 1, s), ring(r + 1, s + 1)
            faces += [(a, c, d), (a, d, b)]
            uv_faces += [(a, c, d), (a, d, b)]
    rim = []  # the back pole gets one UV point per fan triangle, on the island's rim
    for s in range(n_seg):
        faces.append((back, ring(n_ring - 1, s + 1), ring(n_ring - 1, s)))
        mid = 2 * np.pi * (s + 0.5) / n_seg
        rim.append(c_uv + half * [np.cos(mid), np.sin(mid)])
        uv_faces.append((back + s, ring(n_ring - 1, s + 1), ring(n_ring - 1, s)))
    uv = np.concatenate(uvs + [np.array(rim)])
    # the sphere's ψ runs counter-clockwise seen from the front; so do the UVs: winding matches
    faces, uv_faces = np.array(faces), np.array(uv_faces)
    tri = verts[faces]
    normal = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    if np.einsum("ij,ij->i", normal, tri.mean(1) - centre).mean() < 0:
        faces, uv_faces = faces[:, [0, 2, 1]], uv_faces[:, [0, 2, 1]]
    return verts, faces + base_index, uv, uv_faces + uv_base


def build_head_surface() -> HeadSurface:
    """The demo head's template mesh (deterministic; ~1 s)."""
    alpha, polar = column_azimuths(), row_polars()
    grid, k, eye_rows = _fit_features(cast_grid(alpha, polar))
    rows, cols = grid.shape[:2]
    base = grid.reshape(-1, 3)
    row_of, col_of = np.repeat(np.arange(rows), cols), np.tile(np.arange(cols), rows)
    opening, fraction = np.zeros(len(base), bool), np.zeros(len(base))
    for side, (k_top, k_bot) in zip((1.0, -1.0), eye_rows):
        inside = (row_of > k_top) & (row_of < k_bot) & (eye_curves(base[:, 0], side)[2] > 0) & (base[:, 2] > 0)
        opening |= inside
        fraction = np.where(inside, (row_of - k_top) / (k_bot - k_top), fraction)
    pts = base + facial_relief(base, base_normals(base), opening, fraction)
    crown = HEAD_CENTRE + _cast(HEAD_CENTRE[None], np.array([[0.0, 1.0, 0.0]]))[0] * np.array([0.0, 1.0, 0.0])
    head_v = np.concatenate([crown[None], pts])
    vid = lambda i, j: 1 + i * cols + (j % cols)  # noqa: E731
    half = cols // 2
    x_row = grid[k, :, 0]
    m = int(np.argmin(np.abs(np.abs(x_row[half:half + cols // 4]) - MOUTH_HALF_WIDTH)))
    faces = [(0, vid(0, j), vid(0, j + 1)) for j in range(cols)]
    for i in range(rows - 1):
        for j in range(cols):
            if i == k and half - m <= j < half + m:
                continue  # the mouth opening
            a, b, c, d = vid(i, j), vid(i, j + 1), vid(i + 1, j), vid(i + 1, j + 1)
            faces += [(a, c, d), (a, d, b)] if j >= half else [(a, c, b), (b, c, d)]
    faces = np.array(faces, dtype=np.int64)
    # UVs: u = column / cols (the seam column is duplicated at u = 1), v = 1 at the crown.
    v_of_row = 1.0 - (np.arange(rows) + 1) / rows * (1.0 - UV_FREE_STRIP - 0.005)
    uu, vv = np.meshgrid(np.arange(cols + 1) / cols, v_of_row)
    uv_grid = np.stack([uu.ravel(), vv.ravel()], 1)
    crown_uv = np.stack([(np.arange(cols) + 0.5) / cols, np.full(cols, 1.0)], 1)
    uv_head = np.concatenate([crown_uv, uv_grid])
    tid = lambda i, j: cols + i * (cols + 1) + j  # noqa: E731
    uv_faces = []
    for a, b, c in faces:
        if a == 0:
            j = (b - 1) % cols
            uv_faces.append((j, tid(0, j), tid(0, j + 1)))
            continue
        corner = []
        ij = [((t - 1) // cols, (t - 1) % cols) for t in (a, b, c)]
        jmin = min(j for _, j in ij)
        for i, j in ij:  # a face straddling the seam uses column `cols` instead of 0
            corner.append(tid(i, cols if (j == 0 and jmin == 0 and max(jj for _, jj in ij) == cols - 1) else j))
        uv_faces.append(tuple(corner))
    uv_faces = np.array(uv_faces, dtype=np.int64)
    # eyeballs
    verts, all_faces, uvs, all_uv_faces, eyes = [head_v], [faces], [uv_head], [uv_faces], []
    for side in (1.0, -1.0):
        nv, nf = sum(len(v) for v in verts), sum(len(t) for t in uvs)
        ev, ef, euv, euf = _eyeball(side, nv, nf)
        eyes.append(nv + np.arange(len(ev)))
        verts.append(ev), all_faces.append(ef), uvs.append(euv), all_uv_faces.append(euf)
    vertices = np.concatenate(verts)
    num_v = len(vertices)
    row = np.full(num_v, -1)
    col = np.full(num_v, -1)
    row[1:1 + rows * cols] = np.repeat(np.arange(rows), cols)
    col[1:1 + rows * cols] = np.tile(np.arange(cols), rows)
    az = np.zeros(num_v)
    az[1:1 + rows * cols] = np.tile(alpha, rows)
    pol = np.zeros(num_v)
    pol[1:1 + rows * cols] = np.repeat(np.concatenate([polar, np.full(rows - len(polar), np.pi / 2)]), cols)
    mouth_cols = np.arange(half - m, half + m + 1)
    upper = np.array([vid(k, j) for j in mouth_cols])
    lower = np.array([vid(k + 1, j) for j in mouth_cols])
    order = np.argsort(vertices[upper, 0])
    return HeadSurface(
        vertices=vertices, faces=np.concatenate(all_faces), uv_coords=np.concatenate(uvs),
        uv_faces=np.concatenate(all_uv_faces), row=row, col=col, left_eyeball=eyes[0],
        right_eyeball=eyes[1], eye_centres=np.stack([EYE_CENTRE, EYE_CENTRE * [-1, 1, 1]]),
        upper_lip=upper[order], lower_lip=lower[order], mouth_row=k, azimuth=az, polar=pol,
        eye_opening=np.concatenate([[False], opening, np.zeros(num_v - 1 - len(base), bool)]),
        eye_rows=tuple(eye_rows),
    )
