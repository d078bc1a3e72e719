"""FLAME-format loading (restricted unpickler, schema checks, obj UVs) and `HeadModel` vs smplx."""

from __future__ import annotations

import dataclasses
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import smplx
import torch
from format_fixtures import FIXTURES

from agora_core.errors import AgoraError
from agora_core.head import (
    FlameParams,
    HeadModel,
    flame_assets_from_pickle,
    load_flame_pickle,
    read_uv_obj,
    save_flame_pickle,
    write_uv_obj,
)

FIXTURE = FIXTURES / "flame2020_schema_tiny.pkl"


def _uv_obj_for(pkl: Path, out: Path) -> Path:
    """A UV obj matching the pickle's topology: uv = the template's (x, y) squeezed into [.05,.6]²."""
    d = load_flame_pickle(pkl)
    v, f = np.asarray(d["v_template"]), np.asarray(d["f"], dtype=np.int64)
    xy = v[:, :2]
    uv = 0.05 + 0.55 * (xy - xy.min(0)) / np.ptp(xy, axis=0)
    write_uv_obj(out, v, f, uv, f)
    return out


@pytest.fixture(scope="module")
def fixture_assets(tmp_path_factory):
    obj = _uv_obj_for(FIXTURE, tmp_path_factory.mktemp("obj") / "head_template.obj")
    return flame_assets_from_pickle(FIXTURE, obj), obj


def test_load_fixture_chumpy_pickle():
    d = load_flame_pickle(FIXTURE)
    assert isinstance(d["shapedirs"], np.ndarray) and d["shapedirs"].shape == (120, 3, 400)
    assert d["f"].dtype == np.uint32 and d["J_regressor"].shape == (5, 120)


def test_assets_from_fixture(fixture_assets):
    assets, _ = fixture_assets
    assert assets.num_vertices == 120 and assets.num_shape == 300 and assets.num_expr == 100
    assert assets.J_regressor.shape == (5, 120) and isinstance(assets.J_regressor, np.ndarray)
    assert assets.uv_coords.shape == (120, 2) and assets.uv_faces.shape == assets.faces.shape
    assert assets.model_id.startswith("flame-")


def test_restricted_unpickler_refuses_os_system(tmp_path):
    marker = tmp_path / "pwned"
    cmd = f"touch {marker}"
    # protocol-2 bytes: GLOBAL 'posix system', the command, TUPLE1, REDUCE, STOP
    payload = (b"\x80\x02cposix\nsystem\nq\x00X" + len(cmd).to_bytes(4, "little") + cmd.encode()
               + b"q\x01\x85q\x02Rq\x03.")
    payload_os = payload.replace(b"cposix\n", b"cos\n")
    for i, data in enumerate((payload, payload_os)):
        bad = tmp_path / f"evil{i}.pkl"
        bad.write_bytes(data)
        with pytest.raises(AgoraError, match="forbidden global") as err:
            load_flame_pickle(bad)
        assert str(bad) in str(err.value) and "system" in str(err.value)
    assert not marker.exists()


@pytest.mark.parametrize("target", [("builtins", "eval"), ("subprocess", "Popen")])
def test_restricted_unpickler_refuses_other_globals(tmp_path, target):
    data = b"\x80\x02c" + f"{target[0]}\n{target[1]}\n".encode() + b"q\x00."
    bad = tmp_path / "evil.pkl"
    bad.write_bytes(data)
    with pytest.raises(AgoraError, match=f"{target[0]}.{target[1]}"):
        load_flame_pickle(bad)


def test_missing_pickle_says_where_to_get_flame(tmp_path):
    with pytest.raises(AgoraError, match="flame.is.tue.mpg.de.*generic_model.pkl"):
        load_flame_pickle(tmp_path / "generic_model.pkl")


def test_truncated_pickle(tmp_path):
    data = FIXTURE.read_bytes()
    bad = tmp_path / "generic_model.pkl"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(AgoraError, match="truncated or corrupt") as err:
        load_flame_pickle(bad)
    assert str(bad) in str(err.value) and "\n" not in str(err.value)


def test_not_a_pickle(tmp_path):
    bad = tmp_path / "generic_model.pkl"
    bad.write_text("hello, I am not a pickle")
    with pytest.raises(AgoraError, match=str(bad)):
        load_flame_pickle(bad)


def test_wrong_schema_missing_shapedirs(tmp_path, fixture_assets):
    _, obj = fixture_assets
    d = load_flame_pickle(FIXTURE)
    del d["shapedirs"]
    bad = tmp_path / "generic_model.pkl"
    bad.write_bytes(pickle.dumps({k: v for k, v in d.items()}, protocol=2))
    with pytest.raises(AgoraError, match="missing key.*shapedirs"):
        flame_assets_from_pickle(bad, obj)


