"""FLAME template with mouth interior (appendix 0.B.1.1): an oral cavity and two rows of teeth.

The cavity is a pocket of `n_rings` vertex rings attached to the inner-lip boundary loop and
running backwards into the head to an apex. Its skinning weights are the upper- and lower-lip
mean weights, mixed 50/50 as vertices approach the apex; its shape/expression blendshapes and pose
correctives are copied from the lips and blended 50/50 towards the apex the same way. The teeth
are two closed, curved box strips behind the lips that follow the lip arc: the upper row moves
with the head only, the lower row with the jaw like the lower lip. New UVs go into the largest empty rectangle of
the existing UV layout (`uv.find_free_uv_rect`). Works on any FLAME-format mesh.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from agora_core.errors import AgoraError
from agora_core.head.assets import FlameAssets
from agora_core.head.regions import JAW, boundary_loops, classify_lip_loop, find_mouth_loop
from agora_core.head.uv import find_free_uv_rect

NECK = 1
TEETH_HALF_SPAN = 0.35  # teeth rows cover ±35% of the mouth width around its centre
TEETH_HEIGHT = 0.17  # per row, in mouth widths
TEETH_OVERBITE = 0.06  # upper teeth reach this far below the upper lip's centre, in mouth widths
TEETH_THICKNESS = 0.07
TEETH_GAP = 0.12  # from the lip arc back to the teeth's front, in mouth widths
CAVITY_BULGE = 0.35  # how far the pocket swells up/down behind the lips, in mouth widths


@dataclass
class _Part:
    """New geometry: positions [N,3], faces [K,3] (global vertex ids), unit-square UVs [T,2] with
    uv_faces [K,3] (local ids), skinning weights [N,5] and per-vertex bases (name -> [N,3,K])."""

    name: str
    pos: np.ndarray
    faces: np.ndarray
    uv: np.ndarray
    uv_faces: np.ndarray
    weights: np.ndarray
    dirs: dict


def _mouth_loop(assets, upper_lip, lower_lip):
    """Ordered inner-lip loop and bool [L] lower-lip flags, from explicit sets or the heuristics."""
    if upper_lip is None and "upper_lip" in assets.extras and "lower_lip" in assets.extras:
        upper_lip, lower_lip = assets.extras["upper_lip"], assets.extras["lower_lip"]
    if upper_lip is None or lower_lip is None:
        loop = find_mouth_loop(assets)
    else:
        lips = np.union1d(upper_lip, lower_lip)
        loops = boundary_loops(assets.faces)
        hits = [np.isin(lp, lips).sum() for lp in loops]
        if not loops or max(hits) == 0:
            raise AgoraError(f"model {assets.model_id}: the given lip vertices lie on no boundary "
                             "loop (is the mouth already closed?)")
        loop = loops[int(np.argmax(hits))]
    is_lower = classify_lip_loop(assets, loop)
    if upper_lip is not None and lower_lip is not None:
        is_lower[np.isin(loop, lower_lip)] = True
        is_lower[np.isin(loop, upper_lip)] = False
    if is_lower.all() or not is_lower.any():
        raise AgoraError(f"model {assets.model_id}: mouth loop does not split into upper and lower lip")
    return loop, is_lower


def _has_directed_edge(faces: np.ndarray, a: int, b: int) -> bool:
    rolled = np.stack([faces, np.roll(faces, -1, axis=1)], axis=2).reshape(-1, 2)
    return bool(np.any((rolled[:, 0] == a) & (rolled[:, 1] == b)))


def _nearest(points: np.ndarray, candidates: np.ndarray, v: np.ndarray) -> np.ndarray:
    """For each point [N,3] the index (into v) of the nearest vertex among `candidates`."""
    d = np.linalg.norm(points[:, None, :] - v[candidates][None], axis=2)
    return candidates[np.argmin(d, axis=1)]


def _cavity(v, loop, is_lower, depth, n_rings, base):
    """Cavity geometry and topology.

    Returns positions [n_rings*L+1,3], faces [K,3] (mesh ids), uv grid faces [K,3] (ids into the
    cavity's own UV points), UV points [(n_rings+1)*(L+1)+L, 2] in the unit square, the per-new-
    vertex (lip vertex, apex fraction t) used for mixing.
    """
    num_l = len(loop)
    p = v[loop]
    centre = p.mean(axis=0)
    half_w = max(np.ptp(p[:, 0]) / 2, 1e-9)
    side = np.where(is_lower, -1.0, 1.0)
    taper = np.clip(1 - ((p[:, 0] - centre[0]) / half_w) ** 4, 0, 1)  # no bulge at the corners
    ts = np.arange(1, n_rings + 1) / (n_rings + 1)
    rings = []
    for t in ts:
        ring = np.empty_like(p)
        ring[:, 0] = centre[0] + (p[:, 0] - centre[0]) * np.sqrt(1 - t * t)
        ring[:, 1] = (centre[1] + (p[:, 1] - centre[1]) * (1 - t)
                      + side * CAVITY_BULGE * 2 * half_w * np.sin(np.pi * t) * taper)
        ring[:, 2] = p[:, 2] - depth * t
        rings.append(ring)
    apex = np.array([centre[0], centre[1], p[:, 2].mean() - depth])
    positions = np.concatenate(rings + [apex[None]], axis=0)

    ids = [loop] + [base + k * num_l + np.arange(num_l) for k in range(n_rings)]
    apex_id = base + n_rings * num_l
    gid = lambda k, j: k * (num_l + 1) + j  # noqa: E731  UV grid point (ring k, column j)
    apex_uv0 = (n_rings + 1) * (num_l + 1)
    faces, uv_faces = [], []
    for k in range(n_rings):
        a, b = ids[k], ids[k + 1]
        for i in range(num_l):
            i1 = (i + 1) % num_l
            faces += [(a[i1], a[i], b[i]), (a[i1], b[i], b[i1])]
            uv_faces += [(gid(k, i + 1), gid(k, i), gid(k + 1, i)),
                         (gid(k, i + 1), gid(k + 1, i), gid(k + 1, i + 1))]
    last = ids[n_rings]
    for i in range(num_l):
        faces.append((last[(i + 1) % num_l], last[i], apex_id))
        uv_faces.append((gid(n_rings, i + 1), gid(n_rings, i), apex_uv0 + i))
    kk, jj = np.meshgrid(np.arange(n_rings + 1), np.arange(num_l + 1), indexing="ij")
    grid = np.stack([jj.ravel() / num_l, 1 - kk.ravel() / (n_rings + 1)], axis=1)
    apex_uv = np.stack([(np.arange(num_l) + 0.5) / num_l, np.zeros(num_l)], axis=1)
    lip_of = np.concatenate([np.tile(loop, n_rings), [-1]])
    t_of = np.concatenate([np.repeat(ts, num_l), [1.0]])
    return positions, np.array(faces), np.array(uv_faces), np.concatenate([grid, apex_uv]), lip_of, t_of


def _teeth_row(xs, y_bottom, z_front, height, thickness, base):
    """A closed curved box: columns of 4 corners (front-top, front-bottom, back-bottom, back-top).

    xs, z_front [N] per column; returns positions [4N,3], faces (outward), uv faces (unit-square
    UVs: a (N × 5) grid for the sides plus two cap quads) and the UV points.
    """
    n = len(xs)
    h, t = height, thickness
    corners = [(y_bottom + h, 0.0), (y_bottom, 0.0), (y_bottom, -t), (y_bottom + h, -t)]
    pos = np.array([[x, y, z + dz] for x, z in zip(xs, z_front) for y, dz in corners])
    vid = lambda j, s: base + 4 * j + s  # noqa: E731
    gid = lambda j, s: j * 5 + s  # noqa: E731
    faces, uv_faces = [], []
    for j in range(n - 1):
        for s in range(4):
            s1 = (s + 1) % 4
            faces += [(vid(j, s), vid(j, s1), vid(j + 1, s1)), (vid(j, s), vid(j + 1, s1), vid(j + 1, s))]
            uv_faces += [(gid(j, s), gid(j, s + 1), gid(j + 1, s + 1)),
                         (gid(j, s), gid(j + 1, s + 1), gid(j + 1, s))]
    cap0 = n * 5
    for c, j in enumerate((0, n - 1)):
        faces += [(vid(j, 0), vid(j, 1), vid(j, 2)), (vid(j, 0), vid(j, 2), vid(j, 3))]
        q = cap0 + 4 * c
        uv_faces += [(q, q + 1, q + 2), (q, q + 2, q + 3)]
    jj, ss = np.meshgrid(np.arange(n), np.arange(5), indexing="ij")
    grid = np.stack([0.8 * jj.ravel() / (n - 1), ss.ravel() / 4], axis=1)
    caps = []
    for lo, hi in ((0.0, 0.45), (0.55, 1.0)):
        caps += [(0.85, hi), (0.85, lo), (1.0, lo), (1.0, hi)]
    centres = pos.reshape(n, 4, 3).mean(axis=1)
    inside = np.concatenate([np.repeat(0.5 * (centres[:-1] + centres[1:]), 8, axis=0),
                             np.repeat(centres[[1, n - 2]], 2, axis=0)])  # a point behind each face
    faces, uv_faces = _orient_outward(pos, np.array(faces) - base, np.array(uv_faces), inside)
    return pos, faces + base, uv_faces, np.concatenate([grid, np.array(caps)])


def _orient_outward(pos: np.ndarray, faces: np.ndarray, uv_faces: np.ndarray, inside: np.ndarray):
    """Flip faces whose normal points towards their `inside` reference point [K,3]."""
    tri = pos[faces]
    normal = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    flip = np.einsum("ij,ij->i", normal, tri.mean(axis=1) - inside) < 0
    faces, uv_faces = faces.copy(), uv_faces.copy()
    faces[flip] = faces[flip][:, [0, 2, 1]]
    uv_faces[flip] = uv_faces[flip][:, [0, 2, 1]]
    return faces, uv_faces


def _lip_arc(v: np.ndarray, lip: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """Depth z of a lip at xs: least-squares parabola through the lip's (x, z), bent backwards."""
    x, z = v[lip, 0], v[lip, 2]
    if len(lip) < 3:
        return np.full(len(xs), z.mean())
    c2, c1, c0 = np.polyfit(x - x.mean(), z, 2)
    c2 = min(c2, 0.0)  # a mouth's arc curves back towards its corners, never forwards
    return c0 + c1 * (xs - x.mean()) + c2 * (xs - x.mean()) ** 2


def _split_rect(rect, fractions, gap=0.004):
    """Split (u0, v0, w, h) along its longer side into parts of the given fractions."""
    u0, v0, w, h = rect
    out, start = [], 0.0
    long_side = max(w, h)
    for f in fractions:
        a, b = start * long_side + gap / 2, (start + f) * long_side - gap / 2
        out.append((u0 + a, v0, b - a, h) if w >= h else (u0, v0 + a, w, b - a))
        start += f
    return out


def _place_in_rect(local_uv: np.ndarray, rect) -> np.ndarray:
    """Map unit-square UVs (first axis = the part's long direction) into rect (u0, v0, w, h)."""
    u0, v0, w, h = rect
    a, b = local_uv[:, 0], local_uv[:, 1]
    if w < h:  # the rectangle is tall: run the part's long axis along v
        a, b = b, a
    return np.stack([u0 + a * w, v0 + b * h], axis=1)


def _cavity_part(assets: FlameAssets, loop, is_lower, depth: float, n_rings: int) -> _Part:
    """The oral cavity with its lip-derived attributes (appendix 0.B.1.1).

    A vertex of ring k (t = k/(n_rings+1)) behind lip vertex i mixes a fraction t/2 of the other
    lip in: skinning weights = (1 − t/2)·mean(own lip) + t/2·mean(other lip); blendshapes and pose
    correctives = (1 − t/2)·(lip vertex i) + t/2·(nearest vertex of the other lip). The apex
    (t = 1) is exactly 50/50: the two lip means for weights, the nearest upper and lower lip
    vertices for the bases.
    """
    v = np.asarray(assets.v_template, dtype=np.float64)
    num_v = len(v)
    upper, lower = loop[~is_lower], loop[is_lower]
    pos, faces, uv_faces, uv, lip_of, t_of = _cavity(v, loop, is_lower, depth, n_rings, num_v)
    if not _has_directed_edge(np.asarray(assets.faces), loop[0], loop[1]):
        faces, uv_faces = faces[:, [0, 2, 1]], uv_faces[:, [0, 2, 1]]  # match the mesh's winding
    w = np.asarray(assets.weights, dtype=np.float64)
    mean_up, mean_lo = w[upper].mean(axis=0), w[lower].mean(axis=0)
    own_lower = np.concatenate([np.tile(is_lower, n_rings), [False]])[:, None]
    mix = t_of / 2  # 0 at the lip loop, 0.5 at the apex
    weights = ((1 - mix)[:, None] * np.where(own_lower, mean_lo, mean_up)
               + mix[:, None] * np.where(own_lower, mean_up, mean_lo))
    weights[-1] = 0.5 * (mean_up + mean_lo)
    other_of_loop = np.where(is_lower, _nearest(v[loop], upper, v), _nearest(v[loop], lower, v))
    own = lip_of.copy()
    other = np.concatenate([np.tile(other_of_loop, n_rings), [-1]])
    own[-1], other[-1] = _nearest(pos[-1:], upper, v)[0], _nearest(pos[-1:], lower, v)[0]
    dirs = {name: (1 - mix)[:, None, None] * arr[own] + mix[:, None, None] * arr[other]
            for name, arr in _bases(assets).items()}
    return _Part("mouth_cavity", pos, faces, uv, uv_faces, weights, dirs)


def _teeth_parts(assets: FlameAssets, loop, is_lower, columns: int, base: int) -> list[_Part]:
    """Upper and lower rows of frontal teeth behind the lips, following the lip arc.

    Every tooth vertex of a row shares one weight vector, so a row moves as one piece: the upper
    row takes the upper lip's mean weights restricted to the global and neck joints (rigid with
    the head, untouched by the jaw), the lower row the lower lip's mean weights without the eye
    joints (it follows the jaw as the lower lip does). Shape blendshapes come from
    the nearest lip vertex (so the rows follow each identity's mouth), expression/eyelid
    blendshapes are the lip's mean displacement (a rigid translation), pose correctives are zero.
    """
    v = np.asarray(assets.v_template, dtype=np.float64)
    upper, lower = loop[~is_lower], loop[is_lower]
    width = float(np.ptp(v[loop, 0]))
    centre = v[loop].mean(axis=0)
    xs = centre[0] + np.linspace(-TEETH_HALF_SPAN, TEETH_HALF_SPAN, columns) * width
    z_up = _lip_arc(v, upper, xs) - TEETH_GAP * width  # the lower row sits behind the upper row
    z_lo = np.minimum(_lip_arc(v, lower, xs) - TEETH_GAP * width, z_up - 1.05 * TEETH_THICKNESS * width)
    y_up = v[upper[np.argmin(np.abs(v[upper, 0] - centre[0]))], 1]
    y_lo = v[lower[np.argmin(np.abs(v[lower, 0] - centre[0]))], 1]
    w = np.asarray(assets.weights, dtype=np.float64)
    rows = [("upper_teeth", upper, y_up - TEETH_OVERBITE * width, z_up,
             _restrict(w[upper].mean(axis=0), np.arange(5) < JAW, NECK)),
            ("lower_teeth", lower, y_lo + 0.02 * width - TEETH_HEIGHT * width, z_lo,
             _restrict(w[lower].mean(axis=0), np.arange(5) <= JAW, JAW))]
    parts = []
    for name, lip, y_bottom, z_front, tw in rows:
        pos, faces, uv_faces, uv = _teeth_row(xs, y_bottom, z_front, TEETH_HEIGHT * width,
                                              TEETH_THICKNESS * width, base)
        nearest = _nearest(pos, lip, v)
        dirs = {}
        for key, arr in _bases(assets).items():
            if key == "shapedirs":
                dirs[key] = arr[nearest]
            elif key == "posedirs":
                dirs[key] = np.zeros((len(pos),) + arr.shape[1:])
            else:
                dirs[key] = np.repeat(arr[lip].mean(axis=0, keepdims=True), len(pos), axis=0)
        parts.append(_Part(name, pos, faces, uv, uv_faces, np.repeat(tw[None], len(pos), axis=0), dirs))
        base += len(pos)
    return parts


def _restrict(weights: np.ndarray, allowed: np.ndarray, fallback: int) -> np.ndarray:
    """Skinning weights [5] limited to the `allowed` joints and renormalised (one-hot fallback)."""
    w = np.where(allowed, weights, 0.0)
    return w / w.sum() if w.sum() > 1e-8 else np.eye(len(w))[fallback]


def _bases(assets: FlameAssets) -> dict[str, np.ndarray]:
    """The per-vertex linear bases [V,3,K] that new vertices copy from the lips."""
    names = ["shapedirs", "exprdirs", "posedirs"]
    if assets.eyelid_dirs is not None:
        names.append("eyelid_dirs")
    return {n: np.asarray(getattr(assets, n), dtype=np.float64) for n in names}


def _layout_uvs(assets: FlameAssets, parts: list[_Part]) -> tuple[np.ndarray, np.ndarray]:
    """Existing UVs plus each part's UVs placed in a sub-rectangle of the largest free rectangle
    (cavity 1/2, each teeth row 1/4). Returns uv_coords [T',2] and the new parts' uv_faces."""
    rect = find_free_uv_rect(assets.uv_coords, assets.uv_faces)
    if rect is None:
        raise AgoraError(f"model {assets.model_id}: no free space in the UV layout for the mouth "
                         "interior (leave an empty rectangle with sides of at least 1/16 of the UV square)")
    fractions = [0.5, 0.25, 0.25][:len(parts)] if len(parts) > 1 else [1.0]
    uv_coords, uv_faces = [np.asarray(assets.uv_coords, dtype=np.float64)], []
    offset = len(uv_coords[0])
    for part, sub in zip(parts, _split_rect(rect, fractions)):
        uv_coords.append(_place_in_rect(part.uv, sub))
        uv_faces.append(part.uv_faces + offset)
        offset += len(part.uv)
    return np.concatenate(uv_coords), np.concatenate(uv_faces)


def _pad_extras(extras: dict, num_v: int, num_f: int, new_v: int, new_f: int) -> dict:
    """Bool vertex/face masks in `extras` grow with False entries; index sets stay valid."""
    out = {}
    for key, value in extras.items():
        value = np.asarray(value)
        if value.dtype == bool and value.shape == (num_f,):
            value = np.concatenate([value, np.zeros(new_f, dtype=bool)])
        elif value.dtype == bool and value.shape == (num_v,):
            value = np.concatenate([value, np.zeros(new_v, dtype=bool)])
        out[key] = value
    return out


def add_mouth_interior(assets: FlameAssets, upper_lip: np.ndarray | None = None,
                       lower_lip: np.ndarray | None = None, depth: float | None = None,
                       n_rings: int = 4, teeth: bool = True, teeth_columns: int = 12) -> FlameAssets:
    """Return `assets` extended with a mouth cavity and (optionally) two rows of frontal teeth.

    Args:
        assets: any FLAME-format model whose mouth is an open boundary loop.
        upper_lip, lower_lip: inner-lip vertex ids; default `extras` or `regions` heuristics.
        depth: cavity depth behind the lips (metres); default 0.8 × the mouth width.
        n_rings: vertex rings between the lip loop and the apex.
        teeth, teeth_columns: add the teeth rows, and their resolution along the arc.
    New vertices and faces are appended (existing indices unchanged); `J_regressor` gets zero
    columns (joints unchanged). `extras` gains "mouth_loop", "upper_lip", "lower_lip",
    "mouth_cavity", "upper_teeth", "lower_teeth" (vertex ids) and "mouth_faces"; bool masks in
    `extras` are padded with False.
    """
    assert n_rings >= 1 and teeth_columns >= 3
    if "mouth_cavity" in assets.extras:
        raise AgoraError(f"model {assets.model_id} already has a mouth interior")
    num_v, num_f = assets.num_vertices, len(assets.faces)
    loop, is_lower = _mouth_loop(assets, upper_lip, lower_lip)
    width = max(float(np.ptp(assets.v_template[loop, 0])), 1e-6)
    parts = [_cavity_part(assets, loop, is_lower, 0.8 * width if depth is None else float(depth), n_rings)]
    if teeth:
        parts += _teeth_parts(assets, loop, is_lower, teeth_columns, num_v + len(parts[0].pos))
    uv_coords, new_uv_faces = _layout_uvs(assets, parts)

    new_v, new_f = sum(len(p.pos) for p in parts), sum(len(p.faces) for p in parts)
    extras = _pad_extras(assets.extras, num_v, num_f, new_v, new_f)
    extras.update(mouth_loop=loop, upper_lip=loop[~is_lower], lower_lip=loop[is_lower],
                  mouth_faces=np.arange(num_f, num_f + new_f))
    start = num_v
    for p in parts:
        extras[p.name] = np.arange(start, start + len(p.pos))
        start += len(p.pos)
    bases = _bases(assets)
    cat = {name: np.concatenate([arr] + [p.dirs[name] for p in parts]) for name, arr in bases.items()}
    return assets.replace(
        v_template=np.concatenate([assets.v_template] + [p.pos for p in parts]),
        faces=np.concatenate([assets.faces] + [p.faces for p in parts]).astype(np.int64),
        shapedirs=cat["shapedirs"], exprdirs=cat["exprdirs"], posedirs=cat["posedirs"],
        eyelid_dirs=cat.get("eyelid_dirs"),
        J_regressor=np.concatenate([assets.J_regressor, np.zeros((5, new_v))], axis=1),
        weights=np.concatenate([assets.weights] + [p.weights for p in parts]),
        uv_coords=uv_coords, uv_faces=np.concatenate([assets.uv_faces, new_uv_faces]).astype(np.int64),
        model_id=f"{assets.model_id}+mouth",
        extras={k: np.asarray(x) for k, x in extras.items()},
    )
