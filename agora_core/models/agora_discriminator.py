"""`AgoraDiscriminator`: StyleGAN2 ResNet D with AGORA's expression conditioning (sec. 3.6, Table 3).

- "displacement" / "uv": D sees RGB ⊕ the dual-discrimination cue (6 channels) and the camera label.
- "projection" (cGAN-style, Table 3 row 2): RGB only; the expression vector e (55-d) is appended to
  the camera label, which D uses by projection.
- "none": RGB and the camera label only.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from agora_core.head.flame_params import FlameParams
from agora_core.models.deformation_branch import expression_condition
from agora_core.models.generator_config import DiscriminatorConfig
from agora_core.models.stylegan2_discriminator import Discriminator


class AgoraDiscriminator(nn.Module):
    """D(image, S(ψ), π) of eq. (12).

    Args:
        config: architecture and cue.
        resolution: image resolution (power of two ≥ 8).
    """

    def __init__(self, config: DiscriminatorConfig, resolution: int):
        super().__init__()
        self.config, self.resolution = config, resolution
        self.discriminator = Discriminator(config.image_channels, resolution, c_dim=config.label_dim,
                                           channel_base=config.channel_base, channel_max=config.channel_max,
                                           mbstd_group=config.mbstd_group, mapping_layers=config.mapping_layers)

    @property
    def uses_cue(self) -> bool:
        """Whether forward() needs the image cue (modes "uv" and "displacement")."""
        return self.config.cue in ("uv", "displacement")

    def label(self, c: Tensor, flame: FlameParams | None) -> Tensor:
        """D's label: [B, 25] camera, plus e [B, 55] for "projection"."""
        if self.config.cue != "projection":
            return c
        assert flame is not None, 'cue "projection" needs the FLAME parameters'
        e = expression_condition(flame, self.config.expr_cond_dim)
        return torch.cat([c, e.to(c.dtype)], dim=1)

    def forward(self, image: Tensor, cue: Tensor | None, c: Tensor, flame: FlameParams | None = None) -> Tensor:
        """Logits [B, 1].

        Args:
            image: [B, 3, H, W] in [-1, 1].
            cue: [B, 3, H, W] dual-discrimination cue for "uv"/"displacement", else ignored (None).
            c: [B, c_dim] camera label.
            flame: the FLAME parameters (expression, jaw, eyelids) for "projection", else unused.
        """
        r = self.resolution
        assert image.ndim == 4 and image.shape[1:] == (3, r, r), (image.shape, r)
        assert c.shape == (image.shape[0], self.config.c_dim), (c.shape, self.config.c_dim)
        if self.uses_cue:
            assert cue is not None and cue.shape == image.shape, (None if cue is None else cue.shape, image.shape)
            image = torch.cat([image, cue.to(image.dtype)], dim=1)
        return self.discriminator(image, self.label(c, flame))
