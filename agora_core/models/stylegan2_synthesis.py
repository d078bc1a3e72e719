"""StyleGAN2 "skip" synthesis network, as used by AGORA's identity and deformation branches.

Block at resolution r (StyleGAN2 fig. 7b, "skip" generator): conv0 (modulated 3×3, upsample ×2;
the first block starts from a learned 4×4 constant instead) → conv1 (modulated 3×3) → ToOutput
(modulated 1×1), whose output is added to the ×2-upsampled skip image of the previous block.
Every modulated conv (not ToOutput) may take AGORA's spatial shape condition (paper sec. 3.3).

- `SynthesisNetwork`: 4² → R² (AGORA identity branch: 4² → 256² UV attribute planes), optionally
  also returning its features and skip image at a tap resolution (64² in AGORA, not detached:
  the deformation branch starts there, paper sec. 3.4 / appendix 0.B.1.2).
- `SynthesisTail`: only the blocks 2·r0 … R, started from a given (x, img) — the deformation
  branch is SynthesisTail(64 → 256) with style vectors [w, MLP(expression)].

Style-vector bookkeeping follows StyleGAN2: a block with n convs consumes n ws and its ToOutput
shares the next block's first w, so a network has Σ n + 1 ws (14 for 4² → 256², 5 for 64² → 256²).
"""

from __future__ import annotations

from typing import Literal, NamedTuple

import torch
from torch import Tensor, nn

from agora_core.models.fir_resample import upsample2d
from agora_core.models.stylegan2_layers import (
    COND_VAR_EPS,
    ModulatedConv,
    NoiseInjection,
    NoiseMode,
    ToOutput,
    bias_act,
)
from agora_core.models.stylegan2_inference import synthesis_layer_inference, to_output_inference, use_inference_path


