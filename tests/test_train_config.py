"""Training config: YAML loading with strict keys and types, dotted overrides, the shipped configs."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import yaml

from agora_core.errors import AgoraError
from agora_core.run_config import (
    TrainConfig,
    config_from_dict,
    config_to_dict,
    load_config,
    parse_set_options,
    write_config,
)

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return path


def test_defaults_are_the_paper_stage_1():
    cfg = load_config(None)
    assert cfg == TrainConfig()
    assert (cfg.optim.lr_g, cfg.optim.lr_d, cfg.optim.betas, cfg.batch_size) == (0.0025, 0.002, (0.0, 0.99), 32)
    assert (cfg.loss.r1_gamma, cfg.loss.r1_interval, cfg.loss.lambda_position, cfg.loss.lambda_scale) == (1.0, 16, 0.25, 0.5)
    assert (cfg.loss.lambda_deform_position, cfg.loss.lambda_deform_scale, cfg.loss.lambda_opacity) == (1.5, 1.5, 0.0)


def test_unknown_key_names_file_and_key(tmp_path: Path):
    path = _write(tmp_path, "loss:\n  r1_gama: 2\n")
    with pytest.raises(AgoraError) as exc:
        load_config(path)
    assert str(path) in str(exc.value) and "'loss.r1_gama'" in str(exc.value)
    with pytest.raises(AgoraError, match=r"unknown key 'bogus'"):
        load_config(_write(tmp_path, "bogus: 1\n"))


@pytest.mark.parametrize("text, key", [
    ("batch_size: 8.5\n", "batch_size"),
    ("batch_size: true\n", "batch_size"),
    ("xflip: 1\n", "xflip"),
    ("optim:\n  betas: [0.0]\n", "optim.betas"),
    ("head:\n  source: smplx\n", "head.source"),
    ("loss: 3\n", "loss"),
    ("generator:\n  cue: uv\n", "generator.cue"),
])
def test_wrong_types_are_rejected_with_the_key(tmp_path: Path, text: str, key: str):
    path = _write(tmp_path, text)
    with pytest.raises(AgoraError) as exc:
        load_config(path)
    assert str(path) in str(exc.value) and key in str(exc.value)


def test_ints_are_accepted_for_floats_and_lists_become_tuples(tmp_path: Path):
    cfg = load_config(_write(tmp_path, "total_kimg: 5\noptim:\n  betas: [0, 0.9]\n"))
    assert cfg.total_kimg == 5.0 and isinstance(cfg.total_kimg, float)
    assert cfg.optim.betas == (0.0, 0.9)


def test_overrides_win_over_the_file_and_are_parsed(tmp_path: Path):
    path = _write(tmp_path, "batch_size: 16\nloss:\n  r1_gamma: 2.0\n")
    cfg = load_config(path, {"batch_size": "8", "loss.r1_gamma": 0.5, "discriminator.cue": "uv",
                             "shift_augmentation.scale": "[0.9, 1.1]", "xflip": "true"})
    assert (cfg.batch_size, cfg.loss.r1_gamma, cfg.discriminator.cue) == (8, 0.5, "uv")
    assert cfg.shift_augmentation.scale == (0.9, 1.1) and cfg.xflip is True
    with pytest.raises(AgoraError, match="unknown key 'loss.nope'"):
        load_config(path, {"loss.nope": "1"})
    with pytest.raises(AgoraError, match="batch_size: must be an integer"):
        load_config(path, {"batch_size": "many"})
    assert parse_set_options(["a.b=1", "c= x"]) == {"a.b": "1", "c": " x"}
    with pytest.raises(AgoraError, match="--set"):
        parse_set_options(["novalue"])


def test_invalid_values_from_nested_configs_name_the_file(tmp_path: Path):
    path = _write(tmp_path, "generator:\n  uv_resolution: 48\n")
    with pytest.raises(AgoraError, match=rf"{path}: GeneratorConfig: uv_resolution must be a power of two"):
        load_config(path)
    with pytest.raises(AgoraError, match="resolution must be a power of two"):
        load_config(_write(tmp_path, "resolution: 48\n"))
    with pytest.raises(AgoraError, match="config file not found"):
        load_config(tmp_path / "missing.yaml")
    with pytest.raises(AgoraError, match="sample_resolution must be >= 0"):
        load_config(_write(tmp_path, "sample_resolution: -1\n"))
    with pytest.raises(AgoraError, match="loss.cue_cache_mb must be >= 0"):
        load_config(_write(tmp_path, "loss:\n  cue_cache_mb: -5\n"))


def test_dict_round_trip_and_written_yaml(tmp_path: Path):
    cfg = load_config(None, {"optim.betas": [0.1, 0.9], "head.mouth_interior": False})
    data = config_to_dict(cfg)
    assert data["optim"]["betas"] == [0.1, 0.9]
    assert config_from_dict(data) == cfg
    path = write_config(cfg, tmp_path / "run" / "config.yaml")
    assert load_config(path) == cfg
    assert yaml.safe_load(path.read_text()) == data


@pytest.mark.parametrize("name", ["demo.yaml", "demo64.yaml", "ffhq256.yaml", "ffhq512.yaml"])
def test_shipped_configs_load(name: str):
    cfg = load_config(CONFIGS / name)
    assert cfg.loss.lambda_position == 0.25 and cfg.loss.lambda_scale == 0.5
    if name.startswith("ffhq"):
        assert cfg.batch_size == 32 and cfg.optim.lr_g == 0.0025 and cfg.optim.lr_d == 0.002
        assert (cfg.loss.lambda_deform_position, cfg.loss.lambda_deform_scale) == (1.5, 1.5)
    if name.startswith("demo"):  # grids above the 32²/64² training size, so expressions show
        assert cfg.sample_resolution == 128 and cfg.loss.cue_cache_mb > 0
    else:
        assert cfg.sample_resolution == 0  # the training resolution
    if name == "ffhq256.yaml":
        assert (cfg.resolution, cfg.generator.gaussian_grid, cfg.total_kimg, cfg.loss.lambda_opacity) == (256, 256, 6500, 0)
    if name == "ffhq512.yaml":
        assert (cfg.resolution, cfg.generator.gaussian_grid, cfg.total_kimg, cfg.loss.lambda_opacity) == (512, 512, 14000, 1)
        assert cfg.resume_from


def test_shipped_demo_model_is_its_two_configs_run_to_their_ends():
    """models/demo is configs/demo_model.yaml, then configs/demo_model_sharpen.yaml resumed from the
    first's last checkpoint: the stored config is the second file's (what made the weights), and it
    differs from the first only in the initial scale and the schedule."""
    stored = json.loads((ROOT / "models" / "demo" / "model.json").read_text())
    one, two = load_config(CONFIGS / "demo_model.yaml"), load_config(CONFIGS / "demo_model_sharpen.yaml")
    assert not one.resume_from
    assert two.resume_from == f"runs/demo_model/checkpoints/kimg{int(one.total_kimg):06d}.pt"
    assert stored["kimg"] == two.total_kimg
    assert config_from_dict(stored["config"], source="models/demo/model.json") == two
    assert (one.generator.s_offset, two.generator.s_offset) == (-5.7, -6.2)
    assert two.generator == dataclasses.replace(one.generator, s_offset=two.generator.s_offset)
    assert two.loss == dataclasses.replace(one.loss, start_dual_kimg=0)
    same = ("head", "discriminator", "optim", "shift_augmentation", "resolution", "batch_size", "ema_kimg", "seed")
    assert all(getattr(one, f) == getattr(two, f) for f in same)