@pytest.mark.parametrize("key,value,message", [
    ("posedirs", np.zeros((120, 3, 35)), "'posedirs' has shape"),
    ("weights", np.full((120, 5), np.nan), "non-finite"),
    ("f", np.array([[0, 1, 500]]), "integer vertex indices"),
])
def test_wrong_schema_values(tmp_path, fixture_assets, key, value, message):
    _, obj = fixture_assets
    d = load_flame_pickle(FIXTURE)
    d[key] = value
    bad = tmp_path / "generic_model.pkl"
    bad.write_bytes(pickle.dumps(d, protocol=2))
    with pytest.raises(AgoraError, match=message):
        flame_assets_from_pickle(bad, obj)


def test_save_load_round_trip(tmp_path, fixture_assets):
    assets, obj = fixture_assets
    assets = assets.replace(eyelid_dirs=np.random.default_rng(0).normal(size=(120, 3, 2)),
                            extras={"upper_lip": np.array([1, 2, 3])}, model_id="round-trip")
    out = tmp_path / "model.pkl"
    save_flame_pickle(assets, out)
    back = flame_assets_from_pickle(out, obj)
    for name in ("v_template", "shapedirs", "exprdirs", "posedirs", "J_regressor", "weights",
                 "eyelid_dirs", "uv_coords"):
        np.testing.assert_array_equal(getattr(back, name), getattr(assets, name), err_msg=name)
    np.testing.assert_array_equal(back.faces, assets.faces)
    np.testing.assert_array_equal(back.extras["upper_lip"], [1, 2, 3])
    assert back.model_id == "round-trip" and back.num_shape == 300
    assert not list(tmp_path.glob(".*tmp"))  # atomic write left no temporary behind


def test_num_shape_from_pickle_key(tmp_path, fixture_assets):
    assets, obj = fixture_assets
    small = assets.replace(shapedirs=assets.shapedirs[:, :, :20], exprdirs=assets.exprdirs[:, :, :10])
    save_flame_pickle(small, tmp_path / "demo.pkl")
    back = flame_assets_from_pickle(tmp_path / "demo.pkl", obj)
    assert (back.num_shape, back.num_expr) == (20, 10)


def test_uv_obj_topology_mismatch(tmp_path):
    obj = tmp_path / "other.obj"
    write_uv_obj(obj, np.eye(3), np.array([[0, 1, 2]]), np.eye(3)[:, :2], np.array([[0, 1, 2]]))
    with pytest.raises(AgoraError, match="does not match"):
        flame_assets_from_pickle(FIXTURE, obj)


def test_obj_quads_negative_indices_and_normals(tmp_path):
    obj = tmp_path / "quad.obj"
    obj.write_text("# quad\nv 0 0 0\nv 1 0 0\nv 1 1 0\nv 0 1 0\nvt 0 0\nvt 1 0\nvt 1 1\nvt 0 1\n"
                   "vn 0 0 1\nf 1/1/1 2/2/1 3/3/1 4/4/1\nf -4/-4 -3/-3 -2/-2\n")
    v, vt, f, ft = read_uv_obj(obj)
    assert v.shape == (4, 3) and vt.shape == (4, 2)
    np.testing.assert_array_equal(f, [[0, 1, 2], [0, 2, 3], [0, 1, 2]])
    np.testing.assert_array_equal(ft, f)


@pytest.mark.parametrize("text,message", [
    ("v 0 0 0\nvt 0 0\nf 1/1 2/1 3/1\n", "line 3: vertex index 2 out of range"),
    ("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n", "line 4: face corner '1' has no UV index"),
    ("v 0 0\n", "line 1: malformed 'v' line"),
    ("v 0 0 0\n", "no faces"),
])
def test_obj_errors_name_file_and_line(tmp_path, text, message):
    obj = tmp_path / "bad.obj"
    obj.write_text(text)
    with pytest.raises(AgoraError, match=message) as err:
        read_uv_obj(obj)
    assert str(obj) in str(err.value)


def test_missing_obj(tmp_path):
    with pytest.raises(AgoraError, match="head_template.obj"):
        read_uv_obj(tmp_path / "head_template.obj")


def _smplx_flame(tmp_path, assets, batch):
    save_flame_pickle(assets, tmp_path / "FLAME_NEUTRAL.pkl")
    with open(tmp_path / "flame_static_embedding.pkl", "wb") as fh:
        pickle.dump({"lmk_face_idx": np.zeros(51, dtype=np.int64),
                     "lmk_b_coords": np.full((51, 3), 1 / 3)}, fh)
    return smplx.FLAME(model_path=str(tmp_path), num_betas=300, num_expression_coeffs=100,
                       batch_size=batch)


