"""`--precision float32|bfloat16|auto` of AGORA's per-frame path: the resolver
(`devices.resolve_precision`), its interplay with `--executor` (`onnx_executor.build_per_frame_path`),
`FullAvatar` / `api.animate` in bfloat16, and the plumbing of `agora bench` and `agora reenact`.

Tolerance of bfloat16 vs float32 (tests/tolerances.py): only the deformation branch G_d changes
dtype. Each of its L weight layers (convolutions, the expression embedding) takes bfloat16 inputs and
weights, each rounded by at most eps_bf16/2 = 2⁻⁸ relatively, so a layer's output carries up to
eps_bf16 of its own size, and the L layers in turn up to L · eps_bf16 of the residual's; the
residual's activations (tanh-like, the quaternion's normalisation) carry a relative error over at
most as large as it is. So each output is within L · eps_bf16 of what the deformation branch moves
it by (`_deformation_effect`: the same frame lifted without G_d), plus float32 rounding of the
output's own size in the lifting. That bound is 1/16 of the effect for L = 8, so a bf16 path that
dropped the deformation would fail; measured here: 0.6–1.1 eps_bf16 of the effect.
"""

from __future__ import annotations

import json

import pytest
import torch
import typer
from test_bench_reenactment import TINY_YAML
from test_export_fixtures import tiny_generator
from test_export_onnx_executor import NAMES, _deformation_effect
from test_mobile_tinyhead import single_thread  # noqa: F401  (fixture)
from tolerances import assert_within, eps, rounding_tol
from typer.testing import CliRunner

from agora_core import devices
from agora_core.devices import resolve_precision
from agora_core.errors import AgoraError
from agora_core.export.onnx_executor import OnnxAnimator, build_per_frame_path, check_precision
from agora_core.head import FlameParams
from agora_core.reenact.demo_sequence import make_demo_sequence
from agora_core.reenact.run import FullAvatar

runner = CliRunner()


@pytest.fixture
def bf16_units(monkeypatch):
    """Set whether this CPU has bfloat16 units, as `devices.inference_dtype` sees it."""
    return lambda has: monkeypatch.setattr(devices, "cpu_has_bf16_units", lambda cpuinfo=None: has)


def _tiny():
    g, config = tiny_generator()
    cache = g.identity(torch.randn(1, g.config.z_dim), torch.zeros(1, 25), 0.5 * torch.randn(1, g.head.num_shape),
                       noise_mode="const").detach()
    return g, cache, config


def _frames(g, batch: int = 3, seed: int = 0) -> FlameParams:
    gen = torch.Generator().manual_seed(seed)
    return FlameParams(expression=torch.randn(batch, g.head.num_expr, generator=gen),
                       jaw=0.1 * torch.randn(batch, 3, generator=gen), eyelids=torch.rand(batch, 2, generator=gen))


def _assert_bf16_close(g, cache, flame, ref, half) -> None:
    """`half` (bfloat16 G_d) within the module docstring's bound of `ref` (float32), and not equal to it."""
    layers = sum(1 for p in g.deformation_branch.parameters() if p.ndim >= 2)
    effect = _deformation_effect(g, cache, flame, ref)
    for name in NAMES:
        a, b = getattr(ref, name), getattr(half, name)
        assert b.dtype == a.dtype == torch.float32, name
        tol = layers * eps(torch.bfloat16) * effect[name] + rounding_tol(torch.float32, float(a.abs().max()), steps=16)
        assert_within(b, a, tol, name)
        if name != "opacities":  # no opacity residual in this layout; elsewhere the bound is below the effect
            assert tol < 0.1 * effect[name], (name, tol, effect[name])
    # the option does something: bfloat16 moves the means by far more than float32 rounding could
    assert (half.means - ref.means).abs().max() > 100 * rounding_tol(torch.float32, float(ref.means.abs().max()), 16)
    torch.testing.assert_close(half.sh, ref.sh, rtol=0, atol=0)  # colour is the identity's, not G_d's


def test_resolve_precision(bf16_units):
    for has in (True, False):
        bf16_units(has)
        assert resolve_precision("float32", "cpu") is None  # the cache's dtype
        assert resolve_precision("bfloat16", "cpu") is torch.bfloat16  # asked for: emulated where no units
        assert resolve_precision("auto", "cpu") is (torch.bfloat16 if has else None)
        assert resolve_precision("auto", "cuda") is None  # GPUs keep float32 until measured
    with pytest.raises(AgoraError, match=r"--precision 'half': choose one of float32, bfloat16, auto"):
        resolve_precision("half", "cpu")


def test_executor_and_precision_together(bf16_units):
    g, cache, _ = _tiny()
    with pytest.raises(AgoraError, match="--precision bfloat16 with --executor onnxruntime: .*float32 only"):
        check_precision("bfloat16", "onnxruntime")
    with pytest.raises(AgoraError, match="--precision bfloat16 with --executor onnxruntime"):
        build_per_frame_path("onnxruntime", "bfloat16", g, cache)
    with pytest.raises(AgoraError, match="--executor 'tvm'"):
        check_precision("auto", "tvm")
    with pytest.raises(AgoraError, match="--precision 'fp8'"):
        check_precision("fp8", "torch")
    assert build_per_frame_path("torch", "float32", g, cache) == (None, None)
    assert build_per_frame_path("torch", "bfloat16", g, cache) == (None, torch.bfloat16)
    assert build_per_frame_path("auto", "bfloat16", g, cache) == (None, torch.bfloat16)  # bf16 needs torch
    bf16_units(True)
    assert build_per_frame_path("auto", "auto", g, cache) == (None, torch.bfloat16)
    onnx, dtype = build_per_frame_path("onnxruntime", "auto", g, cache)  # the explicit executor wins, in float32
    assert isinstance(onnx, OnnxAnimator) and dtype is None
    bf16_units(False)
    onnx, dtype = build_per_frame_path("auto", "auto", g, cache)
    assert isinstance(onnx, OnnxAnimator) and dtype is None


