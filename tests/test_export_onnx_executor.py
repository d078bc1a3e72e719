"""ONNX Runtime as the executor of AGORA's per-frame path (export/onnx_executor.py, `--executor`):
the same Gaussians as `AgoraGenerator.animate` in torch, on a tiny model and on the shipped demo model,
and the choice between the executors.

Tolerance (tests/tolerances.py): FLAME runs in torch in both (the same code on the same batch); the
deformation branch G_d's convolutions, linear layers and GridSample sum the same products in another
order, so a residual plane differs by at most Σ fan-in roundings (every conv/linear layer of G_d in
turn; +16 for the gains, GridSample's 4 taps and the activations) of the largest value G_d passes
through (`_largest_activation`, measured with hooks). A plane's error reaches an output through its
residual activation, whose slope is at most: γ_d (deform_position_scale) for means, 1 for
log-scales, π/2 for quaternions and 0 for opacities (no opacity residual in the paper's layout); the
lifting then rounds values of the output's own size. `_deformation_effect` checks that this bound is
far below what the deformation branch changes, so a graph without it would fail.
"""

from __future__ import annotations

import math

import pytest
import torch
from tolerances import assert_within, rounding_tol

from agora_core.errors import AgoraError, AgoraWarning
from agora_core.export import onnx_executor
from agora_core.export.onnx_executor import OnnxAnimator, build_animator
from agora_core.head import FlameParams
from agora_core.models.lifting import lift_gaussians
from test_export_fixtures import tiny_generator

NAMES = ("means", "log_scales", "quats", "opacities")
DEMO_MODEL = "models/demo"


def _largest_activation(g, run) -> float:
    """max |value| any module of g's deformation branch outputs during run()."""
    largest = [0.0]

    def hook(module, inputs, output):
        if isinstance(output, torch.Tensor) and output.is_floating_point():
            largest[0] = max(largest[0], float(output.abs().max()))

    handles = [m.register_forward_hook(hook) for m in g.deformation_branch.modules()]
    try:
        run()
    finally:
        for h in handles:
            h.remove()
    return largest[0]


def _tolerances(g, ref, activation: float) -> dict[str, float]:
    steps = sum(p[0].numel() for p in g.deformation_branch.parameters() if p.ndim >= 2) + 16
    slope = {"means": g.config.deform_position_scale, "log_scales": 1.0, "quats": math.pi / 2, "opacities": 0.0}
    return {n: rounding_tol(torch.float32, slope[n] * activation + float(getattr(ref, n).abs().max()), steps)
            for n in NAMES}


def _deformation_effect(g, cache, flame: FlameParams, ref) -> dict[str, float]:
    """max |Δ| per output between the Gaussians and the same frame lifted without the deformation branch."""
    b = flame.batch_size
    with torch.no_grad():
        mesh = g.head(flame.replace(shape=cache.shape.expand(b, -1)))
        plain, _ = lift_gaussians(cache.raw_main.expand(b, -1, -1), g.mesh_points(mesh), None, g.residual_mask,
                                  g.config)
    return {n: float((getattr(ref, n) - getattr(plain, n)).abs().max()) for n in NAMES}


def _compare(g, cache, batch: int, seed: int, strength: float = 1.0) -> None:
    """`strength` scales expression and jaw: a model whose residuals are small (the demo model's are
    bounded by 5 mm) needs strong expressions to show the deformation branch above the tolerance."""
    gen = torch.Generator().manual_seed(seed)
    expression = strength * torch.randn(batch, g.head.num_expr, generator=gen)
    jaw, eyelids = 0.1 * strength * torch.randn(batch, 3, generator=gen), torch.rand(batch, 2, generator=gen)
    neck, eyes = 0.1 * torch.randn(batch, 3, generator=gen), 0.1 * torch.randn(batch, 6, generator=gen)
    flame = FlameParams(expression=expression, jaw=jaw, eyelids=eyelids, neck=neck, eyes=eyes)

    def reference():
        with torch.inference_mode():  # what `agora bench` and `agora reenact` run with --executor torch
            return g.animate(cache, flame, noise_mode="const").gaussians

    ref = reference()
    activation = _largest_activation(g, reference)
    got = OnnxAnimator(g, cache).animate(flame)
    tol = _tolerances(g, ref, activation)
    effect = _deformation_effect(g, cache, flame, ref)
    for name in NAMES:
        assert getattr(got, name).shape == getattr(ref, name).shape, name
        assert_within(getattr(got, name), getattr(ref, name), tol[name], name)
        if name != "opacities":  # the check could fail: ONNX without the deformation branch would be off by
            # `effect`, at least twice the tolerance (the demo model's residuals, bounded and smallest
            # for the scales, give ~3× for log-scales, ~5× for means, ~30× for rotations)
            assert effect[name] > 2 * tol[name], (name, effect[name], tol[name])
    assert_within(got.sh, ref.sh, rounding_tol(torch.float32, float(ref.sh.abs().max()), steps=4), "sh")


