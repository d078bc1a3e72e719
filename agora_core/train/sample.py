"""Random avatars from a checkpoint (what `agora sample` does): G_ema, neutral expression, the
training set's most frontal camera, FLAME shapes drawn from the training set's per-coefficient
Gaussian (mean/std stored in the checkpoint's `sampling` entry)."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from agora_core.gaussians import GaussianSet, write_ply
from agora_core.models.agora_generator import AgoraGenerator
from agora_core.render import Camera, rasterize
from agora_core.train.build import build_head, check_head_model, load_generator_weights
from agora_core.train.checkpoint import load_checkpoint
from agora_core.train.config import config_from_dict
from agora_core.train.evaluation import image_grid, write_png


def load_generator(checkpoint: str | Path) -> tuple[AgoraGenerator, dict]:
    """G_ema of a checkpoint (or a run folder's newest) in eval mode, and the checkpoint dict."""
    state = load_checkpoint(checkpoint)
    config = config_from_dict(state["config"], source=f"{checkpoint} (stored config)")
    head = build_head(config.head)
    check_head_model(head, str(state.get("head_model", "")), checkpoint)
    G = AgoraGenerator(config.generator, head)
    load_generator_weights(G, state.get("G_ema"), checkpoint)
    return G.eval().requires_grad_(False), state


@torch.no_grad()
def sample_avatars(G: AgoraGenerator, state: dict, n: int, seed: int, truncation: float, resolution: int
                   ) -> tuple[Tensor, GaussianSet]:
    """n avatars: images [n, 3, R, R] in [0, 1] and their Gaussians (batch n)."""
    gen = torch.Generator().manual_seed(seed)
    sampling = state["sampling"]
    z = torch.randn(n, G.config.z_dim, generator=gen)
    shape = sampling["shape_mean"] + sampling["shape_std"] * torch.randn(n, sampling["shape_mean"].shape[0], generator=gen)
    c = sampling["camera"].reshape(1, 25).expand(n, 25).clone()
    cache = G.identity(z, c, shape, truncation, noise_mode="const")
    zeros = lambda k: torch.zeros(n, k)  # noqa: E731  neutral expression, jaw, eyelids
    out = G.animate(cache, zeros(G.head.num_expr), zeros(3), zeros(2), noise_mode="const")
    rgb, _ = rasterize(out.gaussians, Camera.from_label(c), resolution, resolution, background=1.0)
    return rgb.clamp(0, 1), out.gaussians


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
