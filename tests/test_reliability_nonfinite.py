"""NaN/inf is refused at the door: every reader of a checkpoint, avatar, basis, MLP, dataset, driving
file, weights file or config says in one line which file and which tensor or field, and the CLI
exits non-zero; the ONNX parity check fails on NaN instead of reporting a zero error."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import typer
from safetensors import safe_open
from safetensors.torch import save_file
from typer.testing import CliRunner

from agora_core.errors import AgoraError, check_finite
from test_export_fixtures import tiny_generator, write_random_agora_m, write_tiny_checkpoint
from test_train_fixtures import cached_build_head, write_tiny_dataset

BAD_VALUES = [float("nan"), float("inf"), float("-inf")]


def _one_line(err: pytest.ExceptionInfo, *parts: str) -> None:
    message = str(err.value)
    assert "\n" not in message
    for part in parts:
        assert part in message, (part, message)


@pytest.mark.parametrize("bad", BAD_VALUES)
def test_check_finite_names_the_first_bad_entry_of_nested_containers(bad):
    values = {"a": torch.ones(3), "b": {"c": [np.zeros(2), np.array([1.0, bad])]}, "n": torch.arange(3), "s": "x"}
    with pytest.raises(AgoraError) as err:
        check_finite(values, "f.pt", "entry")
    _one_line(err, "f.pt: entry 'b.c.1' holds NaN or inf")
    check_finite({"a": torch.ones(2), "i": np.arange(3), "f": 1.5, "t": (torch.zeros(1, dtype=torch.float16),)},
                 "ok.pt", "entry")  # finite floats, ints, strings: no error


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory) -> Path:
    G, config = tiny_generator()
    return write_tiny_checkpoint(tmp_path_factory.mktemp("run"), G, config)


def _poisoned_checkpoint(src: Path, dst: Path, key: str, bad: float) -> Path:
    from agora_core.train.checkpoint import save_checkpoint

    state = torch.load(src, weights_only=True)
    state["G_ema"][key] = state["G_ema"][key].clone()
    state["G_ema"][key].view(-1)[0] = bad
    return save_checkpoint(dst, {k: v for k, v in state.items() if k not in ("format", "format_version")})


@pytest.mark.parametrize("bad", BAD_VALUES)
def test_checkpoint_with_nonfinite_weights_is_refused(tiny_checkpoint, tmp_path, bad):
    from agora_core.inference.checkpoint import load_checkpoint

    key = next(iter(torch.load(tiny_checkpoint, weights_only=True)["G_ema"]))
    path = _poisoned_checkpoint(tiny_checkpoint, tmp_path / "kimg000001.pt", key, bad)
    with pytest.raises(AgoraError) as err:
        load_checkpoint(path)
    _one_line(err, str(path), f"checkpoint entry 'G_ema.{key}' holds NaN or inf")


def test_cli_export_and_sample_exit_2_on_a_nonfinite_checkpoint(tiny_checkpoint, tmp_path, monkeypatch):
    from agora_cli.export import export_app
    from agora_cli.sample import sample

    monkeypatch.setattr("agora_core.head.build.build_head", cached_build_head)
    key = next(iter(torch.load(tiny_checkpoint, weights_only=True)["G_ema"]))
    path = _poisoned_checkpoint(tiny_checkpoint, tmp_path / "kimg000001.pt", key, float("nan"))
    app = typer.Typer()
    app.add_typer(export_app, name="export")
    app.command("sample")(sample)
    for args in (["export", "ply", str(path), "--seed", "0", "--out", str(tmp_path / "a.ply")],
                 ["sample", str(path), "--out", str(tmp_path / "grid.png")]):
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 2, result.output
        assert f"checkpoint entry 'G_ema.{key}'" in result.output and "Traceback" not in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kimg000001.pt"]  # nothing written


def _poison_safetensors(path: Path, key: str, bad: float) -> None:
    with safe_open(str(path), framework="pt") as f:
        meta, tensors = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    tensors[key].view(-1)[0] = bad
    save_file(tensors, str(path), metadata=meta)


@pytest.mark.parametrize("which, key", [("basis", "scale.basis"), ("mlp", "layers.1.weight"), ("mlp", "input_std")])
def test_agora_m_files_with_nonfinite_tensors_are_refused_by_every_reader(tmp_path, which, key):
    from agora_core.export.exporters import read_agora_m
    from agora_core.mobile.basis_file import GaussianBasis
    from agora_core.mobile.coefficient_mlp import CoefficientMLP

    basis_path, mlp_path = write_random_agora_m(tmp_path, num_gaussians=6, w_dim=4, expr_dim=5)
    path = basis_path if which == "basis" else mlp_path
    _poison_safetensors(path, key, float("nan"))
    readers = (GaussianBasis.load if which == "basis" else CoefficientMLP.load, lambda _: read_agora_m(basis_path, mlp_path))
    for read in readers:
        with pytest.raises(AgoraError) as err:
            read(path)
        _one_line(err, str(path), f"'{key}' holds NaN or inf")


def test_avatar_file_with_nonfinite_tensors_is_refused(tmp_path):
    from agora_core.invert.avatar_file import FRAME_FIELDS, NEUTRAL_KEYS, AvatarFile

    z = lambda *s: torch.zeros(*s)  # noqa: E731
    avatar = AvatarFile(generator={"layer.weight": z(2, 2)}, generator_config={}, head_config={}, head_model="demo",
                        resolution=16, w=z(1, 4), shape=z(1, 3), frames={k: z(1, 3) for k in FRAME_FIELDS},
                        crops=torch.zeros(1, 16, 16, 3, dtype=torch.uint8), neutral={k: z(1, 2, 3) for k in NEUTRAL_KEYS},
                        mapping_camera=z(25), pti={"final_loss": float("nan")})  # a NaN metric is not a tensor
    path = avatar.save(tmp_path / "avatar.pt")
    assert AvatarFile.load(path).w.shape == (1, 4)
    avatar.neutral["opacities"][0, 1, 2] = float("inf")
    avatar.save(path)
    with pytest.raises(AgoraError) as err:
        AvatarFile.load(path)
    _one_line(err, str(path), "avatar entry 'neutral.opacities' holds NaN or inf")


@pytest.mark.parametrize("key", ["expression", "mirrored_jaw"])
def test_dataset_flame_npz_with_nonfinite_values_is_refused(tmp_path, key):
    from agora_core.data.format import read_dataset_index

    root = write_tiny_dataset(tmp_path / "data", n=3, mirrored=True)
    with np.load(root / "flame.npz") as z:
        arrays = {k: z[k].copy() for k in z.files}
    arrays[key][1, 0] = np.nan
    np.savez(root / "flame.npz", **arrays)
    with pytest.raises(AgoraError) as err:
        read_dataset_index(root)
    _one_line(err, str(root / "flame.npz"), f"FLAME parameter '{key}' holds NaN or inf")


def _driving_npz(path: Path, **override) -> Path:
    arrays = {"expression": np.zeros((4, 10), np.float32), "jaw": np.zeros((4, 3), np.float32), "fps": np.float32(25)}
    np.savez(path, **{**arrays, **override})
    return path


@pytest.mark.parametrize("field, value, match", [
    ("expression", np.full((4, 10), np.nan, np.float32), "'expression' has non-finite values"),
    ("jaw", np.full((4, 3), np.inf, np.float32), "'jaw' has non-finite values"),
    ("expression", np.full((4, 10), 1e30, np.float32), "'expression' reaches 1e+30, far outside"),
    ("camera", np.full((4, 25), 1e6, np.float32), "'camera' reaches 1e+06, far outside"),
    ("jaw", np.full((4, 3), -2e4, np.float32), "'jaw' reaches 2e+04, far outside"),
    ("fps", np.float32(np.nan), "'fps' must be a finite number"),
    ("fps", np.float32(1e12), "'fps' 1e+12 is outside"),
    ("fps", np.float32(1e-9), "'fps' 1e-09 is outside"),
])
def test_driving_npz_with_nonfinite_or_absurd_values_is_refused(tmp_path, field, value, match):
    from agora_core.reenact.driving import DrivingSequence

    path = _driving_npz(tmp_path / "drive.npz", **{field: value})
    with pytest.raises(AgoraError) as err:
        DrivingSequence.load(path)
    _one_line(err, str(path), match)


def test_driving_values_outside_the_trained_range_warn(tmp_path):
    from agora_core.errors import AgoraWarning
    from agora_core.reenact.driving import DrivingSequence

    path = _driving_npz(tmp_path / "drive.npz", expression=np.full((4, 10), 50.0, np.float32))
    with pytest.warns(AgoraWarning, match="'expression' reaches 50, outside what models are trained on"):
        seq = DrivingSequence.load(path)
    assert float(seq.expression.max()) == 50.0  # kept as given (a warning, not a clamp)


@pytest.mark.parametrize("doc, match", [
    ({"frames": [[float("nan")] * 55]}, "'frames' has non-finite values"),
    ({"frames": [[1e30] * 55]}, "'expression' reaches 1e+30"),
    ({"fps": float("inf"), "frames": [[0.0] * 55]}, "'fps' must be a finite number"),
    ({"params_dim": float("nan"), "frames": [[0.0] * 55]}, "'params_dim' must be a finite integer"),
    ({"num_frames": float("inf"), "frames": [[0.0] * 55]}, "'num_frames' must be a finite integer"),
])
def test_driving_json_with_nonfinite_values_is_refused(tmp_path, doc, match):
    from agora_core.reenact.driving import DrivingSequence

    path = tmp_path / "driving_sequence.json"
    path.write_text(json.dumps(doc))  # Python's json writes NaN / Infinity, as a hostile file would
    with pytest.raises(AgoraError) as err:
        DrivingSequence.load(path)
    _one_line(err, str(path), match)


@pytest.mark.parametrize("text", ["loss:\n  r1_gamma: .nan\n", "optim:\n  lr_g: .inf\n", "total_kimg: -.inf\n"])
def test_config_with_nonfinite_numbers_is_refused(tmp_path, text):
    from agora_core.run_config import load_config

    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(AgoraError) as err:
        load_config(path)
    _one_line(err, str(path), "must be a finite number")
    with pytest.raises(AgoraError, match="must be a finite number"):
        load_config(None, {"loss.r1_gamma": ".nan"})


def test_smirk_weights_with_nonfinite_values_are_refused(fixtures_dir, tmp_path):
    from agora_core.face.smirk import load_smirk_encoder

    state = torch.load(fixtures_dir / "smirk_em1_format_random.pt", weights_only=True)
    key = next(k for k, v in state.items() if k.startswith("smirk_encoder.") and v.is_floating_point())
    state[key] = torch.full_like(state[key], float("nan"))
    path = tmp_path / "SMIRK_em1.pt"
    torch.save(state, path)
    with pytest.raises(AgoraError) as err:
        load_smirk_encoder(path)
    _one_line(err, str(path), f"SMIRK weight '{key.removeprefix('smirk_encoder.')}' holds NaN or inf")


def test_onnx_parity_fails_on_nan_instead_of_reporting_zero_error(tmp_path):
    from agora_core.export.exporters import random_frame_inputs
    from agora_core.export.onnx_export import check_onnx_parity, export_deformation_onnx

    G, _ = tiny_generator()
    shape = 0.5 * torch.randn(1, G.head.num_shape)
    cache = G.identity(torch.randn(1, G.config.z_dim), torch.zeros(1, 25), shape, noise_mode="const").detach()
    path = export_deformation_onnx(G, cache, tmp_path / "deform.onnx")
    inputs = random_frame_inputs(G, cache, 0)
    assert check_onnx_parity(G, path, inputs).max_relative_error < 1e-3  # healthy export: passes
    with torch.no_grad():
        next(G.deformation_branch.parameters()).fill_(float("nan"))  # PyTorch side now yields NaN
    with pytest.raises(AgoraError) as err:
        check_onnx_parity(G, path, inputs)
    _one_line(err, str(path), "holds NaN or inf; the parity check fails")
