"""Inference-only formulation of the synthesis layers, used inside `torch.inference_mode()`.

Same maths as `SynthesisLayer` / `ToOutput` (stylegan2_synthesis.py, stylegan2_layers.py), which stay
the reference and the only path autograd sees: training, PTI and anything under `torch.no_grad()`
run them unchanged. Reordered for a CPU (tests/test_models_stylegan2_inference.py compares the two):

- Modulation, demodulation (StyleGAN2 eqs. 1-3) and lrelu's gain √2 folded into one weight per
  sample, w'[b] = w ⊙ s[b] · d[b] · √2: Cout·Cin·k² products instead of three passes over the
  activations (lrelu(√2·y) = √2·lrelu(y) because √2 > 0; the bias is scaled by √2 too).
- The bias added by the convolution as it writes its output (the blur's, after an up-sampling conv,
  where the bias comes after the blur), the noise as one in-place add, the lrelu in place: two
  passes over a layer's output instead of six.
- Activations in channels-last memory, where oneDNN's 3×3 and depthwise (blur) kernels are faster
  on a CPU (measured: benchmarks/cpu_full_size.py).
- ToOutput's modulated 1×1 conv as one matrix product over the pixels.

A batch runs row by row (one weight per sample, the grouped conv of `modulated_conv2d_reference`
without the group bookkeeping). Results differ from the reference by float32 rounding only.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from agora_core.models.fir_resample import blur2d
from agora_core.models.stylegan2_layers import (
    LRELU_GAIN,
    LRELU_SLOPE,
    NoiseMode,
    demodulation_coefficients,
    normalize_shape_condition,
)

CHANNELS_LAST = torch.channels_last


def use_inference_path(x: Tensor) -> bool:
    """The fast path is taken inside `torch.inference_mode()` only, on float32, float64 or bfloat16 activations."""
    return torch.is_inference_mode_enabled() and x.dtype in (torch.float32, torch.float64, torch.bfloat16)


def _with_condition(conv, x: Tensor, cond: Tensor | None) -> Tensor:
    """x with the normalised shape condition appended (AGORA sec. 3.3), as `ModulatedConv` does."""
    if conv.cond_channels == 0:
        assert cond is None, "cond given to a layer built with cond_channels=0"
        return x
    assert cond is not None and cond.shape[:2] == (x.shape[0], conv.cond_channels), "pass cond of this layer"
    return torch.cat([x, normalize_shape_condition(cond, tuple(x.shape[-2:]), conv.cond_var_eps).to(x.dtype)], dim=1)


def _noise(layer, b: int, size: tuple[int, int], like: Tensor, noise_mode: NoiseMode) -> Tensor | None:
    """The layer's noise [b | 1, 1, H, W] times strength·√2, or None (no noise)."""
    if layer.noise is None or noise_mode == "none":
        return None
    if noise_mode == "random":
        noise = torch.randn(b, 1, *size, device=like.device, dtype=like.dtype)
    else:
        assert noise_mode == "const", noise_mode
        noise = layer.noise.noise_const.to(like.dtype)[None, None]
    return noise * (layer.noise.strength.to(like.dtype) * LRELU_GAIN)


def synthesis_layer_inference(layer, x: Tensor, style: Tensor, cond: Tensor | None, noise_mode: NoiseMode) -> Tensor:
    """`SynthesisLayer.forward` (modulated conv → noise → bias + lrelu·√2 → clamp), folded (module doc).

    Args:
        layer: a `SynthesisLayer`; x [B, Cin, H, W]; style [B, style_dim]; cond [B, Cc, h, w] | None.
    Returns:
        [B, Cout, up·H, up·W], channels-last memory.
    """
    conv = layer.conv
    assert x.ndim == 4 and x.shape[1] == conv.in_channels, (x.shape, conv.in_channels)
    assert style.shape == (x.shape[0], conv.style_dim), (style.shape, conv.style_dim)
    assert conv.demodulate, "synthesis layers demodulate"
    x = _with_condition(conv, x, cond)
    dtype = x.dtype
    styles = conv.affine(style.to(conv.affine.weight.dtype))  # [B, Cin]
    gains = demodulation_coefficients(conv.weight, styles) * LRELU_GAIN  # [B, Cout]
    bias = (layer.bias * LRELU_GAIN).to(dtype)
    k = conv.weight.shape[-1]
    rows = []
    for i in range(x.shape[0]):
        w = (conv.weight * styles[i][None, :, None, None] * gains[i][:, None, None, None]).to(dtype)
        xi = x[i:i + 1].contiguous(memory_format=CHANNELS_LAST)
        if conv.up == 1:
            rows.append(F.conv2d(xi, w.contiguous(memory_format=CHANNELS_LAST), bias, padding=k // 2))
        else:
            y = F.conv_transpose2d(xi, w.transpose(0, 1), stride=2)
            rows.append(blur2d(y.contiguous(memory_format=CHANNELS_LAST), (5 - k) // 2, gain=4.0, bias=bias))
    y = rows[0] if len(rows) == 1 else torch.cat(rows, dim=0)
    noise = _noise(layer, y.shape[0], tuple(y.shape[-2:]), y, noise_mode)
    if noise is not None:
        y.add_(noise)
    y = F.leaky_relu_(y, LRELU_SLOPE)
    if layer.conv_clamp is not None:
        y = y.clamp_(-layer.conv_clamp, layer.conv_clamp)
    return y


def to_output_inference(to_output, x: Tensor, style: Tensor) -> Tensor:
    """`ToOutput.forward` (modulated 1×1 conv, no demodulation, + bias → clamp) as a matrix product
    over the pixels: x [B, Cin, H, W], style [B, style_dim] -> [B, Cout, H, W] (channels-last memory)."""
    conv = to_output.conv
    assert x.ndim == 4 and x.shape[1] == conv.in_channels and conv.cond_channels == 0, (x.shape, conv.in_channels)
    assert style.shape == (x.shape[0], conv.style_dim), (style.shape, conv.style_dim)
    styles = conv.affine(style.to(conv.affine.weight.dtype)) * conv.weight_gain  # [B, Cin]
    weight = conv.weight[:, :, 0, 0]  # [Cout, Cin]
    pixels = x.contiguous(memory_format=CHANNELS_LAST).permute(0, 2, 3, 1)  # [B, H, W, Cin], contiguous view
    rows = []
    for i in range(x.shape[0]):
        w = (weight * styles[i][None, :]).to(x.dtype)
        rows.append(torch.addmm(to_output.bias.to(x.dtype), pixels[i].reshape(-1, x.shape[1]), w.t()))
    y = torch.stack(rows).reshape(x.shape[0], x.shape[2], x.shape[3], -1).permute(0, 3, 1, 2)
    if to_output.conv_clamp is not None:
        y = y.clamp(-to_output.conv_clamp, to_output.conv_clamp)
    return y
