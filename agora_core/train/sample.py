"""Random avatars of a model (what `agora sample` does): neutral expression, the model's framing
camera and shape prior (`inference.load_model`: a training run or an imported run)."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from agora_core.gaussians import GaussianSet, write_ply
from agora_core.inference import InferenceModel, draw_identity, neutral_gaussians
from agora_core.render import rasterize
from agora_core.render.images import image_grid, write_png


@torch.no_grad()
def sample_avatars(model: InferenceModel, n: int, seed: int, truncation: float, resolution: int
                   ) -> tuple[Tensor, GaussianSet]:
    """n avatars of seed `seed` (`inference.draw_identity`), neutral, at the model's framing:
    images [n, 3, R, R] in [0, 1] and their Gaussians (batch n)."""
    cache, shape = draw_identity(model, seed, n, truncation)
    gaussians = neutral_gaussians(model.generator, cache)
    rgb, _ = rasterize(gaussians, model.cameras(shape), resolution, resolution, background=1.0)
    return rgb.clamp(0, 1), gaussians


def write_avatars(images: Tensor, gaussians: GaussianSet, grid_path: str | Path, ply_dir: str | Path | None,
                  cols: int) -> tuple[Path, list[Path]]:
    """Grid PNG (padded with white to full rows) and, with `ply_dir`, avatar_NNN.ply per avatar."""
    n = images.shape[0]
    rows = -(-n // cols)
    padded = torch.cat([images, images.new_ones(rows * cols - n, *images.shape[1:])])
    grid = write_png(grid_path, image_grid(padded, rows, cols))
    plys = []
    if ply_dir is not None:
        ply_dir = Path(ply_dir)
        ply_dir.mkdir(parents=True, exist_ok=True)
        plys = [write_ply(ply_dir / f"avatar_{i:03d}.ply", gaussians, batch_index=i) for i in range(n)]
    return grid, plys
