"""SMIRK's eyelid blendshapes on the real-FLAME path: `build_head` with head.flame_eyelids.

FLAME has no eyelid blendshapes; SMIRK ships them as assets/l_eyelid.npy and r_eyelid.npy [V,3].
Without them the 2 eyelid parameters AGORA conditions on would not move the mesh.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from sphere_head import eyelid_region, sphere_head_assets
from test_head_flame import FIXTURE, _uv_obj_for
from tolerances import posed_head_tol

from agora_core.errors import AgoraError, AgoraWarning
from agora_core.head import save_flame_pickle, write_uv_obj
from agora_core.head.build import build_head, head_ids_match
from agora_core.head.config import HeadConfig


def _write_smirk_eyelids(folder: Path, dirs: np.ndarray) -> Path:
    """dirs [V,3,2] written the way SMIRK ships them: l_eyelid.npy, r_eyelid.npy [V,3] float32."""
    folder.mkdir(parents=True, exist_ok=True)
    np.save(folder / "l_eyelid.npy", dirs[:, :, 0].astype(np.float32))
    np.save(folder / "r_eyelid.npy", dirs[:, :, 1].astype(np.float32))
    return folder


def _lid_delta(head, lids: list[float]) -> torch.Tensor:
    """Vertices [V,3] with eyelid coefficients `lids` minus the neutral head (everything else zero)."""
    params = head.zero_params(1)
    with torch.no_grad():
        return head(params.replace(eyelids=torch.tensor([lids]))) - head(params)


@pytest.fixture(scope="module")
def fixture_obj(tmp_path_factory) -> Path:
    return _uv_obj_for(FIXTURE, tmp_path_factory.mktemp("obj") / "head_template.obj")


def test_eyelid_parameters_move_exactly_the_blendshape_vertices(tmp_path, fixture_obj):
    dirs = np.zeros((120, 3, 2))
    rng = np.random.default_rng(0)
    dirs[[3, 17], :, 0] = 0.01 * rng.normal(size=(2, 3))  # left lid
    dirs[[17, 40], :, 1] = 0.01 * rng.normal(size=(2, 3))  # right lid
    dirs = dirs.astype(np.float32).astype(np.float64)  # what the float32 files hold
    folder = _write_smirk_eyelids(tmp_path / "smirk_assets", dirs)
    cfg = HeadConfig(source="flame", flame_pkl=str(FIXTURE), flame_uv=str(fixture_obj), flame_eyelids=str(folder),
                     mouth_interior=False)  # the fixture's random mesh has no mouth opening
    with warnings.catch_warnings():
        warnings.simplefilter("error", AgoraWarning)  # given: no "eyelids ignored" warning
        head = build_head(cfg)
    assert head.has_eyelids and head.model_id.endswith("+eyelids")  # G's weights differ from the plain head's
    assert head_ids_match("flame2020", head.model_id)  # prep-data's SMIRK estimates still drive it
    lids = [0.7, -0.4]
    expected = torch.as_tensor(dirs @ np.array(lids), dtype=torch.float32)
    # at zero pose the skinning is the identity, so the offset is the linear blend up to the posed head's
    # float32 rounding, which reaches every vertex (tests/tolerances.py)
    tol = posed_head_tol(head.neutral())
    delta = _lid_delta(head, lids)[0]
    torch.testing.assert_close(delta, expected, atol=tol, rtol=0)
    moved = delta.abs().amax(-1) > tol
    assert moved.nonzero().flatten().tolist() == [3, 17, 40]
    assert expected[moved].abs().amax(-1).min() > 100 * tol  # the lids' offsets are far above the rounding


def test_mouth_interior_carries_the_eyelids(tmp_path):
    """The mouth interior's new vertices get eyelid rows (the lips' mean: zero here, lids are far away)."""
    sphere = sphere_head_assets(n_lat=12, n_lon=20)
    pkl, obj = tmp_path / "generic_model.pkl", tmp_path / "head_template.obj"
    save_flame_pickle(sphere.replace(eyelid_dirs=None), pkl)  # a FLAME pickle: no eyelids of its own
    write_uv_obj(obj, sphere.v_template, sphere.faces, sphere.uv_coords, sphere.uv_faces)
    dirs = sphere.eyelid_dirs.astype(np.float32).astype(np.float64)
    folder = _write_smirk_eyelids(tmp_path / "smirk_assets", dirs)
    head = build_head(HeadConfig(source="flame", flame_pkl=str(pkl), flame_uv=str(obj), flame_eyelids=str(folder)))
    v = sphere.num_vertices
    assert head.has_eyelids and head.num_vertices > v and head.model_id.endswith("+eyelids+mouth")
    delta, tol = _lid_delta(head, [1.0, 0.5])[0], posed_head_tol(head.neutral())
    expected = torch.as_tensor(dirs @ np.array([1.0, 0.5]), dtype=torch.float32)
    torch.testing.assert_close(delta[:v], expected, atol=tol, rtol=0)
    assert delta[v:].abs().max() <= tol and expected.abs().max() > 100 * tol and eyelid_region(sphere.v_template).any()


def test_missing_eyelid_folder_is_a_one_line_error(tmp_path, fixture_obj):
    missing = tmp_path / "no_such_folder"
    cfg = HeadConfig(source="flame", flame_pkl=str(FIXTURE), flame_uv=str(fixture_obj), flame_eyelids=str(missing),
                     mouth_interior=False)
    with pytest.raises(AgoraError) as exc:
        build_head(cfg)
    msg = str(exc.value)
    assert msg.startswith(str(missing)) and "eyelid" in msg and "github.com/georgeretsi/smirk" in msg
    assert "\n" not in msg


def test_eyelids_from_the_environment(tmp_path, fixture_obj, monkeypatch):
    folder = _write_smirk_eyelids(tmp_path / "smirk_assets", np.ones((120, 3, 2)))
    monkeypatch.setenv("AGORA_FLAME_EYELIDS", str(folder))
    head = build_head(HeadConfig(source="flame", flame_pkl=str(FIXTURE), flame_uv=str(fixture_obj),
                                 mouth_interior=False))
    assert head.has_eyelids


def test_without_eyelids_the_head_builds_with_a_warning(fixture_obj):
    cfg = HeadConfig(source="flame", flame_pkl=str(FIXTURE), flame_uv=str(fixture_obj), mouth_interior=False)
    with pytest.warns(AgoraWarning) as record:
        head = build_head(cfg)
    assert not head.has_eyelids
    assert len(record) == 1
    msg = str(record[0].message)
    assert "eyelid parameters will not move" in msg and "--flame-eyelids" in msg and "AGORA_FLAME_EYELIDS" in msg
    assert "github.com/georgeretsi/smirk" in msg and "\n" not in msg


def test_a_run_pins_its_flame_files(tmp_path, fixture_obj, monkeypatch):
    """What train stores: absolute FLAME paths and "none" for unconfigured eyelids, so setting
    AGORA_FLAME_EYELIDS later (or running from another folder) rebuilds the same head."""
    from agora_core.head.build import NO_EYELIDS, pin_head_paths

    monkeypatch.chdir(fixture_obj.parent)
    monkeypatch.delenv("AGORA_FLAME_EYELIDS", raising=False)
    monkeypatch.setenv("AGORA_CONFIG_DIR", str(tmp_path / "no-config"))
    relative = HeadConfig(source="flame", flame_pkl=str(FIXTURE), flame_uv=fixture_obj.name, mouth_interior=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AgoraWarning)
        pinned = pin_head_paths(relative)
        plain_id = build_head(pinned).model_id
    assert Path(pinned.flame_uv).is_absolute() and Path(pinned.flame_uv) == fixture_obj.resolve()
    assert pinned.flame_eyelids == NO_EYELIDS
    folder = _write_smirk_eyelids(tmp_path / "later", np.zeros((120, 3, 2)))
    monkeypatch.setenv("AGORA_FLAME_EYELIDS", str(folder))
    monkeypatch.chdir(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error", AgoraWarning)  # "none" is a choice: no warning either
        assert build_head(pinned).model_id == plain_id  # the environment no longer changes the head
    assert pin_head_paths(HeadConfig(source="demo")) == HeadConfig(source="demo")  # the demo head has no files


def test_pinning_a_run_without_eyelids_still_warns(fixture_obj, monkeypatch, tmp_path):
    """The run's head becomes "none" once pinned, so the pinning is where the user hears of it."""
    from agora_core.head.build import NO_EYELIDS, pin_head_paths

    monkeypatch.delenv("AGORA_FLAME_EYELIDS", raising=False)
    monkeypatch.setenv("AGORA_CONFIG_DIR", str(tmp_path / "no-config"))
    cfg = HeadConfig(source="flame", flame_pkl=str(FIXTURE), flame_uv=str(fixture_obj), mouth_interior=False)
    with pytest.warns(AgoraWarning, match="eyelid parameters will not move the FLAME mesh"):
        assert pin_head_paths(cfg).flame_eyelids == NO_EYELIDS