def test_head_model_matches_smplx_flame(tmp_path, fixture_assets):
    assets, _ = fixture_assets
    b = 3
    ref = _smplx_flame(tmp_path, assets, b)
    model = HeadModel(assets)
    g = torch.Generator().manual_seed(0)
    shape, expr = torch.randn(b, 300, generator=g), torch.randn(b, 100, generator=g)
    pose = 0.3 * torch.randn(b, 15, generator=g)
    glob, neck, jaw, eyes = pose[:, :3], pose[:, 3:6], pose[:, 6:9], pose[:, 9:]
    with torch.no_grad():
        ours = model(FlameParams(shape=shape, expression=expr, jaw=jaw, neck=neck, eyes=eyes), glob)
        theirs = ref(betas=shape, expression=expr, global_orient=glob, neck_pose=neck, jaw_pose=jaw,
                     leye_pose=eyes[:, :3], reye_pose=eyes[:, 3:]).vertices
    # same float32 maths in the same order (smplx.lbs.lbs); 1e-5 leaves room for reductions
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=0)


def test_head_model_padding_eyelids_and_helpers(fixture_assets):
    assets, _ = fixture_assets
    eyelid = np.zeros((120, 3, 2))
    eyelid[7, 1, 0] = 0.5
    model = HeadModel(assets.replace(eyelid_dirs=eyelid))
    params = model.zero_params(2)
    assert params.shape.shape == (2, 300) and params.eyes.shape == (2, 6)
    neutral = model.neutral(2)
    torch.testing.assert_close(neutral[0], torch.as_tensor(assets.v_template, dtype=torch.float32))
    few = params.replace(shape=torch.zeros(2, 10), expression=torch.zeros(2, 5))
    torch.testing.assert_close(model(few), neutral)
    lids = params.replace(eyelids=torch.tensor([[1.0, 0.0], [0.0, 0.0]]))
    delta = model(lids) - neutral
    assert torch.allclose(delta[0, 7], torch.tensor([0.0, 0.5, 0.0]), atol=1e-6)
    assert delta.abs().sum() - delta[0, 7].abs().sum() < 1e-5
    _, joints = model.forward_with_joints(params)
    assert joints.shape == (2, 5, 3)


def test_from_files(tmp_path, fixture_assets):
    _, obj = fixture_assets
    pkl = tmp_path / "generic_model.pkl"
    shutil.copy(FIXTURE, pkl)
    model = HeadModel.from_files(pkl, obj)
    assert model.num_vertices == 120 and model.model_id.startswith("flame-")


def test_eyelids_from_smirk_files(tmp_path, fixture_assets):
    _, obj = fixture_assets
    rng = np.random.default_rng(1)
    left, right = rng.normal(size=(120, 3)), rng.normal(size=(120, 3))
    np.save(tmp_path / "l_eyelid.npy", left)
    np.save(tmp_path / "r_eyelid.npy", right)
    assets = flame_assets_from_pickle(FIXTURE, obj, eyelids_path=tmp_path)
    np.testing.assert_array_equal(assets.eyelid_dirs[:, :, 0], left)  # column 0 = SMIRK's left lid
    np.testing.assert_array_equal(assets.eyelid_dirs[:, :, 1], right)
    np.save(tmp_path / "bad.npy", np.zeros((7, 3, 2)))
    with pytest.raises(AgoraError, match=r"expected \(120, 3, 2\)"):
        flame_assets_from_pickle(FIXTURE, obj, eyelids_path=tmp_path / "bad.npy")
    with pytest.raises(AgoraError, match="l_eyelid.npy"):
        flame_assets_from_pickle(FIXTURE, obj, eyelids_path=tmp_path / "missing_dir")


def test_prep_data_datasets_belong_to_heads_loaded_from_a_flame_pickle(fixture_assets):
    """prep-data labels SMIRK's FLAME 2020 parameters "flame2020"; a head from the official pickle is
    "flame-<file hash>": training and eval must accept that pair, and nothing looser."""
    from agora_core.data.prep import SMIRK_HEAD_MODEL
    from agora_core.errors import AgoraError
    from agora_core.head import HeadModel
    from agora_core.head.build import check_head_matches, head_ids_match

    assets, _ = fixture_assets
    head = HeadModel(assets)
    assert head.model_id.startswith("flame-")
    check_head_matches(SMIRK_HEAD_MODEL, head, "ffhq")  # no error
    assert head_ids_match(SMIRK_HEAD_MODEL, head.model_id + "+mouth")
    assert head_ids_match("demo-head-v1", "demo-head-v1+mouth") and head_ids_match("", "demo-head-v1")
    assert not head_ids_match(SMIRK_HEAD_MODEL, "demo-head-v1+mouth")
    assert not head_ids_match("flame-aaaaaaaaaaaa", "flame-bbbbbbbbbbbb")  # two different FLAME files
    with pytest.raises(AgoraError, match="FLAME parameters of head model 'flame2020'"):
        check_head_matches(SMIRK_HEAD_MODEL, HeadModel(dataclasses.replace(assets, model_id="demo-head-v1")), "ffhq")
