"""The inference formulation of the synthesis layers (models/stylegan2_inference.py) vs the reference
layers: same values on random inputs, and autograd never sees it.

Tolerances (tests/tolerances.py): both paths sum the same products in another order and with the
modulation, demodulation and √2 gains applied to the weight instead of the activations, i.e. a few
more roundings per product: a conv output is a sum of Cin·k² products, so two evaluations differ by
at most ~(Cin·k² + 8) roundings of the largest partial sum, bounded by Σ|x·w'| (computed below). In
float64 that is ~1e-13 of the values; the float32 network check chains layers, each adding its own.
"""

from __future__ import annotations

import pytest
import torch
from tolerances import assert_within, rounding_tol

from agora_core.head import FlameParams
from agora_core.models import SynthesisLayer, SynthesisNetwork, SynthesisTail, ToOutput
from agora_core.models import stylegan2_inference

SMALL = dict(channel_base=256, channel_max=32)


def _randomise(module: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Non-zero noise strengths and biases, so every term of the layer is exercised."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if name.endswith(("strength", "bias")):
                p.copy_(0.5 * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return module


def _both(fn):
    """fn() under torch.no_grad (reference path) and under torch.inference_mode (inference path)."""
    with torch.no_grad():
        ref = fn()
    with torch.inference_mode():
        fast = fn()
    return ref, fast


@pytest.mark.parametrize("up", [1, 2])
@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("noise_mode", ["const", "none", "random"])
@pytest.mark.parametrize("cond_channels", [0, 3])
def test_synthesis_layer_matches_reference(up, batch, noise_mode, cond_channels):
    torch.manual_seed(0)
    layer = _randomise(SynthesisLayer(6, 5, 12, resolution=8 if up == 2 else 4, up=up,
                                      cond_channels=cond_channels, conv_clamp=2.0 if up == 1 else None)).double()
    x, style = torch.randn(batch, 6, 4, 4, dtype=torch.float64), torch.randn(batch, 12, dtype=torch.float64)
    cond = torch.randn(batch, 3, 16, 16, dtype=torch.float64) if cond_channels else None

    def run():
        torch.manual_seed(7)  # the same random noise for both paths
        return layer(x, style, cond, noise_mode)

    ref, fast = _both(run)
    assert fast.shape == ref.shape == (batch, 5, 4 * up, 4 * up)
    assert fast.is_contiguous(memory_format=torch.channels_last) and not ref.is_inference()
    mag = 10 * ref.abs().max() + 10  # |x·w'| summed over Cin·k² ≤ 54 products of O(1) terms, plus noise and bias
    assert_within(fast, ref, rounding_tol(torch.float64, mag, steps=6 * 9 * 4 + 8), "synthesis layer")


@pytest.mark.parametrize("batch", [1, 2])
def test_to_output_matches_reference(batch):
    layer = _randomise(ToOutput(16, 9, 12, conv_clamp=1.0)).double()
    x, style = torch.randn(batch, 16, 5, 7, dtype=torch.float64), torch.randn(batch, 12, dtype=torch.float64)
    ref, fast = _both(lambda: layer(x, style))
    assert_within(fast, ref, rounding_tol(torch.float64, 16 * (x.abs().max() + 1) * 3, steps=20), "ToOutput")


def test_networks_match_reference_in_float32():
    """Identity branch with its tap and shape condition, then the deformation tail: chained layers."""
    torch.manual_seed(1)
    net = _randomise(SynthesisNetwork(24, 32, 6, cond_channels=3, tap_resolution=8, **SMALL))
    tail = _randomise(SynthesisTail(8, 32, 32, 24 + 7, 6, **SMALL), seed=1)
    ws, cond = torch.randn(2, net.num_ws, 24), torch.randn(2, 3, 32, 32)
    styles = torch.randn(2, tail.num_ws, 31)

    def run():
        tap = net.forward_with_tap(ws, cond, noise_mode="const")
        return tap.image, tail(tap.features, tap.skip_image, styles, noise_mode="const")

    (ref_img, ref_tail), (img, out) = _both(run)
    # 4 blocks of 3 layers, each ≤ 32·9 products and a few gains: O(10³) roundings of values ≤ 10·max|out|
    assert_within(img, ref_img, rounding_tol(torch.float32, 10 * ref_img.abs().max(), steps=2000), "identity")
    assert_within(out, ref_tail, rounding_tol(torch.float32, 10 * ref_tail.abs().max(), steps=4000), "tail")


def test_autograd_and_no_grad_never_take_the_inference_path(monkeypatch):
    """Training, PTI and no_grad callers run the reference layers (training is unchanged)."""
    def boom(*args, **kwargs):
        raise AssertionError("inference path taken outside torch.inference_mode")

    import agora_core.models.stylegan2_synthesis as synthesis

    monkeypatch.setattr(synthesis, "synthesis_layer_inference", boom)
    monkeypatch.setattr(synthesis, "to_output_inference", boom)
    net = SynthesisNetwork(24, 16, 6, tap_resolution=8, **SMALL)
    ws = torch.randn(2, net.num_ws, 24, requires_grad=True)
    net(ws).sum().backward()
    with torch.no_grad():
        net(ws)
    assert stylegan2_inference.use_inference_path(ws) is False


@pytest.mark.parametrize("layout", ["paper", "authors"])
def test_generator_animate_in_inference_mode_matches(layout):
    """`AgoraGenerator.animate` inside torch.inference_mode (float32, and bfloat16 convolutions) vs the
    reference path: the Gaussians a render would see."""
    from sphere_head import sphere_head_assets

    from agora_core.head import HeadModel
    from agora_core.models import AgoraGenerator, GeneratorConfig

    config = GeneratorConfig(z_dim=16, w_dim=16, uv_resolution=16, gaussian_grid=16, tap_resolution=8,
                             channel_base=256, channel_max=16, expr_cond_dim=6, expr_embed_dim=8,
                             attribute_layout=layout, shape_conditioning="spatial" if layout == "paper" else "none")
    torch.manual_seed(0)
    g = _randomise(AgoraGenerator(config, HeadModel(sphere_head_assets()))).eval()
    if g.deformation_branch.position_head is not None:
        torch.nn.init.normal_(g.deformation_branch.position_head.weight, std=0.3)
    with torch.no_grad():
        cache = g.identity(torch.randn(2, 16), torch.zeros(2, 25), 0.5 * torch.randn(2, 4), noise_mode="const")
    frames = FlameParams(expression=torch.randn(2, 8), jaw=0.1 * torch.randn(2, 3), eyelids=torch.rand(2, 2))
    with torch.no_grad():
        ref = g.animate(cache, frames, noise_mode="const").gaussians
    with torch.inference_mode():
        fast = g.animate(cache, frames, noise_mode="const").gaussians
        half = g.animate(cache, frames, noise_mode="const", deform_dtype=torch.bfloat16).gaussians
    for name in ("means", "log_scales", "quats", "opacities"):
        a, b, c = getattr(ref, name), getattr(fast, name), getattr(half, name)
        assert c.dtype == a.dtype
        # positions/scales pass through bounded activations (|derivative| ≤ 1·their bound): the planes' error
        # (two 3-layer blocks of ≤ 16·9 products each) carries over at most scaled by the bounds (≤ 1 here)
        assert_within(b, a, rounding_tol(torch.float32, 10 * (a.abs().max() + 1), steps=1000), name)
        # bfloat16 (8-bit mantissa) residual planes: ~2⁻⁸ relative error of values of size ≤ the layers' outputs
        assert (c - a).abs().max() < 0.05 * (a.abs().max() + 1), name
    with pytest.raises(AssertionError, match="inference only"):
        with torch.no_grad():
            g.animate(cache, frames, noise_mode="const", deform_dtype=torch.bfloat16)
