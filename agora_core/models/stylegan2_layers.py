"""StyleGAN2 building blocks in plain PyTorch: equalised-LR layers and the modulated convolution.

References: Karras et al., "Analyzing and Improving the Image Quality of StyleGAN" (StyleGAN2,
2020): equalised learning rate (ProGAN sec. 4.1), weight (de)modulation (StyleGAN2 eqs. 1–3),
noise inputs, minibatch standard deviation (ProGAN sec. 3). AGORA (paper sec. 3.3) adds spatial
shape conditioning: a UV displacement map concatenated to the input of every modulated conv.

`modulated_conv2d` is the fast path ("modulate the input, shared weight, demodulate the output"):
it batches like an ordinary conv and exports to ONNX with a dynamic batch. Its slow twin
`modulated_conv2d_reference` builds one weight per sample and runs a grouped conv (groups=B),
the formulation written in the StyleGAN2 paper; tests compare values and gradients.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from agora_core.models.fir_resample import blur2d, downsample2d

Activation = Literal["linear", "lrelu"]
NoiseMode = Literal["random", "const", "none"]

LRELU_SLOPE = 0.2
LRELU_GAIN = math.sqrt(2.0)  # keeps the second moment of a unit-variance signal through lrelu
DEMOD_EPS = 1e-8
COND_VAR_EPS = 1e-16  # ε of sqrt(var + ε) in the shape-condition normalisation (see below)


def count_parameters(module: nn.Module) -> int:
    """Number of scalar parameters (trainable or not) of `module`; buffers are not counted."""
    return sum(p.numel() for p in module.parameters())


def bias_act(x: Tensor, bias: Tensor | None, activation: Activation, clamp: float | None = None) -> Tensor:
    """x + bias (broadcast over dim 1), then linear or lrelu(0.2)·sqrt(2), then optional clamp.

    Args:
        x: [B, C, ...].
        bias: [C] or None.
        activation: "linear" (gain 1) or "lrelu" (slope 0.2, gain sqrt 2).
        clamp: clamp the output to [-clamp, clamp] (StyleGAN2's conv_clamp), or None.
    Returns:
        same shape as x.
    """
    if bias is not None:
        assert bias.shape == (x.shape[1],), (bias.shape, x.shape)
        x = x + bias.reshape(1, -1, *([1] * (x.ndim - 2)))
    if activation == "lrelu":
        x = F.leaky_relu(x, LRELU_SLOPE) * LRELU_GAIN
    else:
        assert activation == "linear", activation
    if clamp is not None:
        x = x.clamp(-clamp, clamp)
    return x


class EqualLinear(nn.Module):
    """Fully connected layer with equalised learning rate (ProGAN sec. 4.1).

    The stored weight is N(0, 1)/lr_mul and is scaled at run time by lr_mul/sqrt(in_features), so
    Adam's per-parameter step acts on every layer alike; lr_mul < 1 slows a layer (mapping net).
    The bias is stored as bias_init/lr_mul and scaled by lr_mul, so the *effective* initial bias is
    exactly `bias_init` (StyleGAN2-ADA would give bias_init·lr_mul; only matters when both ≠ 0/1).
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, bias_init: float = 0.0,
                 lr_mul: float = 1.0, activation: Activation | None = None):
        super().__init__()
        assert in_features > 0 and out_features > 0, (in_features, out_features)
        self.in_features, self.out_features = in_features, out_features
        self.activation: Activation = activation or "linear"
        self.lr_mul = lr_mul
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / lr_mul)
        self.bias = nn.Parameter(torch.full((out_features,), bias_init / lr_mul)) if bias else None
        self.weight_gain = lr_mul / math.sqrt(in_features)

    def forward(self, x: Tensor) -> Tensor:
        """x [B, in_features] -> [B, out_features]."""
        assert x.ndim == 2 and x.shape[1] == self.in_features, (x.shape, self.in_features)
        bias = self.bias * self.lr_mul if self.bias is not None else None
        y = F.linear(x, self.weight * self.weight_gain)
        return bias_act(y, bias, self.activation)

    def extra_repr(self) -> str:
        return f"{self.in_features}, {self.out_features}, lr_mul={self.lr_mul}, act={self.activation}"


