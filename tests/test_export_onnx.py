"""ONNX export of the per-frame path (deformation branch + lifting) and `agora export onnx|ply|splat`."""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest
import torch
import typer
from typer.testing import CliRunner

from agora_cli.export import export_app
from agora_core.head import FlameParams
from agora_core.export.onnx_export import (
    INPUT_NAMES,
    OUTPUT_NAMES,
    DeformationLifting,
    check_onnx_parity,
    export_deformation_onnx,
    frame_inputs,
)
from agora_core.export.exporters import random_frame_inputs
from agora_core.export.sources import load_avatar_source
from agora_core.gaussians import read_ply, read_splat
from test_export_fixtures import tiny_generator, write_tiny_checkpoint
from test_train_fixtures import cached_build_head

# float32 eager vs float32 onnxruntime: only summation order differs (convolutions, GridSample), so
# errors sit at ~1e-6 of the values; 1e-4 relative leaves room for other CPUs' kernels.
RELATIVE_TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def tiny():
    G, config = tiny_generator()
    shape = 0.5 * torch.randn(1, G.head.num_shape)
    cache = G.identity(torch.randn(1, G.config.z_dim), torch.zeros(1, 25), shape, noise_mode="const").detach()
    return G, config, cache


def test_wrapper_is_the_generators_per_frame_path(tiny):
    G, _, cache = tiny
    frame = FlameParams(expression=torch.randn(1, G.head.num_expr), jaw=torch.tensor([[0.2, 0.05, 0.0]]),
                        eyelids=torch.rand(1, 2))
    # animate() feeds FLAME the full ψ but G_d only ψ[:expr_cond_dim]; the graph gets both the same way.
    expected = G.animate(cache, frame, noise_mode="const").gaussians
    got = DeformationLifting(G)(*frame_inputs(G, cache, frame).as_tuple())
    for name, a, b in zip(OUTPUT_NAMES, got, (expected.means, expected.log_scales, expected.quats, expected.opacities)):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6, msg=name)
    without_noise = G.animate(cache, frame, noise_mode="none").gaussians
    assert (expected.means - without_noise.means).abs().max() > 0  # the constant noise is part of the graph


def test_onnx_export_checks_and_matches_pytorch(tiny, tmp_path: Path):
    G, _, cache = tiny
    path = export_deformation_onnx(G, cache, tmp_path / "deform.onnx")
    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)
    assert model.opset_import[0].version >= 17
    assert [i.name for i in model.graph.input] == list(INPUT_NAMES)
    assert [o.name for o in model.graph.output] == list(OUTPUT_NAMES)
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["format"] == "agora-deform-onnx" and int(meta["num_gaussians"]) == G.num_gaussians
    for seed in range(3):
        inputs = random_frame_inputs(G, cache, seed)
        parity = check_onnx_parity(G, path, inputs)
        print(f"seed {seed}: max abs {parity.max_abs_error:.2e} relative {parity.max_relative_error:.2e}")
        assert parity.max_relative_error < RELATIVE_TOLERANCE, parity
    # the residuals really vary with the expression inputs (the check is not on a constant graph)
    a = DeformationLifting(G)(*random_frame_inputs(G, cache, 0).as_tuple())[0]
    b = DeformationLifting(G)(*random_frame_inputs(G, cache, 1).as_tuple())[0]
    assert (a - b).abs().max() > 1e-4


@pytest.fixture(scope="module")
def checkpoint(tiny, tmp_path_factory) -> Path:
    G, config, _ = tiny
    return write_tiny_checkpoint(tmp_path_factory.mktemp("run"), G, config)


@pytest.fixture
def app(monkeypatch) -> typer.Typer:
    monkeypatch.setattr("agora_core.head.build.build_head", cached_build_head)
    app = typer.Typer()
    app.add_typer(export_app, name="export")
    return app


def test_cli_onnx_from_checkpoint(app, checkpoint: Path, tmp_path: Path):
    out = tmp_path / "deform.onnx"
    result = CliRunner().invoke(app, ["export", "onnx", str(checkpoint), "--seed", "3", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert out.is_file() and out.with_suffix(".identity.safetensors").is_file()
    assert "max abs error" in result.output


def test_cli_ply_and_splat_are_the_seeds_neutral(app, checkpoint: Path, tmp_path: Path):
    neutral = load_avatar_source(checkpoint, seed=3).neutral
    for kind, reader in (("ply", read_ply), ("splat", read_splat)):
        out = tmp_path / f"n.{kind}"
        result = CliRunner().invoke(app, ["export", kind, str(checkpoint), "--seed", "3", "--out", str(out)])
        assert result.exit_code == 0, result.output
        back = reader(out)
        assert back.num_gaussians == neutral.num_gaussians
        torch.testing.assert_close(back.means, neutral.means, rtol=0, atol=1e-6)


def test_cli_user_errors_are_one_line(app, checkpoint: Path, tmp_path: Path):
    result = CliRunner().invoke(app, ["export", "onnx", str(checkpoint), "--out", str(tmp_path / "x.onnx")])
    assert result.exit_code == 2 and "--seed" in result.output and "Traceback" not in result.output
    result = CliRunner().invoke(app, ["export", "ply", str(tmp_path / "missing.pt")])
    assert result.exit_code == 2 and "not found" in result.output


def test_cli_engine_ready_ply_and_spz(app, checkpoint: Path, tmp_path: Path):
    """--sh-degree 3: the 62-float (248-byte) INRIA layout, read back by gsply (not our reader); .spz via gsply."""
    import gsply

    neutral = load_avatar_source(checkpoint, seed=3).neutral
    out = tmp_path / "unity.ply"
    result = CliRunner().invoke(app, ["export", "ply", str(checkpoint), "--seed", "3", "--sh-degree", "3", "--out", str(out)])
    assert result.exit_code == 0, result.output
    data = out.read_bytes()
    assert len(data) - data.index(b"end_header\n") - len(b"end_header\n") == 248 * neutral.num_gaussians
    back = gsply.plyread(str(out))
    torch.testing.assert_close(torch.from_numpy(back.means), neutral.means[0], rtol=0, atol=1e-6)
    assert back.shN.shape == (neutral.num_gaussians, 15, 3) and not back.shN[:, 3:].any()
    result = CliRunner().invoke(app, ["export", "spz", str(checkpoint), "--seed", "3", "--out", str(tmp_path / "n.spz")])
    assert result.exit_code == 0, result.output
    assert gsply.read_spz(str(tmp_path / "n.spz")).means.shape == (neutral.num_gaussians, 3)
    result = CliRunner().invoke(app, ["export", "ply", str(checkpoint), "--seed", "3", "--sh-degree", "4",
                                      "--out", str(tmp_path / "bad.ply")])
    assert result.exit_code == 2 and "--sh-degree 4" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "bad.ply").exists()
