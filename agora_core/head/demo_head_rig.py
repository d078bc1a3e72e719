"""Procedural demo head, part 2: FLAME's skeleton on the template -- joint regressor, skinning
weights, pose correctives -- and the named vertex/face regions downstream code reads from `extras`.

Joints (FLAME order): 0 global (neck-base ring), 1 neck (mid-neck, left/right side points),
2 jaw (hinge points below the ears), 3/4 left/right eye (eyeball poles). The jaw's skinning weight
is a harmonic field on the mesh: fixed to 1 on the chin, the lower jaw and the middle of the lower
inner lip, to 0 on the upper lip, nose, cheekbones and everything behind the jaw, and solved
(Laplace, inverse-edge-length weights) in between. Because the mouth is a hole, the upper and lower
lips only connect around the corners, so the field splits them sharply there and smoothly elsewhere.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from agora_core.head import demo_head_geometry as geo
from agora_core.head.demo_head_geometry import HeadSurface, smoothstep

GLOBAL, NECK, JAW, LEFT_EYE, RIGHT_EYE = range(5)
KINTREE_TABLE = np.array([[4294967295, 0, 1, 1, 1], [0, 1, 2, 3, 4]], dtype=np.int64)
JAW_HINGE = np.array([0.066, -0.008, 0.004])  # left hinge point (below the ear, in front of it)
NECK_JOINT_Y = -0.095


def _grid_mask(surface: HeadSurface) -> np.ndarray:
    """[V] bool: the head-and-neck skin (grid vertices and the crown pole), not the eyeballs."""
    mask = np.ones(len(surface.vertices), dtype=bool)
    mask[surface.left_eyeball] = False
    mask[surface.right_eyeball] = False
    return mask


def joint_regressor(surface: HeadSurface) -> np.ndarray:
    """[5, V] convex rows: each joint is a fixed weighted mean of a few template vertices."""
    v = surface.vertices
    num_v = len(v)
    reg = np.zeros((5, num_v))
    grid = _grid_mask(surface)
    last_row = surface.row.max()
    ring = np.nonzero(surface.row == last_row)[0]
    ring = ring[np.argsort(surface.col[ring])]
    spacing = np.diff(np.concatenate([surface.azimuth[ring], [surface.azimuth[ring[0]] + 2 * np.pi]]))
    arc = 0.5 * (spacing + np.roll(spacing, 1))  # each vertex's share of the ring's angle
    reg[GLOBAL, ring] = arc / arc.sum()
    # neck: the grid vertices nearest to the left/right side of the neck at NECK_JOINT_Y
    for side in (1.0, -1.0):
        target = np.array([side * 0.06, NECK_JOINT_Y, geo.NECK_AXIS_Z])
        d = np.linalg.norm(v - target, axis=1) + 1e3 * ~grid
        reg[NECK, np.argsort(d)[:2]] += 0.25
    for side in (1.0, -1.0):
        d = np.linalg.norm(v - JAW_HINGE * [side, 1.0, 1.0], axis=1) + 1e3 * ~grid
        reg[JAW, np.argsort(d)[:3]] += 1.0 / 6.0
    for joint, ball in ((LEFT_EYE, surface.left_eyeball), (RIGHT_EYE, surface.right_eyeball)):
        reg[joint, ball[[0, -1]]] = 0.5  # front and back pole: exactly the centre
    return reg


def edge_list(faces: np.ndarray) -> np.ndarray:
    """Unique undirected edges [K,2] of a triangle mesh."""
    e = np.sort(np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]), axis=1)
    return np.unique(e, axis=0)


def harmonic_field(vertices: np.ndarray, faces: np.ndarray, fixed: np.ndarray, values: np.ndarray,
                   active: np.ndarray) -> np.ndarray:
    """Solve the graph Laplace equation on `active` vertices with `fixed` (bool [V]) set to
    `values` [V]; edge weights 1/length (positive, so the solution stays within the bounds)."""
    e = edge_list(faces)
    e = e[active[e[:, 0]] & active[e[:, 1]]]
    w = 1.0 / np.maximum(np.linalg.norm(vertices[e[:, 0]] - vertices[e[:, 1]], axis=1), 1e-5)
    n = len(vertices)
    adj = sp.coo_matrix((np.concatenate([w, w]), (np.concatenate([e[:, 0], e[:, 1]]),
                                                  np.concatenate([e[:, 1], e[:, 0]]))), shape=(n, n)).tocsr()
    lap = sp.diags(np.asarray(adj.sum(axis=1)).ravel()) - adj
    free = active & ~fixed
    fi, bi = np.nonzero(free)[0], np.nonzero(active & fixed)[0]
    out = np.where(fixed, values, 0.0).astype(np.float64)
    rhs = -lap[fi][:, bi] @ out[bi]
    out[fi] = spla.spsolve(lap[fi][:, fi].tocsc(), rhs)
    return out


def _jaw_line(azimuth: np.ndarray) -> np.ndarray:
    """Height [N] of the jaw's upper boundary: the mouth line in front, rising to the hinge."""
    a = np.abs(azimuth)
    return geo.MOUTH_Y + (JAW_HINGE[1] - 0.004 - geo.MOUTH_Y) * smoothstep(np.radians(16), np.radians(78), a)


