"""Topology-driven regions of a FLAME-format mesh: boundary loops, the mouth, lips, back of head.

Nothing here knows FLAME's vertex numbering, so the same rules work for real FLAME and for the
procedural demo head. Precomputed sets in `assets.extras` ("upper_lip", "lower_lip",
"back_head_faces") take precedence over the heuristics.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from agora_core.errors import AgoraError
from agora_core.head.assets import FlameAssets

JAW = 2  # FLAME joint order: global, neck, jaw, left eye, right eye
MIN_MOUTH_JAW_WEIGHT = 0.1  # a mouth loop's mean jaw weight is ~0.5; the neck's is ~0
AMBIGUOUS_JAW_BAND = 0.1  # |w_jaw - 0.5| below this: decide upper/lower by height instead


def boundary_edges(faces: np.ndarray) -> np.ndarray:
    """Undirected edges [K,2] (sorted pairs) that belong to exactly one face."""
    faces = np.asarray(faces, dtype=np.int64)
    edges = np.sort(np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]), axis=1)
    uniq, counts = np.unique(edges, axis=0, return_counts=True)
    return uniq[counts == 1]


def boundary_loops(faces: np.ndarray) -> list[np.ndarray]:
    """Closed boundary loops of a triangle mesh, each an ordered int64 array of vertex indices.

    Follows boundary edges (edges with one adjacent face) vertex to vertex; a vertex where two
    loops touch is handled by consuming edges, not vertices. Sorted longest first.
    """
    faces = np.asarray(faces, dtype=np.int64)
    assert faces.ndim == 2 and faces.shape[1] == 3, faces.shape
    adjacency: dict[int, list[int]] = defaultdict(list)
    for a, b in boundary_edges(faces).tolist():
        adjacency[a].append(b)
        adjacency[b].append(a)
    used: set[tuple[int, int]] = set()
    loops = []
    for start in sorted(adjacency):
        for first in adjacency[start]:
            if (min(start, first), max(start, first)) in used:
                continue
            loop, prev, cur = [start], start, first
            used.add((min(prev, cur), max(prev, cur)))
            while cur != start:
                loop.append(cur)
                nxt = [n for n in adjacency[cur] if (min(cur, n), max(cur, n)) not in used]
                if not nxt:  # an open chain (non-manifold input); keep what we walked
                    break
                prev, cur = cur, nxt[0]
                used.add((min(prev, cur), max(prev, cur)))
            loops.append(np.asarray(loop, dtype=np.int64))
    return sorted(loops, key=len, reverse=True)


def find_mouth_loop(assets: FlameAssets) -> np.ndarray:
    """The inner-lip boundary loop (ordered vertex indices).

    Heuristic: FLAME's mouth opening is the boundary loop that straddles the jaw's skinning
    boundary — its lower-lip vertices follow the jaw (jaw weight > 0.5), its upper-lip vertices
    the head (< 0.5) — so its mean jaw weight (column 2 of `weights`) is large (~0.5), while the
    neck and eye loops have ~0. Among loops with mean jaw weight >= 0.1 we take the largest mean;
    if several qualify, the lowest loop (smallest mean y, the neck) is dropped first.
    """
    loops = [lp for lp in boundary_loops(assets.faces) if len(lp) >= 3]
    jaw = np.asarray(assets.weights)[:, JAW]
    cands = [lp for lp in loops if jaw[lp].mean() >= MIN_MOUTH_JAW_WEIGHT]
    if len(cands) > 1:
        lowest = min(range(len(cands)), key=lambda i: assets.v_template[cands[i], 1].mean())
        cands.pop(lowest)
    if not cands:
        raise AgoraError(f"model {assets.model_id}: no mouth opening found (no boundary loop with "
                         f"mean jaw skinning weight >= {MIN_MOUTH_JAW_WEIGHT}); pass the lip "
                         "vertex sets explicitly or store extras 'upper_lip'/'lower_lip'")
    return max(cands, key=lambda lp: jaw[lp].mean())


def classify_lip_loop(assets: FlameAssets, loop: np.ndarray) -> np.ndarray:
    """Bool [L] per loop vertex: True = lower lip (jaw weight > 0.5), False = upper lip.

    Vertices whose jaw weight is within 0.1 of 0.5 (ambiguous, e.g. the mouth corners) are
    decided by height: below the loop's centre -> lower lip.
    """
    jaw = np.asarray(assets.weights)[loop, JAW]
    y = assets.v_template[loop, 1]
    lower = jaw > 0.5
    ambiguous = np.abs(jaw - 0.5) < AMBIGUOUS_JAW_BAND
    lower[ambiguous] = y[ambiguous] < y.mean()
    return lower


def _sort_by_x(assets: FlameAssets, idx: np.ndarray) -> np.ndarray:
    idx = np.asarray(idx, dtype=np.int64)
    return idx[np.argsort(assets.v_template[idx, 0], kind="stable")]


def lip_sets(assets: FlameAssets) -> tuple[np.ndarray, np.ndarray]:
    """(upper_lip, lower_lip) vertex indices of the inner lip loop, each sorted by x.

    Uses `extras["upper_lip"]`/`extras["lower_lip"]` when present, else splits
    `find_mouth_loop` with `classify_lip_loop`. Raises `AgoraError` if either side is empty.
    """
    if "upper_lip" in assets.extras and "lower_lip" in assets.extras:
        upper, lower = assets.extras["upper_lip"], assets.extras["lower_lip"]
    else:
        loop = find_mouth_loop(assets)
        is_lower = classify_lip_loop(assets, loop)
        upper, lower = loop[~is_lower], loop[is_lower]
    if len(upper) == 0 or len(lower) == 0:
        raise AgoraError(f"model {assets.model_id}: mouth loop does not split into upper and "
                         "lower lip (check the jaw skinning weights)")
    return _sort_by_x(assets, upper), _sort_by_x(assets, lower)


def face_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Unit face normals [F,3] (right-handed winding); zero for degenerate faces."""
    v = np.asarray(vertices, dtype=np.float64)[np.asarray(faces)]
    n = np.cross(v[:, 1] - v[:, 0], v[:, 2] - v[:, 0])
    norm = np.linalg.norm(n, axis=1, keepdims=True)
    return np.where(norm > 0, n / np.maximum(norm, 1e-30), 0.0)


