"""A tiny FLAME-format head for model tests: a UV sphere with a mouth hole and regional blendshapes."""

from __future__ import annotations

import numpy as np

from agora_core.head import FlameAssets

R = 0.1  # sphere radius, metres


def expr_region(v: np.ndarray) -> np.ndarray:
    """Vertices the expression blendshapes move: the lower front of the sphere."""
    return (v[:, 2] > 0.2 * R) & (v[:, 1] < 0.3 * R)


def eyelid_region(v: np.ndarray) -> np.ndarray:
    return (v[:, 2] > 0.5 * R) & (v[:, 1] > 0.3 * R) & (v[:, 1] < 0.6 * R)


def sphere_head_assets(n_lat: int = 18, n_lon: int = 32, seed: int = 0) -> FlameAssets:
    """UV sphere in FLAME's frame (+y up, +z front) with a mouth hole; UV seam at the back.

    Expression blendshapes are non-zero only on `expr_region`, eyelid blendshapes only on
    `eyelid_region`; the jaw weight is high below the mouth on the front half.
    """
    rng = np.random.default_rng(seed)
    pos = lambda i, j: (R * np.sin(np.pi * i / n_lat) * np.sin(np.pi + 2 * np.pi * j / n_lon),  # noqa: E731
                        R * np.cos(np.pi * i / n_lat),
                        R * np.sin(np.pi * i / n_lat) * np.cos(np.pi + 2 * np.pi * j / n_lon))
    vid, verts, uid, uvs = {}, [], {}, []

    def vertex(i, j):
        key = (i, 0) if i in (0, n_lat) else (i, j % n_lon)
        if key not in vid:
            vid[key] = len(verts)
            verts.append(pos(*key))
        return vid[key]

    def uv(i, j):
        if (i, j) not in uid:
            uid[(i, j)] = len(uvs)
            uvs.append((0.02 + 0.6 * j / n_lon, 0.02 + 0.96 * (1 - i / n_lat)))
        return uid[(i, j)]

    faces, uv_faces = [], []
    for i in range(n_lat):
        for j in range(n_lon):
            q = [(i, j), (i + 1, j), (i + 1, j + 1), (i, j + 1)]
            for tri in ([q[0], q[1], q[2]], [q[0], q[2], q[3]]):
                if len({vertex(*c) for c in tri}) == 3:
                    faces.append([vertex(*c) for c in tri])
                    uv_faces.append([uv(a, b + 0.5 if a in (0, n_lat) else b) for a, b in tri])
    v, f, ft = np.array(verts), np.array(faces), np.array(uv_faces)
    n = np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]])
    flip = np.einsum("ij,ij->i", n, v[f].mean(1)) < 0  # outward normals
    f[flip], ft[flip] = f[flip][:, [0, 2, 1]], ft[flip][:, [0, 2, 1]]
    mouth_dir = np.array([0.0, -0.3, 1.0]) / np.linalg.norm([0.0, -0.3, 1.0])
    cen = v[f].mean(axis=1)
    keep = cen @ mouth_dir / np.linalg.norm(cen, axis=1) < np.cos(np.radians(20))
    f, ft = f[keep], ft[keep]
    used, used_t = np.unique(f), np.unique(ft)
    remap, remap_t = np.full(len(v), -1), np.full(len(uvs), -1)
    remap[used], remap_t[used_t] = np.arange(len(used)), np.arange(len(used_t))
    v, f, uv_coords, ft = v[used], remap[f], np.array(uvs)[used_t], remap_t[ft]

    num_v = len(v)
    jaw = 1 / (1 + np.exp((v[:, 1] - R * mouth_dir[1]) / (0.04 * R))) * np.clip(v[:, 2] / (0.3 * R), 0, 1)
    weights = np.zeros((num_v, 5))
    weights[:, 0], weights[:, 1], weights[:, 2] = 0.1 * (1 - jaw), 0.9 * (1 - jaw), jaw
    nearest = lambda p: int(np.argmin(np.linalg.norm(v - np.asarray(p), axis=1)))  # noqa: E731
    j_reg = np.zeros((5, num_v))
    j_reg[0, nearest((0, -0.7 * R, -0.7 * R))] = j_reg[1, nearest((0, -0.7 * R, -0.7 * R))] = 1
    j_reg[2, [nearest((0, 0, R)), nearest((0, 0, -R))]] = 0.5  # jaw pivot at the centre
    j_reg[3, nearest((0.3 * R, 0.3 * R, R))] = j_reg[4, nearest((-0.3 * R, 0.3 * R, R))] = 1
    exprdirs = 0.01 * rng.normal(size=(num_v, 3, 4)) * expr_region(v)[:, None, None]
    eyelid_dirs = 0.005 * rng.normal(size=(num_v, 3, 2)) * eyelid_region(v)[:, None, None]
    return FlameAssets(
        v_template=v, faces=f, shapedirs=0.005 * rng.normal(size=(num_v, 3, 4)), exprdirs=exprdirs,
        posedirs=0.001 * rng.normal(size=(num_v, 3, 36)), J_regressor=j_reg, weights=weights,
        kintree_table=np.array([[4294967295, 0, 1, 1, 1], [0, 1, 2, 3, 4]]), uv_coords=uv_coords,
        uv_faces=ft, eyelid_dirs=eyelid_dirs, model_id="sphere-test")