def jaw_weight(surface: HeadSurface) -> np.ndarray:
    """[V] the jaw joint's skinning weight (harmonic between fixed jaw and head regions)."""
    v, grid = surface.vertices, _grid_mask(surface)
    x, y = v[:, 0], v[:, 1]
    az = surface.azimuth
    line = _jaw_line(az)
    num_head_rows = geo.NUM_HEAD_ROWS
    one = grid & (y < line - 0.022) & (np.abs(az) < np.radians(70)) & (surface.row < num_head_rows - 3)
    one |= grid & (y < line - 0.006) & (np.abs(az) < np.radians(12)) & (surface.row > surface.mouth_row) \
        & (surface.row < num_head_rows - 3)
    lat = np.abs(x) < 0.6 * geo.MOUTH_HALF_WIDTH
    one[surface.lower_lip[lat[surface.lower_lip]]] = True
    zero = grid & (y > line + 0.011)
    zero |= grid & (np.abs(az) > np.radians(92))
    zero |= grid & (surface.row >= num_head_rows + 1)
    zero[surface.upper_lip[lat[surface.upper_lip]]] = True
    zero &= ~one
    fixed = one | zero
    w = harmonic_field(v, surface.faces, fixed | ~grid, one.astype(float), grid)
    w[~grid] = 0.0
    return np.clip(w, 0.0, 1.0)


def skinning_weights(surface: HeadSurface) -> np.ndarray:
    """[V, 5] rows summing to 1: global at the neck base fading up the neck, the jaw field, the
    neck joint (which carries the head) elsewhere, eyeballs 100% on their eye joints."""
    v = surface.vertices
    num_v = len(v)
    g = smoothstep(-0.11, geo.NECK_BOTTOM_Y + 0.01, v[:, 1]) * _grid_mask(surface)
    jaw = jaw_weight(surface) * (1.0 - g)
    w = np.zeros((num_v, 5))
    w[:, GLOBAL] = g
    w[:, JAW] = jaw
    w[:, NECK] = 1.0 - g - jaw
    for joint, ball in ((LEFT_EYE, surface.left_eyeball), (RIGHT_EYE, surface.right_eyeball)):
        w[ball] = 0.0
        w[ball, joint] = 1.0
    return w


def _rbf(v: np.ndarray, centre, sigma) -> np.ndarray:
    return np.exp(-0.5 * (((v - np.asarray(centre)) / np.asarray(sigma)) ** 2).sum(axis=1))


def pose_correctives(surface: HeadSurface, weights: np.ndarray) -> np.ndarray:
    """[V, 3, 36] small smooth correctives, FLAME layout: joint (neck, jaw, eye L, eye R) x (R - I).

    Each corrective is a field proportional to sin(angle) of one rotation: an entry pair
    (R - I)[a, b] = -sin, (R - I)[b, a] = +sin gets -field/2 and +field/2.
    Jaw opening (x axis): cheeks hollow a little and the mouth corners pull in.
    Neck nod (x axis): the throat bulges when the chin goes down. Neck turn (y axis): the skin on
    the side turned away from stretches in, the other side bulges. Eyes: none.
    """
    v = surface.vertices
    num_v = len(v)
    grid = _grid_mask(surface)
    posedirs = np.zeros((num_v, 3, 36))

    def put(joint, axis, field):
        a, b = {0: (1, 2), 1: (2, 0), 2: (0, 1)}[axis]  # rotation about `axis`: (R-I)[b,a] = +sin
        base = (joint - 1) * 9
        posedirs[:, :, base + 3 * a + b] += -0.5 * field
        posedirs[:, :, base + 3 * b + a] += 0.5 * field

    normals = vertex_normals(v, surface.faces)
    jaw_open = np.zeros((num_v, 3))
    for side in (1.0, -1.0):
        cheek = _rbf(v, [side * 0.045, -0.035, 0.065], [0.014, 0.016, 0.02])
        jaw_open -= 0.004 * cheek[:, None] * normals
        corner = _rbf(v, [side * geo.MOUTH_HALF_WIDTH, geo.MOUTH_Y, 0.09], 0.01)
        jaw_open += 0.003 * corner[:, None] * np.array([-side * 0.6, 0.0, -0.8])
    put(JAW, 0, jaw_open * grid[:, None])
    throat = _rbf(v, [0.0, -0.115, 0.035], [0.03, 0.014, 0.02])
    put(NECK, 0, 0.006 * throat[:, None] * np.array([0.0, -0.3, 1.0]) * grid[:, None])
    turn = np.zeros((num_v, 3))
    for side in (1.0, -1.0):
        neck_side = _rbf(v, [side * 0.05, -0.125, 0.0], [0.02, 0.025, 0.025])
        turn += -side * 0.004 * neck_side[:, None] * normals
    put(NECK, 1, turn * grid[:, None])
    return posedirs


def vertex_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Area-weighted unit vertex normals [V,3]."""
    tri = vertices[faces]
    fn = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    n = np.zeros_like(vertices)
    for k in range(3):
        np.add.at(n, faces[:, k], fn)
    return n / np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-12)
