"""The procedural demo head: FLAME schema, a closed mesh with a mouth opening, a rig whose jaw opens
the mouth, independent and localised blendshapes, a clean UV layout, and a round trip through the
FLAME pickle loader."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch
from tolerances import posed_head_tol

from agora_core.head.demo_head import (
    DEMO_EXPRESSION_NAMES,
    DEMO_MODEL_ID,
    build_demo_head,
    demo_head_assets,
    write_demo_head,
)
from agora_core.head.flame_io import flame_assets_from_pickle
from agora_core.head.flame_params import FlameParams
from agora_core.head.model import HeadModel
from agora_core.head.regions import boundary_loops

ARRAYS = ("v_template", "faces", "shapedirs", "exprdirs", "posedirs", "J_regressor", "weights",
          "kintree_table", "uv_coords", "uv_faces", "eyelid_dirs")


@pytest.fixture(scope="module")
def assets():
    return build_demo_head()


@pytest.fixture(scope="module")
def model(assets):
    return HeadModel(assets)


def _pose(model, **kwargs):
    params = model.zero_params(1)
    fields = {"expression" if key == "expr" else key: torch.as_tensor(value, dtype=torch.float32).reshape(1, -1)
              for key, value in kwargs.items() if key != "expr_index"}
    with torch.no_grad():
        return model(params.replace(**fields))[0].double().numpy()


def _expr(model, index: int, value: float):
    e = np.zeros(model.num_expr)
    e[index] = value
    return _pose(model, expr=e)


def test_deterministic(assets):
    again = build_demo_head()
    for name in ARRAYS:
        assert np.array_equal(getattr(assets, name), getattr(again, name)), name
    assert assets.extras.keys() == again.extras.keys()
    for key in assets.extras:
        assert np.array_equal(assets.extras[key], again.extras[key]), key


def test_flame_schema_and_sizes(assets):
    v, f = assets.num_vertices, len(assets.faces)
    assert 3000 <= v <= 6500 and 6000 <= f <= 13000, (v, f)
    assert assets.num_shape >= 50 and assets.num_expr >= 50
    assert assets.posedirs.shape == (v, 3, 36) and assets.eyelid_dirs.shape == (v, 3, 2)
    assert np.array_equal(assets.kintree_table, [[4294967295, 0, 1, 1, 1], [0, 1, 2, 3, 4]])
    assert assets.model_id == DEMO_MODEL_ID
    lo, hi = assets.v_template.min(axis=0), assets.v_template.max(axis=0)
    head = assets.v_template[assets.v_template[:, 1] > -0.105]
    assert 0.21 < head[:, 1].max() - head[:, 1].min() < 0.25  # crown to chin
    assert 0.14 < hi[0] - lo[0] < 0.18 and 0.19 < hi[2] - lo[2] < 0.24  # width, depth
    assert abs(hi[0] + lo[0]) < 1e-9  # symmetric about x = 0


def test_weights_and_regressor(assets):
    w, j = assets.weights, assets.J_regressor
    assert np.all(w >= 0) and np.all(w <= 1) and np.allclose(w.sum(axis=1), 1, atol=1e-12)
    assert np.all(j >= 0) and np.allclose(j.sum(axis=1), 1, atol=1e-12)
    joints = j @ assets.v_template
    assert joints[0, 1] < joints[1, 1] < joints[2, 1] < joints[3, 1]  # base < neck < jaw < eyes
    assert joints[3, 0] > 0 > joints[4, 0]  # left eye on +x
    ex = assets.extras
    assert np.all(w[ex["left_eyeball"], 3] == 1) and np.all(w[ex["right_eyeball"], 4] == 1)
    assert np.all(w[ex["lower_lip"], 2] >= w[ex["upper_lip"], 2])


def _edge_counts(faces):
    return Counter(tuple(sorted(e)) for t in faces.tolist() for e in ((t[0], t[1]), (t[1], t[2]), (t[2], t[0])))


def test_surface_closed_except_mouth_and_neck(assets):
    faces = assets.faces
    counts = _edge_counts(faces)
    assert set(counts.values()) <= {1, 2}  # manifold: no edge shared by three faces
    directed = Counter((t[a], t[b]) for t in faces.tolist() for a, b in ((0, 1), (1, 2), (2, 0)))
    assert max(directed.values()) == 1  # consistent orientation
    loops = boundary_loops(faces)
    assert len(loops) == 2, [len(lp) for lp in loops]
    mouth = [lp for lp in loops if set(lp) == set(assets.extras["upper_lip"]) | set(assets.extras["lower_lip"])]
    assert len(mouth) == 1
    neck = [lp for lp in loops if lp is not mouth[0]][0]
    assert assets.v_template[neck, 1].max() < -0.15  # the other loop is the neck cut
    # outward orientation: signed volume of the closed-up head is positive
    tri = assets.v_template[faces]
    assert np.einsum("ij,ij->i", tri[:, 0], np.cross(tri[:, 1], tri[:, 2])).sum() > 0


def _independent(basis):
    s = np.linalg.svd(basis.reshape(-1, basis.shape[2]), compute_uv=False)
    return s.min() > 1e-3 * s.max()


def test_bases_linearly_independent(assets):
    assert _independent(assets.shapedirs)
    assert _independent(assets.exprdirs)


def test_shape_basis_magnitudes(assets):
    peak = np.linalg.norm(assets.shapedirs, axis=1).max(axis=0)
    assert 0.005 < peak[0] < 0.012 and np.all(np.diff(peak) < 0)  # ordered like a PCA basis
    for key in ("left_eyeball", "right_eyeball"):  # eyeballs move rigidly
        d = assets.shapedirs[assets.extras[key]]
        assert np.allclose(d, d[:1], atol=1e-12)


def test_expression_basis_localised_and_flame_sized(assets):
    assert len(DEMO_EXPRESSION_NAMES) == assets.num_expr
    assert DEMO_EXPRESSION_NAMES[:2] == ("smile", "brow_raise")
    mag = np.linalg.norm(assets.exprdirs, axis=1)  # [V, E]
    peak = mag.max(axis=0)
    assert np.all(peak > 0.0019) and np.all(peak < 0.0065), peak  # FLAME-like: 2-6 mm
    moved = (mag > 0.1 * peak).mean(axis=0)
    assert np.all(moved < 0.35), dict(zip(DEMO_EXPRESSION_NAMES, moved.round(3)))
    assert np.all(mag[assets.extras["eye_vertices"]] == 0)


def test_lip_fields_stay_on_their_side(assets):
    mag = np.linalg.norm(assets.exprdirs, axis=1)
    up, lo = assets.extras["upper_lip"], assets.extras["lower_lip"]
    k_lower = DEMO_EXPRESSION_NAMES.index("lower_lip_depress")
    k_upper = DEMO_EXPRESSION_NAMES.index("upper_lip_raise")
    assert mag[lo, k_lower].max() > 0.5 * mag[:, k_lower].max() and mag[up, k_lower].max() == 0
    assert mag[up, k_upper].max() > 0.5 * mag[:, k_upper].max() and mag[lo, k_upper].max() == 0


def test_jaw_rotation_opens_the_mouth(assets, model):
    v0 = _pose(model)
    v1 = _pose(model, jaw=[0.3, 0.0, 0.0])
    up, lo = assets.extras["upper_lip"], assets.extras["lower_lip"]
    gap0 = np.linalg.norm(v0[up].mean(0) - v0[lo].mean(0))
    gap1 = np.linalg.norm(v1[up].mean(0) - v1[lo].mean(0))
    assert gap1 - gap0 > 0.01, (gap0, gap1)
    chin = np.argmin(np.where(np.abs(v0[:, 0]) < 0.003, v0[:, 1] + 1e3 * (v0[:, 2] < 0.06), 1e3))
    assert v1[chin, 1] < v0[chin, 1] - 0.01  # the chin moves down (FLAME's jaw sign)
    forehead = np.nonzero((v0[:, 1] > 0.06) & (v0[:, 2] > 0.05))[0]
    assert len(forehead) > 20 and np.abs(v1[forehead] - v0[forehead]).max() <= posed_head_tol(v0)


def test_smile_and_brow_raise(assets, model):
    v0 = _pose(model)
    smile = _expr(model, DEMO_EXPRESSION_NAMES.index("smile"), 2.0)
    up = assets.extras["upper_lip"]
    corners = up[[0, -1]]  # sorted by x: the two mouth corners
    assert np.all(smile[corners, 1] - v0[corners, 1] > 0.004)
    brow = assets.extras["brow_vertices"]
    raised = _expr(model, DEMO_EXPRESSION_NAMES.index("brow_raise"), 2.0)
    assert (raised[brow, 1] - v0[brow, 1]).mean() > 0.003


def test_eyelids_close_over_the_eyeballs(assets, model):
    v0 = _pose(model)
    params = model.zero_params(1).replace(eyelids=torch.tensor([[1.0, 0.0]]))
    with torch.no_grad():
        v1 = model(params)[0].double().numpy()
    moved = np.abs(v1 - v0).max(axis=1) > posed_head_tol(v0)
    opening = assets.extras["eye_opening"]
    assert moved.any() and set(np.nonzero(moved)[0]) <= set(opening)
    assert np.all(v0[moved, 0] > 0)  # only the left (+x) eye
    ball = assets.extras["left_eyeball"]
    centre, radius = v0[ball].mean(0) * 0 + 0.5 * (v0[ball].max(0) + v0[ball].min(0)), 0.5 * np.ptp(v0[ball, 0])
    assert np.all(np.linalg.norm(v1[moved] - centre, axis=1) > radius)  # skin now outside the ball
    assert np.all(np.linalg.norm(v0[moved] - centre, axis=1) < radius)  # was hidden inside it


def _min_area_ratio(v0, v1, faces):
    a0 = np.linalg.norm(np.cross(v0[faces[:, 1]] - v0[faces[:, 0]], v0[faces[:, 2]] - v0[faces[:, 0]]), axis=1)
    n1 = np.cross(v1[faces[:, 1]] - v1[faces[:, 0]], v1[faces[:, 2]] - v1[faces[:, 0]])
    n0 = np.cross(v0[faces[:, 1]] - v0[faces[:, 0]], v0[faces[:, 2]] - v0[faces[:, 0]])
    ok = a0 > 1e-9
    return (np.linalg.norm(n1, axis=1)[ok] / a0[ok]).min(), (np.einsum("ij,ij->i", n0, n1)[ok] > 0).mean()


def test_pose_correctives_small_and_poses_do_not_tear(assets, model):
    assert np.abs(assets.posedirs).max() < 0.005
    v0 = _pose(model)
    for pose in (dict(jaw=[0.35, 0, 0]), dict(neck=[0, 0.6, 0]), dict(neck=[0.4, 0, 0])):
        v1 = _pose(model, **pose)
        area_ratio, same_side = _min_area_ratio(v0, v1, assets.faces)
        assert area_ratio > 0.05 and same_side > 0.99, (pose, area_ratio, same_side)


def test_uv_layout(assets):
    uv, tf = assets.uv_coords, assets.uv_faces
    assert uv.min() >= 0 and uv.max() <= 1
    tri = uv[tf]
    e1, e2 = tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]
    area = 0.5 * (e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0])
    assert area.min() > 1e-7, area.min()  # no degenerate or flipped UV triangle
    # no overlaps: rasterise the layout at 512² and count texels covered twice
    res = 512
    cover = np.zeros((res, res), np.int32)
    centres = (np.arange(res) + 0.5) / res
    for t in tri:
        lo, hi = t.min(0), t.max(0)
        cs = centres[(centres >= lo[0]) & (centres <= hi[0])]
        rs = centres[(centres >= lo[1]) & (centres <= hi[1])]
        if not len(cs) or not len(rs):
            continue
        px, py = np.meshgrid(cs, rs)
        d = lambda a, b: (b[0] - a[0]) * (py - a[1]) - (b[1] - a[1]) * (px - a[0])  # noqa: E731
        inside = (d(t[0], t[1]) >= 0) & (d(t[1], t[2]) >= 0) & (d(t[2], t[0]) >= 0)
        ci, ri = np.searchsorted(centres, px[inside]), np.searchsorted(centres, py[inside])
        cover[ri, ci] += 1
    covered = (cover > 0).sum()
    assert covered > 0.5 * res * res
    assert (cover > 1).sum() < 0.005 * covered
    # a free rectangle for the mouth interior: nothing in [0, 0.7] x [0, 0.13]
    assert not np.any((tri[..., 0].min(1) < 0.7) & (tri[..., 1].min(1) < 0.13))
    # the face gets more texels per unit area than the back of the head
    v = assets.v_template[assets.faces]
    area3d = 0.5 * np.linalg.norm(np.cross(v[:, 1] - v[:, 0], v[:, 2] - v[:, 0]), axis=1)
    face_f = np.isin(assets.faces, assets.extras["face_vertices"]).all(1)
    back_f = np.zeros(len(area), bool)
    back_f[assets.extras["back_head_faces"]] = True
    assert area[face_f].sum() / area3d[face_f].sum() > 2 * area[back_f].sum() / area3d[back_f].sum()


def test_regions(assets):
    ex, num_v = assets.extras, assets.num_vertices
    for key in ("back_head_faces", "face_vertices", "hair_vertices", "brow_vertices", "lip_vertices",
                "upper_lip", "lower_lip", "eye_vertices", "neck_vertices", "nose_vertices"):
        assert ex[key].dtype == np.int64 and len(ex[key]) > 0, key
        bound = len(assets.faces) if key.endswith("faces") else num_v
        assert ex[key].min() >= 0 and ex[key].max() < bound, key
    assert len(ex["upper_lip"]) == len(ex["lower_lip"])
    assert 0.1 < len(ex["back_head_faces"]) / len(assets.faces) < 0.5
    v = assets.v_template
    assert v[ex["face_vertices"], 2].min() > 0 and v[ex["hair_vertices"], 1].mean() > v[ex["face_vertices"], 1].mean()
    assert v[ex["nose_vertices"], 2].max() == v[:, 2].max()  # the nose tip is the frontmost point


def test_pickle_round_trip(assets, tmp_path):
    pkl, obj = write_demo_head(tmp_path, assets)
    loaded = flame_assets_from_pickle(pkl, obj)
    for name in ARRAYS:
        if name == "uv_coords":  # stored as text in the obj (9 significant digits)
            assert np.allclose(loaded.uv_coords, assets.uv_coords, atol=1e-8)
        else:
            assert np.array_equal(getattr(loaded, name), getattr(assets, name)), name
    assert loaded.model_id == assets.model_id
    for key, value in assets.extras.items():
        assert np.array_equal(loaded.extras[key], value), key
    cached = demo_head_assets(tmp_path / "cache")
    assert np.array_equal(cached.v_template, assets.v_template)
    assert (tmp_path / "cache" / "demo_head.pkl").is_file()


def test_random_parameters_finite(model):
    g = torch.Generator().manual_seed(0)
    b = 4
    verts = model(FlameParams(shape=torch.randn(b, model.num_shape, generator=g),
                              expression=2 * torch.randn(b, model.num_expr, generator=g),
                              jaw=0.2 * torch.rand(b, 3, generator=g), neck=0.3 * torch.randn(b, 3, generator=g),
                              eyes=0.2 * torch.randn(b, 6, generator=g), eyelids=torch.rand(b, 2, generator=g)))
    assert verts.shape == (b, model.num_vertices, 3) and torch.isfinite(verts).all()


def test_contact_sheet_renders(assets, tmp_path):
    from agora_core.head.head_sheet import SheetCell, default_cells, render_head_sheet

    assert [c.label for c in default_cells(assets.num_shape)][:4] == [
        "neutral", "jaw open 0.3", "smile +2.5", "brow raise +2.5"]
    out = tmp_path / "sheet.png"
    cells = [SheetCell("neutral"), SheetCell("jaw", jaw=0.3)]
    sheet = render_head_sheet(assets, out, size=40, cells=cells)
    assert out.is_file() and sheet.shape[1] == 2 * 40 and sheet.dtype == np.uint8
    tiles = sheet[22:]  # below the labels: two views per column
    assert tiles.min() < 100 and (tiles.reshape(-1, 3) < 250).any(axis=1).mean() > 0.1  # a head was drawn
