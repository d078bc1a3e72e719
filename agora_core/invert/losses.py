"""PTI's reconstruction loss: pixel L2 plus a perceptual distance (PTI: L2 + LPIPS).

With a VGG16 weights file the perceptual term is `VGGPerceptualDistance` (LPIPS baseline, no
learned heads); without one it falls back to 1 − SSIM (pixel L2 + SSIM), which needs no weights.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from agora_core.invert.perceptual import VGGPerceptualDistance
from agora_core.invert.ssim import gaussian_window, ssim


def psnr(x: Tensor, y: Tensor) -> Tensor:
    """[B] peak signal-to-noise ratio in dB of images in [0, 1] ([B, C, H, W])."""
    mse = (x - y).pow(2).flatten(1).mean(dim=1)
    return -10.0 * torch.log10(mse.clamp_min(1e-12))


@dataclass
class LossTerms:
    total: Tensor  # scalar, what is optimised
    l2: Tensor  # scalar, mean squared error
    perceptual: Tensor  # scalar, mean perceptual distance (VGG) or 1 − SSIM


class ReconstructionLoss(nn.Module):
    """`loss(pred, target) -> LossTerms`, images [B, 3, H, W] in [0, 1], averaged over B.

    Args:
        perceptual: a `VGGPerceptualDistance`, or None for the 1 − SSIM fallback.
        l2_weight, perceptual_weight: PTI weighs both 1.
    """

    def __init__(self, perceptual: VGGPerceptualDistance | None = None, l2_weight: float = 1.0,
                 perceptual_weight: float = 1.0):
        super().__init__()
        self.perceptual = perceptual
        self.l2_weight, self.perceptual_weight = l2_weight, perceptual_weight

    @property
    def perceptual_name(self) -> str:
        return "vgg" if self.perceptual is not None else "1-ssim"

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
    """The loss for `--perceptual-weights PATH` (VGG16) or, without a file, L2 + SSIM (said once
    through `warn(message)`)."""
    if perceptual_weights:
        return ReconstructionLoss(VGGPerceptualDistance.from_file(perceptual_weights, device))
    if warn is not None:
        warn("no --perceptual-weights (torchvision VGG16 state dict): using pixel L2 + SSIM instead of "
             "L2 + a VGG perceptual distance")
    return ReconstructionLoss(None)
