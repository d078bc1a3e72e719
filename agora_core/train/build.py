"""Building what training works on: G, D, the optimisers, the cue renderer (the head: `head.build`).

Shared by the loop and `agora train --dry-run`, so both build the same models from the same config.
"""

from __future__ import annotations

import torch
from torch import Tensor

from agora_core.head import FlameParams, HeadModel, UVSamples
from agora_core.models.agora_discriminator import AgoraDiscriminator
from agora_core.models.agora_generator import AgoraGenerator
from agora_core.models.dual_discrimination import dual_discrimination_cue
from agora_core.render import Camera
from agora_core.run_config import OptimConfig, TrainConfig


def build_models(config: TrainConfig, head: HeadModel) -> tuple[AgoraGenerator, AgoraDiscriminator]:
    """G and D of `config` (weights from the current torch RNG)."""
    return AgoraGenerator(config.generator, head), AgoraDiscriminator(config.discriminator, config.resolution)


def build_optimizers(config: OptimConfig, r1_interval: int, G: torch.nn.Module, D: torch.nn.Module
                     ) -> tuple[torch.optim.Adam, torch.optim.Adam]:
    """Adam for G and D; D's lr and betas adjusted for lazy R1 (StyleGAN2 appendix: with the
    penalty every k steps, lr·k/(k+1) and β^(k/(k+1)) keep the effective step the same)."""
    ratio = r1_interval / (r1_interval + 1)
    opt_g = torch.optim.Adam(G.parameters(), lr=config.lr_g, betas=config.betas, eps=config.eps)
    opt_d = torch.optim.Adam(D.parameters(), lr=config.lr_d * ratio,
                             betas=(config.betas[0] ** ratio, config.betas[1] ** ratio), eps=config.eps)
    return opt_g, opt_d


def parameter_counts(G: AgoraGenerator, D: torch.nn.Module) -> dict[str, int]:
    """Identity branch, deformation branch, D parameter counts and the number of Gaussians."""
    counts = G.parameter_counts()
    return {"identity_branch": counts["identity_branch"], "deformation_branch": counts["deformation_branch"],
            "generator_total": counts["total"], "discriminator": sum(p.numel() for p in D.parameters()),
            "gaussians": G.num_gaussians}


class CueRenderer:
    """The dual-discrimination cue S(ψ) (sec. 3.6) for a batch, or None when D takes no cue.

    The mesh is splatted at the generator's UV samples (`AgoraGenerator.samples`)."""

    def __init__(self, head: HeadModel, samples: UVSamples, config: TrainConfig):
        self.head, self.samples, self.resolution = head, samples, config.resolution
        self.config = config.discriminator

    @torch.no_grad()
    def __call__(self, flame: FlameParams, camera: Tensor, enabled: bool = True) -> Tensor | None:
        """B heads' FLAME parameters, camera labels [B, 25] -> cue [B, 3, R, R] | None.

        `enabled` False gives zeros (the cue is switched on after `start_dual_kimg`)."""
        if self.config.cue in ("none", "projection"):
            return None
        b, r = camera.shape[0], self.resolution
        if not enabled:
            return camera.new_zeros(b, 3, r, r)
        return dual_discrimination_cue(self.head, flame, Camera.from_label(camera), r, self.config.cue, self.samples,
                                       self.config.cue_displacement_scale, self.config.cue_include_jaw)
