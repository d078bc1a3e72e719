"""Resampling by 2 with StyleGAN2's [1, 3, 3, 1] FIR low-pass filter, pure torch.

StyleGAN2 (Karras et al. 2020, sec. 2 / appendix) blurs every up- and down-sampling with the
separable binomial filter [1, 3, 3, 1] to suppress aliasing. Here the fast paths are depthwise
(``groups=C``) convolutions, so they run anywhere torch runs and export to ONNX with a dynamic
batch; the ``*_reference`` twins spell the same maths out as explicit zero insertion and a sum
of shifted slices, with no convolution at all, for the tests.

Conventions (fast path and reference agree for even and odd sizes):
- ``upsample2d``:   [B,C,H,W] -> [B,C,2H,2W]; zero insertion, pad (2, 1), filter × 4 (gain up²).
- ``downsample2d``: [B,C,H,W] -> [B,C,H//2,W//2]; pad (1, 1), filter, keep every 2nd.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

FIR_TAPS = (1.0, 3.0, 3.0, 1.0)


def fir_kernel2d(like: Tensor) -> Tensor:
    """The separable 2D filter outer(f, f) / sum, f = [1, 3, 3, 1]; sums to 1.

    Args:
        like: any tensor; the kernel takes its dtype and device.
    Returns:
        [4, 4] kernel.
    """
    f = torch.tensor(FIR_TAPS, dtype=like.dtype, device=like.device)
    k = f[:, None] * f[None, :]
    return k / k.sum()


def _depthwise(kernel: Tensor, channels: int) -> Tensor:
    """[kh, kw] -> [C, 1, kh, kw] weight for a depthwise conv (groups=C).

    `int()` makes the channel count a constant when traced for ONNX export: a traced (symbolic)
    count would leave the kernel's shape unknown, which the exporter refuses.
    """
    return kernel[None, None].expand(int(channels), 1, *kernel.shape)


def blur2d(x: Tensor, padding: int, gain: float = 1.0, bias: Tensor | None = None) -> Tensor:
    """Filter every channel with the FIR kernel (no resampling), symmetric zero padding.

    Args:
        x: [B, C, H, W].
        padding: zeros added on each side.
        gain: output multiplier (4 after a stride-2 transposed conv keeps the signal's mean).
        bias: [C] added to the filtered output (by the convolution itself), or None.
    Returns:
        [B, C, H + 2·padding − 3, W + 2·padding − 3].
    """
    assert x.ndim == 4, x.shape
    weight = _depthwise(fir_kernel2d(x) * gain, x.shape[1])
    return F.conv2d(x, weight, bias, padding=padding, groups=x.shape[1])


def upsample2d(x: Tensor) -> Tensor:
    """Upsample by 2: zero insertion + FIR low-pass (gain 4), as one depthwise transposed conv.

    Args:
        x: [B, C, H, W].
    Returns:
        [B, C, 2H, 2W]; a constant image stays constant away from the border.
    """
    assert x.ndim == 4, x.shape
    weight = _depthwise(fir_kernel2d(x) * 4.0, x.shape[1])
    # A transposed conv (stride 2, padding 1) is zero insertion + pad (2, 1) + correlation with the
    # flipped kernel; the kernel is symmetric, so this is exactly the reference below.
    return F.conv_transpose2d(x, weight, stride=2, padding=1, groups=x.shape[1])


def downsample2d(x: Tensor) -> Tensor:
    """Downsample by 2: FIR low-pass then keep every second sample, as one strided depthwise conv.

    Args:
        x: [B, C, H, W].
    Returns:
        [B, C, H // 2, W // 2].
    """
    assert x.ndim == 4, x.shape
    weight = _depthwise(fir_kernel2d(x), x.shape[1])
    return F.conv2d(x, weight, stride=2, padding=1, groups=x.shape[1])


def _filter_by_slices(padded: Tensor, kernel: Tensor, out_h: int, out_w: int, step: int) -> Tensor:
    """Σ_{i,j} kernel[i,j] · padded[..., i + step·m, j + step·n]: correlation written as slices."""
    out = padded.new_zeros(*padded.shape[:2], out_h, out_w)
    for i in range(kernel.shape[0]):
        for j in range(kernel.shape[1]):
            rows = padded[:, :, i : i + step * (out_h - 1) + 1 : step]
            out = out + kernel[i, j] * rows[:, :, :, j : j + step * (out_w - 1) + 1 : step]
    return out


def upsample2d_reference(x: Tensor) -> Tensor:
    """Slow twin of `upsample2d`: explicit zero insertion, pad (2, 1), 16 shifted slices."""
    b, c, h, w = x.shape
    zeros = x.new_zeros(b, c, 2 * h, 2 * w)
    zeros[:, :, ::2, ::2] = x
    padded = F.pad(zeros, (2, 1, 2, 1))
    return _filter_by_slices(padded, fir_kernel2d(x) * 4.0, 2 * h, 2 * w, step=1)


def downsample2d_reference(x: Tensor) -> Tensor:
    """Slow twin of `downsample2d`: pad (1, 1), 16 shifted slices taken with stride 2."""
    b, c, h, w = x.shape
    padded = F.pad(x, (1, 1, 1, 1))
    return _filter_by_slices(padded, fir_kernel2d(x), h // 2, w // 2, step=2)