def test_full_avatar_in_bfloat16_is_close_to_float32():
    g, cache, _ = _tiny()
    flame = _frames(g)
    full, half = FullAvatar(g, cache), FullAvatar(g, cache, precision="bfloat16")
    assert (full.deform_dtype, half.deform_dtype) == (None, torch.bfloat16)
    _assert_bf16_close(g, cache, flame, full.animate(flame), half.animate(flame))


def test_api_animate_takes_the_precision(tmp_path):
    from agora_core import api
    from test_export_fixtures import write_tiny_checkpoint

    g, _, config = _tiny()
    avatar = api.load_avatar(write_tiny_checkpoint(tmp_path, g, config), seed=3)
    flame = make_demo_sequence(3, 8.0, seed=1).flame()
    ref, half = api.animate(avatar, flame), api.animate(avatar, flame, precision="bfloat16")
    _assert_bf16_close(avatar.generator, avatar.cache, flame, ref, half)
    with pytest.raises(AgoraError, match="--precision 'bf16'"):
        api.animate(avatar, flame, precision="bf16")


def test_bench_cli_precision(tmp_path, bf16_units, monkeypatch):
    """--precision bfloat16 times torch's per-frame path in bfloat16 (JSON and table say so); auto on a
    CPU without bf16 units stays float32; the conflicts are one-line errors."""
    from agora_cli.bench import bench
    from agora_core.models.agora_generator import AgoraGenerator

    timed, animate = set(), AgoraGenerator.animate

    def spy(self, cache, flame, **kwargs):
        if torch.is_inference_mode_enabled():  # the timed calls (bench/timing.py), not the set-up
            timed.add(kwargs.get("deform_dtype"))
        return animate(self, cache, flame, **kwargs)

    monkeypatch.setattr(AgoraGenerator, "animate", spy)

    config = tmp_path / "tiny.yaml"
    config.write_text(TINY_YAML)
    app = typer.Typer()
    app.command()(bench)
    out = tmp_path / "bench.json"
    args = ["--config", str(config), "--frames", "2", "--warmup", "0", "--k", "4", "--batch", "1", "--no-breakdown",
            "--json", str(out)]
    result = runner.invoke(app, args + ["--precision", "bfloat16", "--executor", "auto"])
    assert result.exit_code == 0, result.output
    assert "AGORA in torch (bfloat16)" in " ".join(result.output.split())  # the table's title, however wrapped
    model = json.loads(out.read_text())["model"]
    assert (model["executor"], model["precision"]) == ("torch", "bfloat16") and timed == {torch.bfloat16}
    bf16_units(False)
    timed.clear()
    result = runner.invoke(app, args + ["--precision", "auto"])
    assert result.exit_code == 0, result.output
    assert json.loads(out.read_text())["model"]["precision"] == "float32" and timed == {None}
    bad = runner.invoke(app, args + ["--precision", "bfloat16", "--executor", "onnxruntime"])
    assert bad.exit_code == 2 and "drop one of them" in bad.output
    bad = runner.invoke(app, args + ["--precision", "double"])
    assert bad.exit_code == 2 and "--precision 'double'" in bad.output
    bad = runner.invoke(app, ["--device", "browser", "--precision", "auto"])
    assert bad.exit_code == 2 and "AGORA-M only" in bad.output


def test_reenact_cli_precision(tmp_path, monkeypatch):
    """`agora reenact --precision` reaches the full model's per-frame path; with --mobile it is an error."""
    from test_invert_helpers import quick_avatar

    from agora_cli.reenact import reenact
    from agora_core.export import onnx_executor

    app = typer.Typer()
    app.command()(reenact)
    seen, build = [], onnx_executor.build_per_frame_path

    def spy(executor, precision, *args, **kwargs):
        seen.append((executor, precision))
        return build(executor, precision, *args, **kwargs)

    monkeypatch.setattr(onnx_executor, "build_per_frame_path", spy)
    params = make_demo_sequence(2, 8.0).save(tmp_path / "d.npz")
    out = tmp_path / "r.mp4"
    result = runner.invoke(app, [str(quick_avatar()), "--params", str(params), "--out", str(out), "--precision",
                                 "bfloat16", "--size", "16", "--no-progress"])
    assert result.exit_code == 0, result.output
    assert seen == [("torch", "bfloat16")] and out.is_file()
    bad = runner.invoke(app, [str(tmp_path / "a.pt"), "--params", str(params), "--mobile", "--basis",
                              str(tmp_path / "b.safetensors"), "--mlp", str(tmp_path / "m.safetensors"),
                              "--precision", "bfloat16", "--no-progress"])
    assert bad.exit_code == 2 and "--mobile runs AGORA-M" in bad.output and "--precision" in bad.output
