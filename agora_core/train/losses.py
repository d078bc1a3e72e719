"""GAN losses, R1, the weighted regulariser sum and shift augmentation (paper sec. 3.8, sec. 4).

- Generator: non-saturating loss softplus(-D(fake)) (eq. 12).
- Discriminator: softplus(D(fake)) + softplus(-D(real)), plus lazy R1 (StyleGAN2 sec. 3.1) on the
  real RGB *and* the real dual-discrimination cue, every `r1_interval` minibatches, scaled by the
  interval so its expected strength does not depend on it.
- Regularisers: the generator returns raw terms (`position`, `scale`, `deform_position`,
  `deform_scale`, `opacity_beta`); the loop weighs them with the config's λ.
- Shift augmentation (the authors' training code): one random affine per call (translate ±10 %, scale
  0.85–1.15) applied jointly to the image and its cue, for reals and fakes alike, resampled
  nearest-neighbour as torchvision's RandomAffine does by default (`ShiftAugmentConfig.interpolation`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from agora_core.run_config import LossConfig, ShiftAugmentConfig

# regularizer key -> LossConfig field holding its λ
REGULARIZER_WEIGHTS = {
    "position": "lambda_position",
    "scale": "lambda_scale",
    "deform_position": "lambda_deform_position",
    "deform_scale": "lambda_deform_scale",
    "opacity_beta": "lambda_opacity",
}


def generator_loss(fake_logits: Tensor) -> Tensor:
    """Non-saturating G loss (eq. 12): mean softplus(-D(fake)); logits [B, 1] -> scalar."""
    assert fake_logits.ndim == 2 and fake_logits.shape[1] == 1, fake_logits.shape
    return F.softplus(-fake_logits).mean()


def discriminator_loss_fake(fake_logits: Tensor) -> Tensor:
    """D loss on fakes: mean softplus(D(fake)); logits [B, 1] -> scalar."""
    assert fake_logits.ndim == 2 and fake_logits.shape[1] == 1, fake_logits.shape
    return F.softplus(fake_logits).mean()


def discriminator_loss_real(real_logits: Tensor) -> Tensor:
    """D loss on reals: mean softplus(-D(real)); logits [B, 1] -> scalar."""
    assert real_logits.ndim == 2 and real_logits.shape[1] == 1, real_logits.shape
    return F.softplus(-real_logits).mean()


def discriminator_loss(real_logits: Tensor, fake_logits: Tensor) -> Tensor:
    """Full D loss: softplus(D(fake)) + softplus(-D(real)) (the loop backpropagates the two halves
    separately, so DDP syncs D's gradients once)."""
    return discriminator_loss_fake(fake_logits) + discriminator_loss_real(real_logits)


def r1_penalty(real_logits: Tensor, inputs: list[Tensor]) -> Tensor:
    """R1 = E ‖∇_x D(x)‖² over the real inputs (image and cue), summed over inputs; scalar.

    `inputs` must require grad and be what D saw; the graph is kept (create_graph) so the penalty
    trains D. Returns the unweighted mean squared gradient norm; multiply by γ/2 (and the lazy
    interval) outside.
    """
    inputs = [x for x in inputs if x is not None]
    grads = torch.autograd.grad(real_logits.sum(), inputs, create_graph=True)
    return sum(g.square().sum(dim=[1, 2, 3]) for g in grads).mean()


def regularizer_loss(regularizers: dict[str, Tensor], loss: LossConfig) -> tuple[Tensor, dict[str, float]]:
    """Σ λ_k · reg_k over the generator's `regularizers` (sec. 3.8); terms with λ = 0 are skipped.

    Returns the weighted sum (a scalar tensor) and the raw values for logging. An unknown key is a
    programming error (the generator and this table must agree).
    """
    unknown = set(regularizers) - set(REGULARIZER_WEIGHTS)
    assert not unknown, f"regularizers without a λ in LossConfig: {sorted(unknown)}"
    total = None
    logged = {}
    for key, value in regularizers.items():
        logged[f"reg_{key}"] = float(value.detach())
        weight = getattr(loss, REGULARIZER_WEIGHTS[key])
        if weight:
            total = value * weight if total is None else total + value * weight
    if total is None:  # every λ is 0: a zero on the terms' device, not the CPU
        total = next(iter(regularizers.values())).new_zeros(()) if regularizers else torch.zeros(())
    return total, logged


def random_affine(batch: int, aug: ShiftAugmentConfig, device: torch.device, dtype=torch.float32) -> Tensor:
    """One random translate+scale as an affine_grid theta [B, 2, 3] (the same for the whole batch).

    The output pixel at normalised position p samples the input at (p - t) / s, i.e. the content
    is scaled by s about the centre and shifted by t (in units of the image size).
    """
    u = torch.rand(3, dtype=torch.float64)
    s = aug.scale[0] + (aug.scale[1] - aug.scale[0]) * float(u[0])
    t = [(2 * float(u[i]) - 1) * aug.translate * 2 for i in (1, 2)]  # ×2: grid coords span [-1, 1]
    theta = torch.tensor([[1 / s, 0.0, -t[0] / s], [0.0, 1 / s, -t[1] / s]], dtype=dtype, device=device)
    return theta.expand(batch, 2, 3)


def apply_affine(image: Tensor, theta: Tensor, fill: float, mode: str = "bilinear") -> Tensor:
    """Warp image [B, C, H, W] by theta [B, 2, 3] (`mode`: "bilinear" or "nearest"); pixels from
    outside become `fill`."""
    assert image.ndim == 4 and theta.shape == (image.shape[0], 2, 3), (image.shape, theta.shape)
    grid = F.affine_grid(theta, list(image.shape), align_corners=False)
    # Warp (x - fill) with zero padding, then add fill back: exact constant fill, whatever the mode.
    return F.grid_sample(image - fill, grid, mode=mode, padding_mode="zeros", align_corners=False) + fill


def shift_augment(image: Tensor, cue: Tensor | None, aug: ShiftAugmentConfig) -> tuple[Tensor, Tensor | None]:
    """Apply one random affine jointly to the image ([-1, 1], white fill = 1) and its cue (fill 0).

    Args:
        image: [B, 3, H, W] in [-1, 1].
        cue:   [B, 3, H, W] or None.
    Returns the warped pair (unchanged when `aug.enabled` is False).
    """
    if not aug.enabled:
        return image, cue
    theta = random_affine(image.shape[0], aug, image.device, image.dtype)
    image = apply_affine(image, theta, fill=1.0, mode=aug.interpolation)
    if cue is not None:
        cue = apply_affine(cue, theta, fill=0.0, mode=aug.interpolation)
    return image, cue