def test_onnx_animator_matches_torch_on_a_tiny_model():
    g, _ = tiny_generator()
    cache = g.identity(torch.randn(1, g.config.z_dim), torch.zeros(1, 25), 0.5 * torch.randn(1, g.head.num_shape),
                       noise_mode="const").detach()
    _compare(g, cache, batch=3, seed=0)


def test_onnx_animator_matches_torch_on_the_demo_model():
    from agora_core.inference import draw_identity, load_model

    model = load_model(DEMO_MODEL)
    cache, _ = draw_identity(model, seed=0, n=1)
    _compare(model.generator.eval(), cache.detach(), batch=2, seed=1, strength=3.0)


def test_eyelids_neck_and_eyes_default_to_zero():
    g, _ = tiny_generator()
    cache = g.identity(torch.randn(1, g.config.z_dim), torch.zeros(1, 25), torch.zeros(1, g.head.num_shape),
                       noise_mode="const").detach()
    onnx = OnnxAnimator(g, cache)
    expression, jaw = torch.randn(2, g.head.num_expr), 0.1 * torch.randn(2, 3)
    a = onnx.animate(FlameParams(expression=expression, jaw=jaw))
    b = onnx.animate(FlameParams(expression=expression, jaw=jaw, eyelids=torch.zeros(2, 2), neck=torch.zeros(2, 3),
                                 eyes=torch.zeros(2, 6)))
    torch.testing.assert_close(a.means, b.means, rtol=0, atol=0)  # the same graph on the same inputs


def test_executor_choice(monkeypatch):
    g, _ = tiny_generator()
    cache = g.identity(torch.randn(1, g.config.z_dim), torch.zeros(1, 25), torch.zeros(1, g.head.num_shape),
                       noise_mode="const").detach()
    assert build_animator("torch", g, cache) is None
    assert isinstance(build_animator("auto", g, cache), OnnxAnimator)
    assert isinstance(build_animator("onnxruntime", g, cache), OnnxAnimator)
    with pytest.raises(AgoraError, match="--executor 'tensorrt'"):
        build_animator("tensorrt", g, cache)
    # where ONNX Runtime cannot run: an error naming the flag for "onnxruntime", torch for "auto"
    cases = [(dict(device="meta"), "runs on the CPU"), (dict(cache=cache.expand(2)), "one identity at a time")]
    for changes, match in cases:
        kwargs = dict(generator=g, cache=cache, device="cpu") | changes
        with pytest.raises(AgoraError, match=f"--executor onnxruntime: .*{match}"):
            build_animator("onnxruntime", **kwargs)
        assert build_animator("auto", **kwargs) is None
    monkeypatch.setattr(onnx_executor, "onnxruntime_available", lambda: False)
    with pytest.raises(AgoraError, match="onnxruntime does not import"):
        build_animator("onnxruntime", g, cache)
    assert build_animator("auto", g, cache) is None
    monkeypatch.undo()

    def broken_export(*args, **kwargs):
        raise RuntimeError("unsupported operator")

    monkeypatch.setattr("agora_core.export.onnx_export.export_deformation_onnx", broken_export)
    with pytest.warns(AgoraWarning, match="ONNX export failed .*unsupported operator"):
        assert build_animator("auto", g, cache) is None


def test_single_branch_model():
    from test_mobile_tinyhead import tiny_generator as tiny_single

    g = tiny_single(deformation_branch=False)
    cache = g.identity(torch.randn(1, 8), torch.zeros(1, 25), torch.zeros(1, 4), noise_mode="const").detach()
    with pytest.raises(AgoraError, match="single-branch model"):
        build_animator("onnxruntime", g, cache)
    assert build_animator("auto", g, cache) is None


def test_api_animate_takes_the_executor(tmp_path):
    from agora_core import api
    from agora_core.reenact.demo_sequence import make_demo_sequence
    from test_export_fixtures import write_tiny_checkpoint

    g, config = tiny_generator()
    avatar = api.load_avatar(write_tiny_checkpoint(tmp_path, g, config), seed=3)
    flame = make_demo_sequence(3, 8.0, seed=1).flame()
    a = api.animate(avatar, flame)
    b = api.animate(avatar, flame, executor="onnxruntime")
    # the tolerance's reason: _tolerances above; here the two agree far inside it
    torch.testing.assert_close(b.means, a.means, rtol=0, atol=1e-5)
    with pytest.raises(AgoraError, match="--executor 'onnx'"):
        api.animate(avatar, flame, executor="onnx")
