"""Deformation branch G_d (paper sec. 3.4, eq. 7, appendix 0.B.1.2).

D_uv = G_d(w, ψ, θ; f): two StyleGAN2 blocks (64² → 128² → 256² for the paper) that start from the
identity branch's tap features f (not detached, so G_d's loss also trains the identity branch up
to the tap) and are conditioned on the expression by style modulation. As in the authors' code,
each layer's style is the concatenation [w, MLP(e)] (1024-d for the paper), with
e = [ψ (first 50 coefficients), jaw axis-angle (3), eyelids (2)] = 55-d, unnormalised, and
MLP = Linear(55→512) – LeakyReLU(0.2) – Linear(512→512). The w part is the identity's first
`num_ws` style vectors (identical copies unless styles are mixed), as the authors do.

Output (paper layout): residual planes [B, 9, R, R] = (Δμ 3, Δlog-scale 3, Δq 3). The skip image starts from zero
(the authors start from the identity's tap skip image, so their residuals are not zero at
initialisation), and every ToOutput weight of the tail is scaled by `deform_output_gain` (0.1) at
initialisation, so residuals start near zero while every layer already receives gradients.

With `attribute_layout="authors"` (models imported from the authors' release) the branch is theirs:
all `main_channels` planes, the skip image started from the identity's tap skip image, then the
plane-level facial mask, colour channels zeroed, and its own 1×1 conv on the position channels.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from agora_core.head.flame_params import FlameParams, fit_coefficients
from agora_core.models.generator_config import EYELID_DIM, JAW_DIM, GeneratorConfig
from agora_core.models.lifting import DEFORM_CHANNELS
from agora_core.models.stylegan2_layers import NoiseMode
from agora_core.models.stylegan2_synthesis import SynthesisTail, synthesis_channels


def expression_condition(flame: FlameParams, expr_dim: int) -> Tensor:
    """e = [ψ[:expr_dim] (zero-padded), jaw (3), eyelids (2)] (sec. 3.4), in the expression's dtype.

    Args:
        flame: B heads; expression [B, E] ψ, jaw [B, 3] θ_jaw, eyelids [B, 2] are read.
    Returns:
        [B, expr_dim + 5] (55-d for the paper).
    """
    e = flame.expression
    assert flame.jaw.shape[1] == JAW_DIM and flame.eyelids.shape[1] == EYELID_DIM
    return torch.cat([fit_coefficients(e, expr_dim), flame.jaw.to(e.dtype), flame.eyelids.to(e.dtype)], dim=1)


class ExpressionEmbedding(nn.Module):
    """MLP(e): Linear(in → out) – LeakyReLU(0.2) – Linear(out → out), plain torch init (authors')."""

    def __init__(self, in_features: int, out_features: int):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.net = nn.Sequential(nn.Linear(in_features, out_features), nn.LeakyReLU(0.2),
                                 nn.Linear(out_features, out_features))

    def forward(self, e: Tensor) -> Tensor:
        """e [B, in_features] -> [B, out_features]."""
        assert e.ndim == 2 and e.shape[1] == self.in_features, (e.shape, self.in_features)
        return self.net(e)


class DeformationBranch(nn.Module):
    """G_d: SynthesisTail(tap → R) with styles [w, MLP(e)], output 9 residual channels (eq. 7)."""

    def __init__(self, config: GeneratorConfig):
        super().__init__()
        self.config = config
        self.in_channels = synthesis_channels(config.tap_resolution, config.channel_base, config.channel_max)
        self.embedding = ExpressionEmbedding(config.expression_dim, config.expr_embed_dim)
        self.authors = config.attribute_layout == "authors"
        self.out_channels = config.main_channels if self.authors else DEFORM_CHANNELS
        self.position_head = None
        if self.authors:  # their zero-initialised 1×1 conv on the residual position channels
            self.position_head = nn.Conv2d(3, 3, kernel_size=1)
            nn.init.zeros_(self.position_head.weight)
            nn.init.zeros_(self.position_head.bias)
        self.tail = SynthesisTail(config.tap_resolution, config.uv_resolution, self.in_channels,
                                  style_dim=config.w_dim + config.expr_embed_dim, out_channels=self.out_channels,
                                  channel_base=config.channel_base, channel_max=config.channel_max,
                                  use_noise=config.use_noise)
        with torch.no_grad():  # residuals start near zero (see module docstring)
            for block in self.tail.blocks.values():
                block.to_output.conv.weight.mul_(config.deform_output_gain)

    @property
    def num_ws(self) -> int:
        """Style vectors consumed (5 for 64² → 256²)."""
        return self.tail.num_ws

    def styles(self, ws: Tensor, e: Tensor) -> Tensor:
        """[w_i, MLP(e)] per layer: ws [B, ≥num_ws, w_dim], e [B, 55] -> [B, num_ws, w_dim + embed]."""
        b, n = ws.shape[0], self.num_ws
        assert ws.ndim == 3 and ws.shape[1] >= n and ws.shape[2] == self.config.w_dim, (ws.shape, n)
        embed = self.embedding(e)[:, None, :].expand(b, n, self.config.expr_embed_dim)
        return torch.cat([ws[:, :n], embed.to(ws.dtype)], dim=2)

    def forward(self, features: Tensor, ws: Tensor, e: Tensor, noise_mode: NoiseMode = "random",
                skip_image: Tensor | None = None, plane_mask: Tensor | None = None) -> Tensor:
        """D_uv = G_d(w, ψ, θ; f) (eq. 7).

        Args:
            features: [B, ch(tap), tap, tap] identity-branch features at the tap (bfloat16 inside
                `torch.inference_mode` runs the convolutions in bfloat16, see `AgoraGenerator.animate`).
            ws: [B, num_ws_identity, w_dim] the identity's style vectors (first num_ws used).
            e: [B, expr_cond_dim + 5] expression condition (`expression_condition`).
            skip_image: [B, main_channels, tap, tap] the identity's tap skip image (authors' layout).
            plane_mask: [R, R] facial UV mask applied to the planes (authors' layout).
        Returns:
            [B, 9, R, R] raw residual planes (Δμ, Δlog-scale, Δq); authors' layout:
            [B, main_channels, R, R], masked, colour zeroed, position through its 1×1 conv.
        """
        r0 = self.config.tap_resolution
        assert features.shape[1:] == (self.in_channels, r0, r0), (features.shape, self.in_channels, r0)
        assert e.shape == (features.shape[0], self.config.expression_dim), (e.shape, self.config.expression_dim)
        if not self.authors:  # planes in the styles' dtype (features may be bfloat16 at inference)
            return self.tail(features, None, self.styles(ws, e), noise_mode=noise_mode).to(ws.dtype)
        assert skip_image is not None and plane_mask is not None, "the authors' layout needs skip_image and plane_mask"
        planes = self.tail(features, skip_image, self.styles(ws, e), noise_mode=noise_mode).to(ws.dtype)
        planes = planes * plane_mask.to(ws.dtype)
        colour_start = 6 + self.config.rotation_channels
        keep = torch.ones(self.out_channels, dtype=planes.dtype, device=planes.device)
        keep[colour_start:colour_start + self.config.colour_channels] = 0
        planes = planes * keep[:, None, None]
        return torch.cat([self.position_head(planes[:, :3]), planes[:, 3:]], dim=1)