class EqualConv2d(nn.Module):
    """Conv2d with equalised learning rate, optional FIR-blurred stride-2 downsampling.

    down=2 follows StyleGAN2: blur with the [1,3,3,1] filter (padding (k+1)//2), then a stride-2
    conv without padding, giving exactly [H//2, W//2]. Used by the discriminator.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, bias: bool = True,
                 activation: Activation | None = None, down: int = 1, lr_mul: float = 1.0,
                 conv_clamp: float | None = None):
        super().__init__()
        assert kernel_size % 2 == 1 and down in (1, 2), (kernel_size, down)
        self.in_channels, self.out_channels, self.kernel_size = in_channels, out_channels, kernel_size
        self.activation: Activation = activation or "linear"
        self.down, self.lr_mul, self.conv_clamp = down, lr_mul, conv_clamp
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size) / lr_mul)
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.weight_gain = lr_mul / math.sqrt(in_channels * kernel_size * kernel_size)

    def forward(self, x: Tensor) -> Tensor:
        """x [B, Cin, H, W] -> [B, Cout, H, W] (down=1) or [B, Cout, H//2, W//2] (down=2)."""
        assert x.ndim == 4 and x.shape[1] == self.in_channels, (x.shape, self.in_channels)
        w = self.weight * self.weight_gain
        k = self.kernel_size
        if self.down == 1:
            y = F.conv2d(x, w, padding=k // 2)
        elif k == 1:
            y = F.conv2d(downsample2d(x), w)  # same maths as blur + strided 1×1, cheaper
        else:
            y = F.conv2d(blur2d(x, padding=(k + 1) // 2), w, stride=2)
        bias = self.bias * self.lr_mul if self.bias is not None else None
        return bias_act(y, bias, self.activation, self.conv_clamp)

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, k={self.kernel_size}, down={self.down}, act={self.activation}"


# ---------------------------------------------------------------------------------------------
# Modulated convolution (StyleGAN2 eqs. 1–3)
# ---------------------------------------------------------------------------------------------

def demodulation_coefficients(weight: Tensor, styles: Tensor) -> Tensor:
    """StyleGAN2 eq. 3: d[b,o] = 1 / sqrt(Σ_{i,kh,kw} (w[o,i,kh,kw] · s[b,i])² + 1e-8).

    Args:
        weight: [Cout, Cin, k, k].
        styles: [B, Cin].
    Returns:
        [B, Cout].
    """
    w_sq = weight.square().sum(dim=(2, 3))  # [Cout, Cin]
    return torch.rsqrt(styles.square() @ w_sq.t() + DEMOD_EPS)


def _check_modconv_args(x: Tensor, weight: Tensor, styles: Tensor, up: int, padding: int | None) -> int:
    """Shared shape checks; returns the padding of the up=1 conv ('same' by default)."""
    assert x.ndim == 4 and weight.ndim == 4 and styles.ndim == 2, (x.shape, weight.shape, styles.shape)
    assert weight.shape[1] == x.shape[1] and styles.shape == (x.shape[0], x.shape[1]), (
        x.shape, weight.shape, styles.shape)
    k = weight.shape[-1]
    assert weight.shape[-2] == k and k % 2 == 1, weight.shape
    assert up in (1, 2), up
    if up == 2:
        assert k <= 5 and padding in (None, k // 2), "up=2: k ≤ 5 and 'same' padding (output 2H×2W)"
    return k // 2 if padding is None else padding


def _upsample_conv(x: Tensor, weight_t: Tensor, groups: int) -> Tensor:
    """Stride-2 transposed conv, then [1,3,3,1] blur with gain 4: [.., H, W] -> [.., 2H, 2W].

    The transposed conv gives 2H + k − 2 rows; blurring with padding (5 − k)/2 returns 2H (k ≤ 5).
    """
    k = weight_t.shape[-1]
    y = F.conv_transpose2d(x, weight_t, stride=2, groups=groups)
    return blur2d(y, padding=(5 - k) // 2, gain=4.0)


def modulated_conv2d(x: Tensor, weight: Tensor, styles: Tensor, demodulate: bool = True, up: int = 1,
                     padding: int | None = None) -> Tensor:
    """Modulated conv, fast path: modulate the input, shared weight, demodulate the output.

    conv(x, w ⊙ s) = conv(x ⊙ s, w) because modulation scales input channels, and demodulation
    scales output channels, which commutes with the (linear, per-channel) upsampling blur.

    Args:
        x: [B, Cin, H, W].
        weight: [Cout, Cin, k, k] (k odd; already multiplied by any equalised-LR gain).
        styles: [B, Cin] per-sample input-channel scales.
        demodulate: apply StyleGAN2 eq. 3.
        up: 1, or 2 for transposed stride-2 conv + FIR blur.
        padding: up=1 zero padding (default k//2, 'same').
    Returns:
        [B, Cout, H, W] (up=1, same padding) or [B, Cout, 2H, 2W] (up=2).
    """
    pad = _check_modconv_args(x, weight, styles, up, padding)
    x = x * styles[:, :, None, None]
    if up == 1:
        y = F.conv2d(x, weight, padding=pad)
    else:
        y = _upsample_conv(x, weight.transpose(0, 1), groups=1)
    if demodulate:
        y = y * demodulation_coefficients(weight, styles)[:, :, None, None]
    return y


def modulated_conv2d_reference(x: Tensor, weight: Tensor, styles: Tensor, demodulate: bool = True,
                               up: int = 1, padding: int | None = None) -> Tensor:
    """Slow twin of `modulated_conv2d`: per-sample weights w'[b] = w ⊙ s[b] (· d[b]), grouped conv.

    This is StyleGAN2 eqs. 1–3 as written; a grouped conv with groups=B only exports to ONNX with a
    fixed batch (the exporter bakes B into the group count), which is why it is not the default. Same arguments and shapes.
    """
    pad = _check_modconv_args(x, weight, styles, up, padding)
    b, cin, h, w = x.shape
    cout, k = weight.shape[0], weight.shape[-1]
    wb = weight[None] * styles[:, None, :, None, None]  # [B, Cout, Cin, k, k]
    if demodulate:
        wb = wb * torch.rsqrt(wb.square().sum(dim=(2, 3, 4), keepdim=True) + DEMOD_EPS)
    wg = wb.reshape(b * cout, cin, k, k)
    if up == 1:
        y = F.conv2d(x.reshape(1, b * cin, h, w), wg, padding=pad, groups=b)
    else:
        # Transposed stride-2 conv spelled out: zero insertion, then a full conv with the flipped kernel.
        z = x.new_zeros(b, cin, 2 * h - 1, 2 * w - 1)
        z[:, :, ::2, ::2] = x
        y = F.conv2d(z.reshape(1, b * cin, 2 * h - 1, 2 * w - 1), wg.flip(-2, -1), padding=k - 1, groups=b)
        y = blur2d(y, padding=(5 - k) // 2, gain=4.0)
    return y.reshape(b, cout, *y.shape[2:])


def normalize_shape_condition(cond: Tensor, size: tuple[int, int], var_eps: float = COND_VAR_EPS) -> Tensor:
    """AGORA sec. 3.3: resize the UV shape-displacement map and give it unit per-sample std.

    Bilinear resize (align_corners=False) to `size`, then divide by the per-sample standard
    deviation over (C, H, W) computed about the mean (the mean itself is *not* subtracted).
    sqrt(var + ε) is used instead of std + ε: for the default ε = 1e-16 it equals std to float
    precision for any non-degenerate map, and an all-zero map (neutral shape β0) gives zeros with
    finite gradients instead of 0/0. The authors' code uses ε = 1e-8 (a relative change of ~1e-4
    for maps in metres, which their released model was trained with).

    Args:
        cond: [B, Cc, h, w] displacement map (any scale).
        size: (H, W) of the layer input.
    Returns:
        [B, Cc, H, W], invariant to multiplying `cond` by a positive scalar.
    """
    assert cond.ndim == 4, cond.shape
    if tuple(cond.shape[-2:]) != tuple(size):
        cond = F.interpolate(cond, size=size, mode="bilinear", align_corners=False)
    var = cond.var(dim=(1, 2, 3), keepdim=True, correction=0)
    return cond / torch.sqrt(var + var_eps)


class ModulatedConv(nn.Module):
    """Modulated k×k conv with its own style affine; optional AGORA spatial shape conditioning.

    affine: EqualLinear(style_dim -> in_ch + cond_channels, bias_init=1), so styles start near 1.
    With cond_channels > 0 the condition map is resized and std-normalised
    (`normalize_shape_condition`) and concatenated to x *before* modulation (paper sec. 3.3).
    No bias or activation here: see `SynthesisLayer`.
    """

    def __init__(self, in_channels: int, out_channels: int, style_dim: int, kernel_size: int = 3,
                 up: int = 1, demodulate: bool = True, cond_channels: int = 0, cond_var_eps: float = COND_VAR_EPS):
        super().__init__()
        assert up in (1, 2) and cond_channels >= 0, (up, cond_channels)
        self.cond_var_eps = cond_var_eps
        self.in_channels, self.out_channels, self.style_dim = in_channels, out_channels, style_dim
        self.cond_channels, self.up, self.demodulate = cond_channels, up, demodulate
        total_in = in_channels + cond_channels
        self.affine = EqualLinear(style_dim, total_in, bias_init=1.0)
        self.weight = nn.Parameter(torch.randn(out_channels, total_in, kernel_size, kernel_size))
        # Demodulation makes the weight's scale irrelevant; without it this gain is equalised LR.
        self.weight_gain = 1.0 / math.sqrt(total_in * kernel_size * kernel_size)

    def forward(self, x: Tensor, style: Tensor, cond: Tensor | None = None) -> Tensor:
        """x [B, Cin, H, W], style [B, style_dim], cond [B, Cc, h, w] -> [B, Cout, up·H, up·W]."""
        assert x.ndim == 4 and x.shape[1] == self.in_channels, (x.shape, self.in_channels)
        assert style.shape == (x.shape[0], self.style_dim), (style.shape, x.shape, self.style_dim)
        if self.cond_channels > 0:
            assert cond is not None, "this layer was built with cond_channels > 0: pass cond"
            assert cond.shape[:2] == (x.shape[0], self.cond_channels), (cond.shape, x.shape)
            x = torch.cat([x, normalize_shape_condition(cond, tuple(x.shape[-2:]), self.cond_var_eps)], dim=1)
        else:
            assert cond is None, "cond given to a layer built with cond_channels=0"
        styles = self.affine(style)
        if not self.demodulate:
            styles = styles * self.weight_gain
        return modulated_conv2d(x, self.weight, styles, demodulate=self.demodulate, up=self.up)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}(+{self.cond_channels}) -> {self.out_channels}, "
                f"k={self.weight.shape[-1]}, up={self.up}, demod={self.demodulate}")


class NoiseInjection(nn.Module):
    """Per-pixel noise times a learned per-layer strength (init 0), StyleGAN2 sec. 2.

    noise_mode: "random" (fresh N(0,1) per call), "const" (the layer's fixed buffer, for
    reproducible renders and ONNX), "none" (no noise).
    """

    def __init__(self, resolution: int):
        super().__init__()
        self.resolution = resolution
        self.strength = nn.Parameter(torch.zeros([]))
        self.register_buffer("noise_const", torch.randn(resolution, resolution))

    def forward(self, x: Tensor, noise_mode: NoiseMode = "random") -> Tensor:
        """x [B, C, R, R] -> same shape."""
        assert x.ndim == 4 and x.shape[-2:] == (self.resolution, self.resolution), (x.shape, self.resolution)
        if noise_mode == "none":
            return x
        if noise_mode == "random":
            noise = torch.randn(x.shape[0], 1, x.shape[2], x.shape[3], device=x.device, dtype=x.dtype)
        else:
            assert noise_mode == "const", noise_mode
            noise = self.noise_const.to(x.dtype)
        return x + noise * self.strength


class ToOutput(nn.Module):
    """StyleGAN2's ToRGB, generalised: modulated 1×1 conv, no demodulation, + bias, linear.

    Produces RGB for images or the Gaussian attribute channels of a UV map. Takes no shape
    condition (AGORA conditions conv0/conv1 only).
    """

    def __init__(self, in_channels: int, out_channels: int, style_dim: int, conv_clamp: float | None = None):
        super().__init__()
        self.conv = ModulatedConv(in_channels, out_channels, style_dim, kernel_size=1, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.conv_clamp = conv_clamp

    def forward(self, x: Tensor, style: Tensor) -> Tensor:
        """x [B, Cin, H, W], style [B, style_dim] -> [B, out_channels, H, W]."""
        return bias_act(self.conv(x, style), self.bias, "linear", self.conv_clamp)


def minibatch_std(x: Tensor, group_size: int = 4, num_channels: int = 1) -> Tensor:
    """Minibatch standard deviation (ProGAN sec. 3, StyleGAN2 layout), appended as channels.

    Samples b and b + B/G·j (j = 0..G−1) form a group. The group size is the largest G ≤
    `group_size` that divides B (StyleGAN2 would use min(group_size, B) and fail otherwise), so any
    batch works: B=3 gives G=3, B=6 gives G=3, a prime B > group_size gives G=1 (zero stddev).
    Features are split into `num_channels` chunks; each chunk's std over the group, averaged over
    (chunk features, H, W), becomes one constant channel.

    Args:
        x: [B, C, H, W], C divisible by num_channels.
    Returns:
        [B, C + num_channels, H, W].
    """
    assert x.ndim == 4 and x.shape[1] % num_channels == 0, (x.shape, num_channels)
    b, c, h, w = x.shape
    g = max(d for d in range(1, min(group_size, b) + 1) if b % d == 0)
    y = x.reshape(g, b // g, num_channels, c // num_channels, h, w)
    y = y - y.mean(dim=0)
    y = torch.sqrt(y.square().mean(dim=0) + 1e-8)  # [B/G, F, c/F, H, W]
    y = y.mean(dim=(2, 3, 4))  # [B/G, F]
    y = y.reshape(b // g, num_channels, 1, 1).repeat(g, 1, h, w)  # row b gets group b mod B/G
    return torch.cat([x, y], dim=1)
