"""PTI's reconstruction loss: pixel L2 plus a perceptual distance (PTI: L2 + LPIPS).

With a backbone file (`--perceptual-weights`, AGORA_PERCEPTUAL_WEIGHTS or assets.yaml: torchvision's
VGG16 or AlexNet state dict) the perceptual term is LPIPS with its learned heads (lpips_distance.py);
without the `lpips` package a VGG16 file gives the uncalibrated `VGGPerceptualDistance`; without a
file it falls back to 1 − SSIM (pixel L2 + SSIM), which needs no weights.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from agora_core.invert.lpips_distance import load_perceptual, perceptual_name
from agora_core.invert.ssim import gaussian_window, ssim


def psnr(x: Tensor, y: Tensor) -> Tensor:
    """[B] peak signal-to-noise ratio in dB of images in [0, 1] ([B, C, H, W])."""
    mse = (x - y).pow(2).flatten(1).mean(dim=1)
    return -10.0 * torch.log10(mse.clamp_min(1e-12))


@dataclass
class LossTerms:
    total: Tensor  # scalar, what is optimised
    l2: Tensor  # scalar, mean squared error
    perceptual: Tensor  # scalar, mean perceptual distance (LPIPS or VGG) or 1 − SSIM


class ReconstructionLoss(nn.Module):
    """`loss(pred, target) -> LossTerms`, images [B, 3, H, W] in [0, 1], averaged over B.

    Args:
        perceptual: an `LPIPSDistance` / `VGGPerceptualDistance` ([B] from two [B, 3, H, W] images
                    in [0, 1]), or None for the 1 − SSIM fallback.
        l2_weight, perceptual_weight: PTI weighs both 1.
    """

    def __init__(self, perceptual: nn.Module | None = None, l2_weight: float = 1.0,
                 perceptual_weight: float = 1.0):
        super().__init__()
        self.perceptual = perceptual
        self.l2_weight, self.perceptual_weight = l2_weight, perceptual_weight

    @property
    def perceptual_name(self) -> str:
        """"lpips-alex", "lpips-vgg", "vgg" (uncalibrated) or "1-ssim"."""
        return perceptual_name(self.perceptual)

    def forward(self, pred: Tensor, target: Tensor) -> LossTerms:
        assert pred.shape == target.shape, (pred.shape, target.shape)
        l2 = (pred - target).pow(2).mean()
        if self.perceptual is not None:
            p = self.perceptual(pred, target).mean()
        elif min(pred.shape[-2:]) >= gaussian_window().numel():
            p = 1.0 - ssim(pred, target).mean()
        else:  # smaller than SSIM's 11×11 window (renders below 11²): L2 alone
            p = pred.new_zeros(())
        return LossTerms(self.l2_weight * l2 + self.perceptual_weight * p, l2, p)


def make_reconstruction_loss(perceptual_weights: str | None, device: torch.device | str = "cpu",
                             warn=None) -> ReconstructionLoss:
    """The loss for the backbone file of `--perceptual-weights PATH` (else AGORA_PERCEPTUAL_WEIGHTS,
    else assets.yaml's `perceptual_weights`) or, without one, L2 + SSIM (said once through `warn`)."""
    from agora_core.assets import resolve_asset

    found = resolve_asset("perceptual_weights", perceptual_weights)
    if found.path is not None:
        return ReconstructionLoss(load_perceptual(found.existing(), device))
    if warn is not None:
        warn("no --perceptual-weights (torchvision AlexNet or VGG16 state dict): using pixel L2 + SSIM instead of "
             "L2 + LPIPS")
    return ReconstructionLoss(None)