def back_head_faces(assets: FlameAssets, depth_fraction: float = 0.35,
                    neck_fraction: float = 0.25) -> np.ndarray:
    """Bool [F]: faces of the back of the head, excluded from UV sampling (appendix 0.B.1.1).

    `extras["back_head_faces"]` (bool [F] or face indices) wins when present. Otherwise: the
    head is the vertices above the lowest `neck_fraction` of the mesh height (so the neck's
    cut does not stretch the depth range); a face is back-of-head when its centroid's z lies in
    the rear `depth_fraction` of that head's z range AND its normal points backwards (n_z < 0).
    """
    num_f = assets.faces.shape[0]
    if "back_head_faces" in assets.extras:
        sel = np.asarray(assets.extras["back_head_faces"])
        if sel.dtype == bool:
            assert sel.shape == (num_f,), sel.shape
            return sel.copy()
        mask = np.zeros(num_f, dtype=bool)
        mask[sel.astype(np.int64)] = True
        return mask
    v = np.asarray(assets.v_template, dtype=np.float64)
    y_min, y_max = v[:, 1].min(), v[:, 1].max()
    head = v[v[:, 1] >= y_min + neck_fraction * (y_max - y_min)]
    z_min, z_max = head[:, 2].min(), head[:, 2].max()
    centroid_z = v[assets.faces].mean(axis=1)[:, 2]
    normals = face_normals(v, assets.faces)
    return (centroid_z < z_min + depth_fraction * (z_max - z_min)) & (normals[:, 2] < 0)