def synthesis_channels(resolution: int, channel_base: int, channel_max: int) -> int:
    """StyleGAN2 channel rule: ch(r) = min(channel_base // r, channel_max)."""
    return min(channel_base // resolution, channel_max)


def block_resolutions(first: int, last: int) -> list[int]:
    """[first, 2·first, …, last]; both powers of two."""
    assert first >= 4 and last >= first, (first, last)
    assert first & (first - 1) == 0 and last & (last - 1) == 0, "resolutions must be powers of two"
    res, out = first, []
    while res <= last:
        out.append(res)
        res *= 2
    return out


class SynthesisLayer(nn.Module):
    """Modulated conv → noise → bias + lrelu(0.2)·sqrt 2 (→ optional clamp)."""

    def __init__(self, in_channels: int, out_channels: int, style_dim: int, resolution: int, up: int = 1,
                 use_noise: bool = True, cond_channels: int = 0, conv_clamp: float | None = None,
                 cond_var_eps: float = COND_VAR_EPS):
        super().__init__()
        self.conv = ModulatedConv(in_channels, out_channels, style_dim, kernel_size=3, up=up,
                                  cond_channels=cond_channels, cond_var_eps=cond_var_eps)
        self.noise = NoiseInjection(resolution) if use_noise else None
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.conv_clamp = conv_clamp

    def forward(self, x: Tensor, style: Tensor, cond: Tensor | None = None,
                noise_mode: NoiseMode = "random") -> Tensor:
        """x [B, Cin, H, W], style [B, style_dim] -> [B, Cout, up·H, up·W]."""
        if use_inference_path(x):  # same maths, folded for inference (stylegan2_inference.py)
            return synthesis_layer_inference(self, x, style, cond, noise_mode)
        x = self.conv(x, style, cond)
        if self.noise is not None:
            x = self.noise(x, noise_mode)
        return bias_act(x, self.bias, "lrelu", self.conv_clamp)


class SynthesisBlock(nn.Module):
    """One StyleGAN2 "skip" block at `resolution`.

    Args:
        in_ch: feature channels coming in (ignored when is_first).
        out_ch: feature channels of this block.
        style_dim: size of each style vector (any: w_dim, or w_dim + expression embedding).
        resolution: output resolution.
        out_channels: channels of the skip image (RGB = 3, Gaussian attribute planes = 14/23/…).
        is_first: start from a learned constant [out_ch, 4, 4] (no conv0).
        use_noise: add per-layer noise.
        cond_channels: channels of the spatial shape condition concatenated in conv0/conv1.
        architecture: only "skip" (AGORA's choice).
    """

    def __init__(self, in_ch: int, out_ch: int, style_dim: int, resolution: int, out_channels: int,
                 is_first: bool = False, use_noise: bool = True, cond_channels: int = 0,
                 architecture: Literal["skip"] = "skip", conv_clamp: float | None = None,
                 cond_var_eps: float = COND_VAR_EPS):
        super().__init__()
        assert architecture == "skip", f"only the 'skip' architecture is implemented, got {architecture!r}"
        assert not is_first or resolution == 4, "the constant input block is 4×4"
        self.in_ch, self.out_ch, self.style_dim = in_ch, out_ch, style_dim
        self.resolution, self.out_channels, self.is_first = resolution, out_channels, is_first
        if is_first:
            self.const = nn.Parameter(torch.randn(out_ch, resolution, resolution))
            self.conv0 = None
        else:
            self.conv0 = SynthesisLayer(in_ch, out_ch, style_dim, resolution, up=2, use_noise=use_noise,
                                        cond_channels=cond_channels, conv_clamp=conv_clamp, cond_var_eps=cond_var_eps)
        self.conv1 = SynthesisLayer(out_ch, out_ch, style_dim, resolution, use_noise=use_noise,
                                    cond_channels=cond_channels, conv_clamp=conv_clamp, cond_var_eps=cond_var_eps)
        self.to_output = ToOutput(out_ch, out_channels, style_dim, conv_clamp=conv_clamp)
        self.num_conv = 1 if is_first else 2
        self.num_styles = self.num_conv + 1  # the ToOutput style is shared with the next block

    def forward(self, x: Tensor | None, img: Tensor | None, styles: Tensor, cond: Tensor | None = None,
                noise_mode: NoiseMode = "random") -> tuple[Tensor, Tensor]:
        """One block.

        Args:
            x: [B, in_ch, r/2, r/2] (None when is_first).
            img: [B, out_channels, r/2, r/2] skip image so far, or None (start from zero).
            styles: [B, num_styles, style_dim].
            cond: [B, cond_channels, h, w] shape condition (any h, w), or None.
        Returns:
            x [B, out_ch, r, r], img [B, out_channels, r, r].
        """
        b, r = styles.shape[0], self.resolution
        assert styles.shape == (b, self.num_styles, self.style_dim), (styles.shape, self.num_styles)
        if self.is_first:
            x = self.const[None].repeat(b, 1, 1, 1)
        else:
            assert x is not None and x.shape == (b, self.in_ch, r // 2, r // 2), (None if x is None else x.shape)
            x = self.conv0(x, styles[:, 0], cond, noise_mode)
        x = self.conv1(x, styles[:, self.num_conv - 1], cond, noise_mode)
        y = (to_output_inference(self.to_output, x, styles[:, self.num_conv]) if use_inference_path(x)
             else self.to_output(x, styles[:, self.num_conv]))
        if img is not None:
            assert img.shape == (b, self.out_channels, r // 2, r // 2), (img.shape, self.out_channels, r)
            y = y + upsample2d(img)
        return x, y


def _num_ws(blocks: list[SynthesisBlock]) -> int:
    return sum(block.num_conv for block in blocks) + 1


def _block_styles(ws: Tensor, blocks: list[SynthesisBlock]) -> list[Tensor]:
    """Split ws [B, num_ws, D] into per-block windows [B, num_styles, D] (ToOutput w shared)."""
    assert ws.ndim == 3 and ws.shape[1] == _num_ws(blocks), (ws.shape, _num_ws(blocks))
    out, idx = [], 0
    for block in blocks:
        out.append(ws[:, idx : idx + block.num_styles])
        idx += block.num_conv
    return out


class SynthesisTap(NamedTuple):
    """Output of `SynthesisNetwork.forward_with_tap`."""

    image: Tensor  # [B, out_channels, R, R]
    features: Tensor  # [B, ch(tap), tap, tap] block output at the tap resolution (not detached)
    skip_image: Tensor  # [B, out_channels, tap, tap] accumulated skip image at the tap resolution


class SynthesisNetwork(nn.Module):
    """StyleGAN2 skip synthesis 4² → out_resolution² (AGORA identity branch G, paper eq. 3).

    Args:
        w_dim: style vector size.
        out_resolution: output resolution (power of two ≥ 4).
        out_channels: output channels (UV attribute planes).
        channel_base, channel_max: ch(r) = min(channel_base // r, channel_max).
        cond_channels: spatial shape-condition channels (3 in AGORA; 0 = off).
        use_noise: per-layer noise inputs.
        tap_resolution: resolution whose features `forward_with_tap` returns (64 in AGORA).
        cond_var_eps: ε of the shape condition's normalisation (`normalize_shape_condition`).
    """

    def __init__(self, w_dim: int, out_resolution: int, out_channels: int, channel_base: int = 32768,
                 channel_max: int = 512, cond_channels: int = 0, use_noise: bool = True,
                 tap_resolution: int | None = None, conv_clamp: float | None = None,
                 cond_var_eps: float = COND_VAR_EPS):
        super().__init__()
        resolutions = block_resolutions(4, out_resolution)
        assert tap_resolution is None or tap_resolution in resolutions, (tap_resolution, resolutions)
        self.w_dim, self.out_resolution, self.out_channels = w_dim, out_resolution, out_channels
        self.cond_channels, self.tap_resolution = cond_channels, tap_resolution
        ch = lambda r: synthesis_channels(r, channel_base, channel_max)  # noqa: E731
        self.blocks = nn.ModuleDict({
            f"b{r}": SynthesisBlock(ch(r // 2) if r > 4 else 0, ch(r), w_dim, r, out_channels, is_first=r == 4,
                                    use_noise=use_noise, cond_channels=cond_channels, conv_clamp=conv_clamp,
                                    cond_var_eps=cond_var_eps)
            for r in resolutions
        })

    @property
    def num_ws(self) -> int:
        """Number of style vectors consumed: 2·log2(R) − 2 (14 for 256²)."""
        return _num_ws(list(self.blocks.values()))

    def forward_with_tap(self, ws: Tensor, cond: Tensor | None = None,
                         noise_mode: NoiseMode = "random") -> SynthesisTap:
        """ws [B, num_ws, w_dim], cond [B, cond_channels, h, w] -> image and tap (see SynthesisTap)."""
        assert self.tap_resolution is not None, "built without tap_resolution"
        return self._run(ws, cond, noise_mode)

    def forward(self, ws: Tensor, cond: Tensor | None = None, noise_mode: NoiseMode = "random") -> Tensor:
        """ws [B, num_ws, w_dim], cond [B, cond_channels, h, w] -> [B, out_channels, R, R]."""
        return self._run(ws, cond, noise_mode).image

    def _run(self, ws: Tensor, cond: Tensor | None, noise_mode: NoiseMode) -> SynthesisTap:
        assert ws.ndim == 3 and ws.shape[1:] == (self.num_ws, self.w_dim), (ws.shape, self.num_ws, self.w_dim)
        blocks = list(self.blocks.values())
        x = img = tap_x = tap_img = None
        for block, styles in zip(blocks, _block_styles(ws, blocks)):
            x, img = block(x, img, styles, cond, noise_mode)
            if block.resolution == self.tap_resolution:
                tap_x, tap_img = x, img
        return SynthesisTap(img, tap_x, tap_img)


class SynthesisTail(nn.Module):
    """Synthesis blocks 2·in_resolution … out_resolution, started from given features and skip image.

    AGORA's deformation branch G_d (paper sec. 3.4, appendix 0.B.1.2) is
    SynthesisTail(64, 256, in_channels=512, style_dim=w_dim + expression-embedding dim, …): two
    blocks, 5 style vectors.
    """

    def __init__(self, in_resolution: int, out_resolution: int, in_channels: int, style_dim: int,
                 out_channels: int, channel_base: int = 32768, channel_max: int = 512, use_noise: bool = True,
                 cond_channels: int = 0, conv_clamp: float | None = None):
        super().__init__()
        resolutions = block_resolutions(2 * in_resolution, out_resolution)
        self.in_resolution, self.out_resolution = in_resolution, out_resolution
        self.in_channels, self.style_dim, self.out_channels = in_channels, style_dim, out_channels
        self.cond_channels = cond_channels
        ch = lambda r: synthesis_channels(r, channel_base, channel_max)  # noqa: E731
        self.blocks = nn.ModuleDict({
            f"b{r}": SynthesisBlock(in_channels if r == resolutions[0] else ch(r // 2), ch(r), style_dim, r,
                                    out_channels, use_noise=use_noise, cond_channels=cond_channels,
                                    conv_clamp=conv_clamp)
            for r in resolutions
        })

    @property
    def num_ws(self) -> int:
        """Number of style vectors consumed (5 for 64² → 256²)."""
        return _num_ws(list(self.blocks.values()))

    def forward(self, x: Tensor, img: Tensor | None, styles: Tensor, cond: Tensor | None = None,
                noise_mode: NoiseMode = "random") -> Tensor:
        """Run the tail.

        Args:
            x: [B, in_channels, r0, r0] starting features.
            img: [B, out_channels, r0, r0] starting skip image, or None (start from zero).
            styles: [B, num_ws, style_dim].
            cond: [B, cond_channels, h, w] or None.
        Returns:
            [B, out_channels, R, R].
        """
        r0 = self.in_resolution
        assert x.ndim == 4 and x.shape[1:] == (self.in_channels, r0, r0), (x.shape, self.in_channels, r0)
        assert styles.shape == (x.shape[0], self.num_ws, self.style_dim), (styles.shape, self.num_ws)
        blocks = list(self.blocks.values())
        for block, block_styles in zip(blocks, _block_styles(styles, blocks)):
            x, img = block(x, img, block_styles, cond, noise_mode)
        return img
