"""Sliced Wasserstein distance on Laplacian-pyramid patches (Karras et al. 2018, "Progressive
growing of GANs", appendix D) -- the cheap image-quality signal logged during training.

Per pyramid level (finest = the image, coarsest = 16²): `descriptors_per_image` random 7×7
patches (the same positions in both sets) of each image's Laplacian band (the coarsest level is the low-pass Gaussian level), each
channel normalised by the set's own mean/std over all descriptors and pixels, then the SWD of the
two descriptor clouds: project on random unit directions, sort, mean |difference|. Reported per
level (×1e3 as in the paper's tables) and averaged over levels.

`swd_reference` / `evaluate_swd`: the fixed reals and generator inputs, and G_ema's SWD against them
(training logs it every `metric_kimg`; `agora eval --metrics swd` reports it).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from agora_core.data.conditions import ConditionSampler
from agora_core.data.torch_dataset import HeadImageDataset
from agora_core.devices import forked_rng
from agora_core.head import FlameParams
from agora_core.inference import render_generator

PATCH = 7  # descriptor side (pixels)
MIN_LEVEL_RES = 16  # the pyramid stops at 16² (Karras et al.)
_GAUSS = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0]) / 16.0  # the 5-tap binomial of a Gaussian pyramid


def _blur(x: Tensor) -> Tensor:
    k = _GAUSS.to(x)
    c = x.shape[1]
    x = F.pad(x, (2, 2, 2, 2), mode="reflect")
    x = F.conv2d(x, k.view(1, 1, 1, 5).expand(c, 1, 1, 5), groups=c)
    return F.conv2d(x, k.view(1, 1, 5, 1).expand(c, 1, 5, 1), groups=c)


def laplacian_pyramid(images: Tensor, min_res: int = MIN_LEVEL_RES) -> list[Tensor]:
    """images [B, C, R, R] -> bands [B, C, R, R], [B, C, R/2, R/2], … down to `min_res` (low-pass)."""
    assert images.ndim == 4 and images.shape[2] == images.shape[3], images.shape
    levels = []
    x = images
    while x.shape[-1] > min_res:
        low = F.avg_pool2d(_blur(x), 2)
        up = F.interpolate(low, scale_factor=2, mode="bilinear", align_corners=False)
        levels.append(x - up)
        x = low
    levels.append(x)
    return levels


def patch_positions(batch: int, height: int, width: int, per_image: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """Random top-left corners (ys, xs), each [B, per_image], of 7×7 patches inside an H×W image."""
    assert height >= PATCH and width >= PATCH, f"level {height}x{width} smaller than a {PATCH}x{PATCH} patch"
    ys = torch.randint(0, height - PATCH + 1, (batch, per_image), generator=generator)
    xs = torch.randint(0, width - PATCH + 1, (batch, per_image), generator=generator)
    return ys, xs


def sample_descriptors(level: Tensor, ys: Tensor, xs: Tensor) -> Tensor:
    """7×7 patches of level [B, C, H, W] at corners ys, xs [B, P] -> descriptors [B * P, C, 7, 7]."""
    b, c, h, w = level.shape
    per_image = ys.shape[1]
    assert ys.shape == xs.shape == (b, per_image), (ys.shape, xs.shape, b)
    offs = torch.arange(PATCH)
    rows = (ys[..., None] + offs)[..., :, None].expand(b, per_image, PATCH, PATCH)  # [B, P, 7, 7]
    cols = (xs[..., None] + offs)[..., None, :].expand(b, per_image, PATCH, PATCH)
    flat = (rows * w + cols).reshape(b, 1, -1).expand(b, c, -1).to(level.device)
    patches = torch.gather(level.reshape(b, c, h * w), 2, flat)  # [B, C, P*49]
    return patches.reshape(b, c, per_image, PATCH, PATCH).permute(0, 2, 1, 3, 4).reshape(-1, c, PATCH, PATCH)


def normalise_descriptors(desc: Tensor) -> Tensor:
    """Per channel: subtract the mean and divide by the std over descriptors and pixels; -> [N, D]."""
    mean = desc.mean(dim=(0, 2, 3), keepdim=True)
    std = desc.std(dim=(0, 2, 3), keepdim=True)
    return ((desc - mean) / std.clamp_min(1e-8)).reshape(desc.shape[0], -1)


def random_directions(dim: int, num: int, generator: torch.Generator) -> Tensor:
    """[dim, num] unit projection directions."""
    d = torch.randn(dim, num, generator=generator, dtype=torch.float64)
    return (d / d.norm(dim=0, keepdim=True)).float()


def sliced_wasserstein(a: Tensor, b: Tensor, directions: Tensor) -> Tensor:
    """SWD between descriptor sets a, b [N, D] (equal N) along directions [D, K]; scalar.

    Mean over directions of the 1-D Wasserstein-1 distance of the projections (sorted matching).
    """
    assert a.shape == b.shape and a.ndim == 2 and directions.shape[0] == a.shape[1], (a.shape, b.shape, directions.shape)
    pa = torch.sort(a @ directions, dim=0).values  # [N, K]
    pb = torch.sort(b @ directions, dim=0).values
    return (pa - pb).abs().mean()


def sliced_wasserstein_reference(a: Tensor, b: Tensor, directions: Tensor) -> Tensor:
    """Slow twin of `sliced_wasserstein`: one direction at a time, pure-Python pairing of the sorted
    projections. Tests only."""
    total = 0.0
    for k in range(directions.shape[1]):
        pa = sorted((a @ directions[:, k]).tolist())
        pb = sorted((b @ directions[:, k]).tolist())
        total += sum(abs(x - y) for x, y in zip(pa, pb)) / len(pa)
    return torch.tensor(total / directions.shape[1])


def swd(images_a: Tensor, images_b: Tensor, descriptors_per_image: int = 128, directions: int = 512,
        repeats: int = 4, seed: int = 0) -> dict[str, float]:
    """SWD between two image sets [N, 3, R, R] in [0, 1] or [-1, 1] (the same range for both).

    Returns {"swd": mean over levels, "swd_<res>": per level}, all ×1e3 (Karras et al.'s scale).
    Deterministic for a given `seed` (patch positions and directions come from it).
    """
    assert images_a.shape[1:] == images_b.shape[1:], (images_a.shape, images_b.shape)
    n = min(images_a.shape[0], images_b.shape[0])  # sorted matching needs equal set sizes
    gen = torch.Generator().manual_seed(seed)
    out = {}
    levels_a = laplacian_pyramid(images_a[:n].float())
    levels_b = laplacian_pyramid(images_b[:n].float())
    for la, lb in zip(levels_a, levels_b):
        # the same patch positions in both sets: no sampling noise between them, SWD(A, A) = 0
        ys, xs = patch_positions(n, la.shape[2], la.shape[3], descriptors_per_image, gen)
        da = normalise_descriptors(sample_descriptors(la, ys, xs))
        db = normalise_descriptors(sample_descriptors(lb, ys, xs))
        dists = [sliced_wasserstein(da, db, random_directions(da.shape[1], directions, gen).to(da.device))
                 for _ in range(repeats)]
        out[f"swd_{la.shape[-1]}"] = float(torch.stack(dists).mean()) * 1e3
    out["swd"] = sum(out.values()) / len(levels_a)
    return out


@dataclass
class SWDReference:
    """The fixed real images and generator inputs SWD compares on (same dataset items)."""

    reals: Tensor  # [N, 3, R, R] in [0, 1]
    z: Tensor  # [N, z_dim]
    c: Tensor  # [N, 25]
    flame: FlameParams  # N heads


def swd_reference(dataset: HeadImageDataset, conditions: ConditionSampler, z_dim: int, n: int, seed: int) -> SWDReference:
    gen = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(dataset), generator=gen)[:n]
    if len(idx) < n:  # small dataset: repeat items
        idx = idx[torch.arange(n) % len(idx)]
    reals = torch.stack([dataset[int(i)]["image"] for i in idx])
    c, flame = conditions.take(idx)
    return SWDReference(reals, torch.randn(n, z_dim, generator=gen), c, flame)


@torch.no_grad()
def evaluate_swd(G_ema, ref: SWDReference, resolution: int, descriptors: int = 128, directions: int = 512,
                 seed: int = 0) -> dict[str, float]:
    """SWD (×1e3, per level and mean) between the reference reals and G_ema's images of the same
    (camera, FLAME) conditions; computed on G_ema's device."""
    device = next(G_ema.parameters()).device
    with forked_rng(device):
        torch.manual_seed(seed)
        fakes = render_generator(G_ema, ref.z.to(device), ref.c.to(device),
                                 ref.flame.to(device), resolution)
    return swd(ref.reals.to(device), fakes, descriptors_per_image=descriptors, directions=directions, seed=seed)
