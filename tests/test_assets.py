"""Asset lookup: flag > env > assets.yaml, and the one-line errors for missing files."""

from __future__ import annotations

import pytest

from agora_core.assets import ASSETS, config_dir, require_asset, resolve_asset
from agora_core.errors import AgoraError


def test_resolution_order(tmp_path, monkeypatch):
    flag_file = tmp_path / "flag.pkl"
    env_file = tmp_path / "env.pkl"
    yaml_file = tmp_path / "yaml.pkl"
    for f in (flag_file, env_file, yaml_file):
        f.write_bytes(b"x")
    config_dir().mkdir(parents=True, exist_ok=True)
    (config_dir() / "assets.yaml").write_text(f"flame_pkl: {yaml_file}\n")
    try:
        assert resolve_asset("flame_pkl").path == yaml_file
        assert resolve_asset("flame_pkl").source == "assets.yaml"
        monkeypatch.setenv("AGORA_FLAME_PKL", str(env_file))
        assert resolve_asset("flame_pkl").path == env_file
        assert resolve_asset("flame_pkl", flag_file).path == flag_file
        assert resolve_asset("flame_pkl", flag_file).found
    finally:
        (config_dir() / "assets.yaml").unlink()


def test_missing_asset_error_names_flag_and_source():
    with pytest.raises(AgoraError) as exc:
        require_asset("smirk_ckpt")
    msg = str(exc.value)
    assert "--smirk" in msg and "AGORA_SMIRK" in msg and "smirk" in msg.lower()
    assert "\n" not in msg


def test_missing_file_error_names_path(tmp_path):
    missing = tmp_path / "nope.onnx"
    with pytest.raises(AgoraError) as exc:
        require_asset("modnet_onnx", missing)
    assert str(missing) in str(exc.value) and "MODNet" in str(exc.value)


def test_bad_yaml_is_one_line_error():
    config_dir().mkdir(parents=True, exist_ok=True)
    (config_dir() / "assets.yaml").write_text("flame_pkl: [unclosed\n")
    try:
        with pytest.raises(AgoraError) as exc:
            resolve_asset("flame_pkl")
        assert "assets.yaml" in str(exc.value)
        (config_dir() / "assets.yaml").write_text("flame: /x\n")
        with pytest.raises(AgoraError, match="unknown asset key"):
            resolve_asset("flame_pkl")
    finally:
        (config_dir() / "assets.yaml").unlink()


def test_every_asset_says_where_to_get_it():
    for spec in ASSETS.values():
        assert spec.obtain and spec.flag.startswith("--") and spec.env.startswith("AGORA_")


def test_eyelid_folder_counts_as_found_and_is_optional(tmp_path, monkeypatch):
    """SMIRK ships two files (l_eyelid.npy, r_eyelid.npy): the folder holding them is the asset."""
    spec = ASSETS["flame_eyelids"]
    assert spec.optional and spec.flag == "--flame-eyelids" and spec.env == "AGORA_FLAME_EYELIDS"
    assert "smirk" in spec.obtain.lower() and not ASSETS["flame_pkl"].optional
    assert not resolve_asset("flame_eyelids").found  # not configured
    monkeypatch.setenv("AGORA_FLAME_EYELIDS", str(tmp_path))
    assert resolve_asset("flame_eyelids").found and require_asset("flame_eyelids") == tmp_path
    assert not resolve_asset("flame_pkl", tmp_path).found  # a folder is no FLAME pickle
    monkeypatch.setenv("AGORA_FLAME_EYELIDS", str(tmp_path / "missing"))
    with pytest.raises(AgoraError, match=r"missing: SMIRK eyelid blendshapes .* not found \(from env\)"):
        require_asset("flame_eyelids")
