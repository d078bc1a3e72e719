"""Regions (boundary loops, mouth, lips, back of head) and the mouth interior (appendix 0.B.1.1),
on a small synthetic FLAME-format head: a UV sphere with a mouth hole and a neck hole."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from agora_core.errors import AgoraError
from agora_core.head import (
    FlameAssets,
    HeadModel,
    add_mouth_interior,
    back_head_faces,
    boundary_loops,
    find_mouth_loop,
    lip_sets,
    sample_uv_grid,
)
from agora_core.head.regions import boundary_edges
from agora_core.head.uv import build_uv_raster, uv_occupancy

R = 0.1  # sphere radius (metres)


def make_sphere_head(n_lat: int = 18, n_lon: int = 32, seed: int = 0) -> FlameAssets:
    """UV sphere (+y up, +z front) with a mouth hole in front and a neck hole at the bottom.

    Jaw weights: high below the mouth on the front half, so the lower lip follows the jaw and the
    upper lip does not; the neck loop's front also gets jaw weight (to exercise the neck rule).
    """
    rng = np.random.default_rng(seed)
    verts, vid = [], {}
    def vertex(i, j):
        key = (i, 0) if i in (0, n_lat) else (i, j % n_lon)
        if key not in vid:
            th, ph = np.pi * i / n_lat, 2 * np.pi * key[1] / n_lon
            vid[key] = len(verts)
            verts.append((R * np.sin(th) * np.sin(ph), R * np.cos(th), R * np.sin(th) * np.cos(ph)))
        return vid[key]
    uvs, uid = [], {}
    def uv(i, j):
        if (i, j) not in uid:
            uid[(i, j)] = len(uvs)
            uvs.append((0.02 + 0.6 * j / n_lon, 0.02 + 0.96 * (1 - i / n_lat)))
        return uid[(i, j)]
    faces, uv_faces = [], []
    for i in range(n_lat):
        for j in range(n_lon):
            quad = [(i, j), (i + 1, j), (i + 1, j + 1), (i, j + 1)]
            for tri in ([quad[0], quad[1], quad[2]], [quad[0], quad[2], quad[3]]):
                if len({vertex(*c) for c in tri}) < 3:
                    continue  # degenerate at a pole
                tri = [(a, b + 0.5) if a in (0, n_lat) else (a, b) for a, b in tri]
                faces.append([vertex(a, int(b)) for a, b in tri])
                uv_faces.append([uv(a, b) for a, b in tri])
    v, f, ft = np.array(verts), np.array(faces), np.array(uv_faces)
    n = np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]])
    if np.mean(np.einsum("ij,ij->i", n, v[f].mean(1))) < 0:  # make normals point outwards
        f, ft = f[:, [0, 2, 1]], ft[:, [0, 2, 1]]
    cen = v[f].mean(axis=1)
    mouth_dir = np.array([0.0, -0.3, 1.0]) / np.linalg.norm([0.0, -0.3, 1.0])
    keep = (cen @ mouth_dir / np.linalg.norm(cen, axis=1) < np.cos(np.radians(20))) & (cen[:, 1] > -0.75 * R)
    f, ft = f[keep], ft[keep]
    used = np.unique(f)  # drop vertices (and uvs) no face uses any more
    remap = np.full(len(v), -1)
    remap[used] = np.arange(len(used))
    v, f = v[used], remap[f]
    used_t = np.unique(ft)
    remap_t = np.full(len(uvs), -1)
    remap_t[used_t] = np.arange(len(used_t))
    uv_coords, ft = np.array(uvs)[used_t], remap_t[ft]

    num_v = len(v)
    y_mouth = R * mouth_dir[1]
    jaw = 1 / (1 + np.exp((v[:, 1] - y_mouth) / (0.04 * R))) * np.clip(v[:, 2] / (0.3 * R), 0, 1)
    weights = np.zeros((num_v, 5))
    weights[:, 0], weights[:, 1], weights[:, 2] = 0.1 * (1 - jaw), 0.9 * (1 - jaw), jaw
    def nearest(p):
        return int(np.argmin(np.linalg.norm(v - np.asarray(p), axis=1)))
    j_reg = np.zeros((5, num_v))
    j_reg[0, nearest((0, -0.7 * R, -0.7 * R))] = 1
    j_reg[1, nearest((0, -0.7 * R, -0.7 * R))] = 1
    j_reg[2, [nearest((0, 0, R)), nearest((0, 0, -R))]] = 0.5  # jaw pivot at the centre
    j_reg[3, nearest((0.3 * R, 0.3 * R, R))] = 1
    j_reg[4, nearest((-0.3 * R, 0.3 * R, R))] = 1
    kintree = np.array([[4294967295, 0, 1, 1, 1], [0, 1, 2, 3, 4]])
    return FlameAssets(
        v_template=v, faces=f, shapedirs=0.005 * rng.normal(size=(num_v, 3, 4)),
        exprdirs=0.005 * rng.normal(size=(num_v, 3, 3)), posedirs=0.001 * rng.normal(size=(num_v, 3, 36)),
        J_regressor=j_reg, weights=weights, kintree_table=kintree, uv_coords=uv_coords, uv_faces=ft,
        eyelid_dirs=0.001 * rng.normal(size=(num_v, 3, 2)), model_id="sphere-test",
    )


@pytest.fixture(scope="module")
def head():
    return make_sphere_head()


@pytest.fixture(scope="module")
def mouth(head):
    return add_mouth_interior(head, n_rings=4)


def _edge_counts(faces):
    e = np.sort(np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]), axis=1)
    uniq, counts = np.unique(e, axis=0, return_counts=True)
    return {tuple(x): c for x, c in zip(uniq.tolist(), counts)}


def test_boundary_loops_are_ordered_cycles(head):
    loops = boundary_loops(head.faces)
    assert len(loops) == 2
    edges = {tuple(e) for e in boundary_edges(head.faces).tolist()}
    for lp in loops:
        for a, b in zip(lp, np.roll(lp, -1)):
            assert (min(a, b), max(a, b)) in edges


def test_find_mouth_loop_skips_the_neck(head):
    loops = boundary_loops(head.faces)
    neck = min(loops, key=lambda lp: head.v_template[lp, 1].mean())
    assert head.weights[neck, 2].mean() > 0.1  # the neck loop is a jaw-weight candidate too
    mouth = find_mouth_loop(head)
    assert head.v_template[mouth, 1].mean() > head.v_template[neck, 1].mean() + 0.03


def test_lip_sets_split_by_jaw_weight(head):
    upper, lower = lip_sets(head)
    loop = find_mouth_loop(head)
    assert sorted(np.concatenate([upper, lower]).tolist()) == sorted(loop.tolist())
    assert head.v_template[upper, 1].mean() > head.v_template[lower, 1].mean()
    assert head.weights[lower, 2].mean() > 0.5 > head.weights[upper, 2].mean()
    assert np.all(np.diff(head.v_template[upper, 0]) >= 0)  # sorted by x
    given = head.replace(extras={"upper_lip": lower, "lower_lip": upper})
    assert set(lip_sets(given)[0].tolist()) == set(lower.tolist())


def test_no_mouth_raises(head):
    with pytest.raises(AgoraError, match="no mouth opening"):
        find_mouth_loop(head.replace(weights=np.eye(5)[np.ones(head.num_vertices, int)]))


def test_back_head_faces(head):
    back = back_head_faces(head)
    cen = head.v_template[head.faces].mean(1)
    assert back.any() and not back.all()
    assert np.all(cen[back, 2] < 0) and not np.any(back & (cen[:, 2] > 0))
    mask = np.zeros(len(head.faces), bool)
    mask[:3] = True
    assert back_head_faces(head.replace(extras={"back_head_faces": np.arange(3)})).tolist() == mask.tolist()


def test_mouth_adds_vertices_and_closes_the_lip_loop(head, mouth):
    loop = find_mouth_loop(head)
    ex = mouth.extras
    n_new = len(ex["mouth_cavity"]) + len(ex["upper_teeth"]) + len(ex["lower_teeth"])
    assert mouth.num_vertices == head.num_vertices + n_new
    assert len(ex["mouth_cavity"]) == 4 * len(loop) + 1
    counts = _edge_counts(mouth.faces)
    for a, b in zip(loop, np.roll(loop, -1)):
        assert counts[(min(a, b), max(a, b))] == 2
    assert len(boundary_loops(mouth.faces)) == 1  # only the neck stays open; teeth are closed
    # consistent orientation: every interior edge is used once in each direction
    directed = np.concatenate([mouth.faces[:, [0, 1]], mouth.faces[:, [1, 2]], mouth.faces[:, [2, 0]]])
    _, c = np.unique(directed, axis=0, return_counts=True)
    assert c.max() == 1
    np.testing.assert_array_equal(mouth.J_regressor[:, :head.num_vertices], head.J_regressor)
    assert not mouth.J_regressor[:, head.num_vertices:].any()
    with pytest.raises(AgoraError, match="already has a mouth"):
        add_mouth_interior(mouth)


def test_mouth_skinning_weights(head, mouth):
    np.testing.assert_allclose(mouth.weights.sum(1), 1, atol=1e-12)
    up, lo = mouth.extras["upper_lip"], mouth.extras["lower_lip"]
    mean_up, mean_lo = head.weights[up].mean(0), head.weights[lo].mean(0)
    apex = mouth.extras["mouth_cavity"][-1]
    np.testing.assert_allclose(mouth.weights[apex], 0.5 * (mean_up + mean_lo), atol=1e-12)
    loop = mouth.extras["mouth_loop"]
    ring1 = mouth.extras["mouth_cavity"][:len(loop)]
    m = (1 / 5) / 2  # ring 1 of 4: t = 1/5, mixed t/2 towards the other lip
    for vtx, lip in zip(ring1, loop):
        own, other = (mean_lo, mean_up) if lip in lo else (mean_up, mean_lo)
        np.testing.assert_allclose(mouth.weights[vtx], (1 - m) * own + m * other, atol=1e-12)
    assert np.all(mouth.weights[mouth.extras["upper_teeth"], 2] == 0)
    lower_teeth = mouth.weights[mouth.extras["lower_teeth"]]
    np.testing.assert_allclose(lower_teeth, np.repeat(mean_lo[None], len(lower_teeth), 0), atol=1e-12)


def test_mouth_blendshapes_copied_from_lips(head, mouth):
    loop, lo, up = mouth.extras["mouth_loop"], mouth.extras["lower_lip"], mouth.extras["upper_lip"]
    ring1 = mouth.extras["mouth_cavity"][:len(loop)]
    m = (1 / 5) / 2
    for vtx, lip in list(zip(ring1, loop))[:6]:
        others = up if lip in lo else lo
        other = others[np.argmin(np.linalg.norm(head.v_template[others] - head.v_template[lip], axis=1))]
        for name in ("shapedirs", "exprdirs", "posedirs", "eyelid_dirs"):
            want = (1 - m) * getattr(head, name)[lip] + m * getattr(head, name)[other]
            np.testing.assert_allclose(getattr(mouth, name)[vtx], want, atol=1e-12, err_msg=name)
    apex = mouth.extras["mouth_cavity"][-1]
    pd = mouth.posedirs[apex]
    assert any(np.allclose(pd, 0.5 * (head.posedirs[a] + head.posedirs[b])) for a in up for b in lo)


def test_jaw_moves_lower_teeth_only(mouth):
    model = HeadModel(mouth)
    p = model.zero_params(1)
    neutral = model(p)
    opened = model(p.replace(jaw=torch.tensor([[0.3, 0.0, 0.0]])))
    d = (opened - neutral)[0].norm(dim=1)
    assert d[torch.as_tensor(mouth.extras["upper_teeth"])].max() < 1e-6
    assert d[torch.as_tensor(mouth.extras["lower_teeth"])].min() > 1e-3
    assert model.upper_lip.numel() > 0 and model.lower_lip.numel() > 0


def test_mouth_uvs_are_free_and_sampled(head, mouth):
    assert mouth.uv_coords.min() >= 0 and mouth.uv_coords.max() <= 1
    old = np.arange(len(mouth.faces)) < len(head.faces)
    occ_old = uv_occupancy(mouth.uv_coords, mouth.uv_faces[old], 64)
    occ_new = uv_occupancy(mouth.uv_coords, mouth.uv_faces[~old], 64)
    assert occ_new.any() and not (occ_old & occ_new).any()
    r_old = build_uv_raster(mouth.uv_coords, mouth.uv_faces, 256, face_mask=old).valid
    r_new = build_uv_raster(mouth.uv_coords, mouth.uv_faces, 256, face_mask=~old).valid
    assert not (r_old & r_new).any()
    samples = sample_uv_grid(mouth.uv_coords, mouth.uv_faces, 128)
    teeth_faces = np.isin(mouth.faces, mouth.extras["lower_teeth"]).all(1).nonzero()[0]
    assert np.isin(samples.face_idx.numpy(), teeth_faces).sum() > 10


def test_mouth_without_teeth_and_bool_extras(head):
    mask = np.zeros(len(head.faces), bool)
    mask[0] = True
    out = add_mouth_interior(head.replace(extras={"back_head_faces": mask}), teeth=False, n_rings=2)
    assert "upper_teeth" not in out.extras
    assert out.extras["back_head_faces"].shape == (len(out.faces),)
    assert out.extras["back_head_faces"].sum() == 1


def test_explicit_lip_sets_match_the_heuristics(head, mouth):
    up, lo = lip_sets(head)
    given = add_mouth_interior(head, upper_lip=up, lower_lip=lo)
    np.testing.assert_array_equal(given.v_template, mouth.v_template)
    np.testing.assert_array_equal(given.faces, mouth.faces)
    via_extras = add_mouth_interior(head.replace(extras={"upper_lip": up, "lower_lip": lo}))
    np.testing.assert_array_equal(via_extras.weights, mouth.weights)
