"""What training shows of itself: sample grids (paper Fig. 7 layout); SWD is `metrics.swd`'s.

Both run on G_ema with their own seeded generators inside `devices.forked_rng`, so evaluating
never changes the training's random stream (a resumed run stays identical to an uninterrupted one).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from agora_core.data.conditions import ConditionSampler
from agora_core.devices import forked_rng
from agora_core.head import FlameParams
from agora_core.inference import render_generator
from agora_core.render.images import enlarge, image_grid, write_png


def frontal_camera_index(cameras: Tensor) -> int:
    """Index of the dataset camera looking most nearly along -z (at the face), labels [N, 25]."""
    forward = cameras[:, :16].reshape(-1, 4, 4)[:, :3, 2]  # camera z axis in world coordinates
    return int(torch.argmax(-forward[:, 2] / forward.norm(dim=1)))


def sampling_defaults(conditions: ConditionSampler) -> dict[str, Tensor]:
    """Stored in checkpoints for `agora sample`: the frontal camera [25] and the dataset's FLAME
    shape mean/std [S] (avatars get shapes from that diagonal Gaussian)."""
    shape = conditions.flame.shape
    return {"camera": conditions.cameras[frontal_camera_index(conditions.cameras)].clone(),
            "shape_mean": shape.mean(0), "shape_std": shape.std(0, unbiased=False)}


@dataclass
class SampleGridInputs:
    """Fixed inputs of the sample grid: rows = expressions (row 0 neutral), columns = identities."""

    z: Tensor  # [rows*cols, z_dim]
    c: Tensor  # [rows*cols, 25] the frontal camera
    flame: FlameParams  # rows*cols heads
    rows: int
    cols: int


def expression_rows(conditions: ConditionSampler, rows: int) -> Tensor:
    """Indices [rows − 1] of the dataset items shown in grid rows 1.. (row 0 is neutral): the
    widest jaw opening (largest jaw[:, 0]), then the largest expression-coefficient norms, all
    distinct; unflipped items only (a flip repeats its item's expression). Ties go to the lower
    index, so the choice depends on the dataset alone."""
    n = conditions.num_images
    jaw = conditions.flame.jaw[:n, 0]
    norms = conditions.flame.expression[:n].norm(dim=1)
    order = [int(torch.argmax(jaw))] if rows > 1 else []
    for i in torch.sort(norms, descending=True, stable=True).indices.tolist():
        if len(order) >= rows - 1:
            break
        if i not in order:
            order.append(i)
    while order and len(order) < rows - 1:  # fewer items than rows: repeat them
        order.append(order[len(order) % n])
    return torch.tensor(order, dtype=torch.long)


def sample_grid_inputs(conditions: ConditionSampler, z_dim: int, rows: int, cols: int, seed: int) -> SampleGridInputs:
    """The grid of paper Fig. 7: columns are identities, rows expressions, frontal camera.

    Identities (deterministic from `seed`): a fixed z and the shape of a random dataset item.
    Expressions (expression, jaw, eyelids, eyes of a dataset item; neck zero): row 0 neutral (all
    zero), row 1 the item with the widest jaw opening, then the items with the largest expression
    norms (`expression_rows`), so the mouth and expressions show from the first grid on.
    """
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(cols, z_dim, generator=gen)
    _, id_flame = conditions.take(torch.randint(0, len(conditions), (cols,), generator=gen))
    _, ex_flame = conditions.take(torch.cat([torch.zeros(1, dtype=torch.long), expression_rows(conditions, rows)]))
    frontal = conditions.cameras[frontal_camera_index(conditions.cameras)]
    ex_flame = ex_flame.map(lambda v: torch.cat([torch.zeros_like(v[:1]), v[1:]]))  # neutral row 0
    flame = ex_flame.map(lambda v: v.repeat_interleave(cols, dim=0))  # row-major: row r = expression r
    flame = flame.replace(shape=id_flame.shape.repeat(rows, 1), neck=torch.zeros_like(flame.neck))
    return SampleGridInputs(z.repeat(rows, 1), frontal.expand(rows * cols, 25).clone(), flame, rows, cols)


@torch.no_grad()
def save_sample_grid(G_ema, inputs: SampleGridInputs, resolution: int, path: str | Path,
                     display_resolution: int | None = None) -> Path:
    """Render the grid at the training `resolution`, enlarged (bicubic) to `display_resolution`.

    The Gaussians are 3D, but rendering a low-resolution model natively at 4× exposes what its
    training images never showed (gaps between splats that the 0.3 px² low-pass filled at 32²):
    the enlarged training-resolution render is what the model actually learned to draw.
    """
    device = next(G_ema.parameters()).device
    with forked_rng(device):
        images = render_generator(G_ema, inputs.z.to(device), inputs.c.to(device),
                                  inputs.flame.to(device), resolution,
                                  noise_mode="const")
    if display_resolution:
        images = enlarge(images, display_resolution)
    return write_png(path, image_grid(images, inputs.rows, inputs.cols))
