"""StyleGAN2 ResNet discriminator with projection conditioning (AGORA dual discrimination).

AGORA (paper sec. 3.6) feeds D the RGB image concatenated with the dual-discrimination cue (a
rendering of the expression-posed mesh), i.e. 6 input channels, and conditions it on the camera
label by projection: logit = <features, cmap(c)> / sqrt(cmap_dim) with cmap from a small mapping
network (StyleGAN2-ADA / EG3D layout). Any power-of-two resolution ≥ 8 works.

Layout (StyleGAN2 fig. 7c, "resnet" D): FromImage 1×1 → blocks R … 8 (each halves the
resolution) → epilogue at 4² (minibatch std, 3×3 conv, fc, output).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from agora_core.models.mapping import MappingNetwork
from agora_core.models.stylegan2_layers import EqualConv2d, EqualLinear, minibatch_std
from agora_core.models.stylegan2_synthesis import block_resolutions, synthesis_channels

RESNET_GAIN = math.sqrt(0.5)  # keeps the variance of (skip + residual) equal to one branch's


class DiscriminatorBlock(nn.Module):
    """ResNet block: x -> (conv3×3 → conv3×3 ↓2) + skip 1×1 ↓2, both scaled by sqrt(1/2).

    Args:
        in_channels: channels at resolution r.
        out_channels: channels at resolution r/2.
    """

    def __init__(self, in_channels: int, out_channels: int, conv_clamp: float | None = None):
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.conv0 = EqualConv2d(in_channels, in_channels, 3, activation="lrelu", conv_clamp=conv_clamp)
        self.conv1 = EqualConv2d(in_channels, out_channels, 3, activation="lrelu", down=2, conv_clamp=conv_clamp)
        self.skip = EqualConv2d(in_channels, out_channels, 1, bias=False, down=2)

    def forward(self, x: Tensor) -> Tensor:
        """x [B, in_channels, H, W] -> [B, out_channels, H/2, W/2]."""
        assert x.ndim == 4 and x.shape[1] == self.in_channels, (x.shape, self.in_channels)
        return (self.skip(x) + self.conv1(self.conv0(x))) * RESNET_GAIN


def projection_logits(features: Tensor, cmap: Tensor | None) -> Tensor:
    """Projection conditioning (Miyato & Koyama 2018): (features · cmap).sum / sqrt(cmap_dim).

    Args:
        features: [B, cmap_dim] (or [B, 1] when unconditional).
        cmap: [B, cmap_dim] mapped label, or None (unconditional: features are the logits).
    Returns:
        [B, 1].
    """
    if cmap is None:
        assert features.ndim == 2 and features.shape[1] == 1, features.shape
        return features
    assert features.shape == cmap.shape, (features.shape, cmap.shape)
    return (features * cmap).sum(dim=1, keepdim=True) / math.sqrt(cmap.shape[1])


class DiscriminatorEpilogue(nn.Module):
    """4² head: minibatch std → conv 3×3 → fc → out (→ projection when conditioned).

    Args:
        in_channels: channels of the 4×4 features.
        cmap_dim: size of the mapped label (0 = unconditional, one logit).
        mbstd_group, mbstd_channels: see `minibatch_std` (0 channels disables it).
    """

    def __init__(self, in_channels: int, cmap_dim: int = 0, resolution: int = 4, mbstd_group: int = 4,
                 mbstd_channels: int = 1, conv_clamp: float | None = None):
        super().__init__()
        self.in_channels, self.cmap_dim, self.resolution = in_channels, cmap_dim, resolution
        self.mbstd_group, self.mbstd_channels = mbstd_group, mbstd_channels
        self.conv = EqualConv2d(in_channels + mbstd_channels, in_channels, 3, activation="lrelu",
                                conv_clamp=conv_clamp)
        self.fc = EqualLinear(in_channels * resolution * resolution, in_channels, activation="lrelu")
        self.out = EqualLinear(in_channels, cmap_dim if cmap_dim > 0 else 1)

    def forward(self, x: Tensor, cmap: Tensor | None = None) -> Tensor:
        """x [B, C, 4, 4], cmap [B, cmap_dim] or None -> logits [B, 1]."""
        r = self.resolution
        assert x.ndim == 4 and x.shape[1:] == (self.in_channels, r, r), (x.shape, self.in_channels, r)
        assert (cmap is None) == (self.cmap_dim == 0), "cmap must be given iff cmap_dim > 0"
        if self.mbstd_channels > 0:
            x = minibatch_std(x, self.mbstd_group, self.mbstd_channels)
        x = self.conv(x)
        x = self.fc(x.flatten(1))
        return projection_logits(self.out(x), cmap)


class Discriminator(nn.Module):
    """Conditional StyleGAN2 ResNet discriminator.

    Args:
        in_channels: image channels (6 in AGORA: RGB ⊕ dual-discrimination cue).
        resolution: input resolution (power of two ≥ 8).
        c_dim: label size (0 = unconditional).
        channel_base, channel_max: ch(r) = min(channel_base // r, channel_max).
        mbstd_group, mbstd_channels: minibatch-std settings (StyleGAN2: 4 and 1).
        cmap_dim: mapped label size (default ch(4)).
        mapping_layers: depth of the label mapping network (StyleGAN2-ADA: 8).
    """

    def __init__(self, in_channels: int, resolution: int, c_dim: int = 0, channel_base: int = 32768,
                 channel_max: int = 512, mbstd_group: int = 4, mbstd_channels: int = 1,
                 cmap_dim: int | None = None, mapping_layers: int = 8, conv_clamp: float | None = None):
        super().__init__()
        assert resolution >= 8, "the discriminator needs resolution ≥ 8 (at least one block)"
        resolutions = block_resolutions(8, resolution)[::-1]  # R, R/2, …, 8
        ch = lambda r: synthesis_channels(r, channel_base, channel_max)  # noqa: E731
        self.in_channels, self.resolution, self.c_dim = in_channels, resolution, c_dim
        self.cmap_dim = (cmap_dim or ch(4)) if c_dim > 0 else 0
        self.from_image = EqualConv2d(in_channels, ch(resolution), 1, activation="lrelu", conv_clamp=conv_clamp)
        self.blocks = nn.ModuleDict({
            f"b{r}": DiscriminatorBlock(ch(r), ch(r // 2), conv_clamp=conv_clamp) for r in resolutions
        })
        self.mapping = (MappingNetwork(0, c_dim, self.cmap_dim, num_ws=None, num_layers=mapping_layers,
                                       w_avg_beta=None) if c_dim > 0 else None)
        self.epilogue = DiscriminatorEpilogue(ch(4), self.cmap_dim, mbstd_group=mbstd_group,
                                              mbstd_channels=mbstd_channels, conv_clamp=conv_clamp)

    def forward(self, img: Tensor, c: Tensor | None = None) -> Tensor:
        """img [B, in_channels, R, R], c [B, c_dim] (None if c_dim == 0) -> logits [B, 1]."""
        r = self.resolution
        assert img.ndim == 4 and img.shape[1:] == (self.in_channels, r, r), (img.shape, self.in_channels, r)
        x = self.from_image(img)
        for block in self.blocks.values():
            x = block(x)
        cmap = None
        if self.mapping is not None:
            assert c is not None and c.shape == (img.shape[0], self.c_dim), (None if c is None else c.shape)
            cmap = self.mapping(None, c)
        else:
            assert c is None or c.shape[1] == 0, "unconditional discriminator got a label"
        return self.epilogue(x, cmap)
