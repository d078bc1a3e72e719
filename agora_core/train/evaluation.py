"""What training shows of itself: sample grids (paper Fig. 7 layout) and SWD against real images.

Both run on G_ema with their own seeded generators inside `torch.random.fork_rng`, so evaluating
never changes the training's random stream (a resumed run stays identical to an uninterrupted one).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from agora_core.data.torch_dataset import HeadImageDataset
from agora_core.errors import AgoraError
from agora_core.render import Camera, rasterize
from agora_core.train.sampling import ConditionSampler
from agora_core.train.swd import swd
from agora_core.render.images import to_uint8


def _own_rng(device: torch.device):
    """Fork the RNGs the generator's noise draws from, so the caller's stream is untouched."""
    return torch.random.fork_rng(devices=[device] if device.type == "cuda" else [])


def render_generator(G, z: Tensor, c: Tensor, flame: dict[str, Tensor], resolution: int,
                     truncation_psi: float = 1.0, noise_mode: str = "random", chunk: int = 16) -> Tensor:
    """Images [B, 3, R, R] in [0, 1] of G(z, c, flame) seen through the cameras c (EG3D labels [B, 25];
    the mapping network takes `inference.mapping_labels` of them), on white."""
    from agora_core.inference import mapping_labels

    out = []
    for i in range(0, z.shape[0], chunk):
        sl = slice(i, i + chunk)
        cameras = Camera.from_label(c[sl])
        gen = G(z[sl], mapping_labels(G, cameras), {k: v[sl] for k, v in flame.items()}, truncation_psi,
                noise_mode=noise_mode)
        rgb, _ = rasterize(gen.gaussians, cameras, resolution, resolution, background=1.0)
        out.append(rgb.clamp(0, 1))
    return torch.cat(out)


def frontal_camera_index(cameras: Tensor) -> int:
    """Index of the dataset camera looking most nearly along -z (at the face), labels [N, 25]."""
    forward = cameras[:, :16].reshape(-1, 4, 4)[:, :3, 2]  # camera z axis in world coordinates
    return int(torch.argmax(-forward[:, 2] / forward.norm(dim=1)))


def sampling_defaults(conditions: ConditionSampler) -> dict[str, Tensor]:
    """Stored in checkpoints for `agora sample`: the frontal camera [25] and the dataset's FLAME
    shape mean/std [S] (avatars get shapes from that diagonal Gaussian)."""
    shape = conditions.flame["shape"]
    return {"camera": conditions.cameras[frontal_camera_index(conditions.cameras)].clone(),
            "shape_mean": shape.mean(0), "shape_std": shape.std(0, unbiased=False)}


@dataclass
class SampleGridInputs:
    """Fixed inputs of the sample grid: rows = expressions (row 0 neutral), columns = identities."""

    z: Tensor  # [rows*cols, z_dim]
    c: Tensor  # [rows*cols, 25] the frontal camera
    flame: dict[str, Tensor]  # [rows*cols, D] each
    rows: int
    cols: int


def expression_rows(conditions: ConditionSampler, rows: int) -> Tensor:
    """Indices [rows − 1] of the dataset items shown in grid rows 1.. (row 0 is neutral): the
    widest jaw opening (largest jaw[:, 0]), then the largest expression-coefficient norms, all
    distinct; unflipped items only (a flip repeats its item's expression). Ties go to the lower
    index, so the choice depends on the dataset alone."""
    n = conditions.num_images
    jaw = conditions.flame["jaw"][:n, 0]
    norms = conditions.flame["expression"][:n].norm(dim=1)
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
    flame = {}
    for key, value in ex_flame.items():
        value = value.clone()
        value[0] = 0.0  # neutral row
        flame[key] = value.repeat_interleave(cols, dim=0)  # row-major: row r = expression r
    flame["shape"] = id_flame["shape"].repeat(rows, 1)
    flame["neck"] = torch.zeros_like(flame["neck"])
    return SampleGridInputs(z.repeat(rows, 1), frontal.expand(rows * cols, 25).clone(), flame, rows, cols)


def image_grid(images: Tensor, rows: int, cols: int) -> np.ndarray:
    """[rows*cols, 3, R, R] in [0, 1] (row-major) -> uint8 RGB [rows*R, cols*R, 3]."""
    n, _, r, _ = images.shape
    assert n == rows * cols, (n, rows, cols)
    grid = images.reshape(rows, cols, 3, r, r).permute(0, 3, 1, 4, 2).reshape(rows * r, cols * r, 3)
    return to_uint8(grid).cpu().numpy()


def write_png(path: str | Path, rgb: np.ndarray) -> Path:
    """Write uint8 RGB [H, W, 3] as an image (format from the suffix: .png, .jpg...), atomically."""
    from agora_core.gaussians.files import atomic_write

    path = Path(path)
    try:
        ok, encoded = cv2.imencode(path.suffix or ".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    except cv2.error:
        ok = False
    if not ok:
        raise AgoraError(f"{path}: cannot write an image with suffix {path.suffix!r}; use .png or .jpg")
    with atomic_write(path) as f:
        f.write(encoded.tobytes())
    return path


@torch.no_grad()
def save_sample_grid(G_ema, inputs: SampleGridInputs, resolution: int, path: str | Path,
                     display_resolution: int | None = None) -> Path:
    """Render the grid at the training `resolution`, enlarged (bicubic) to `display_resolution`.

    The Gaussians are 3D, but rendering a low-resolution model natively at 4× exposes what its
    training images never showed (gaps between splats that the 0.3 px² low-pass filled at 32²):
    the enlarged training-resolution render is what the model actually learned to draw.
    """
    device = next(G_ema.parameters()).device
    with _own_rng(device):
        images = render_generator(G_ema, inputs.z.to(device), inputs.c.to(device),
                                  {k: v.to(device) for k, v in inputs.flame.items()}, resolution,
                                  noise_mode="const")
    if display_resolution and display_resolution != resolution:
        images = F.interpolate(images, size=display_resolution, mode="bicubic", align_corners=False).clamp(0, 1)
    return write_png(path, image_grid(images, inputs.rows, inputs.cols))


@dataclass
class SWDReference:
    """The fixed real images and generator inputs SWD compares on (same dataset items)."""

    reals: Tensor  # [N, 3, R, R] in [0, 1]
    z: Tensor  # [N, z_dim]
    c: Tensor  # [N, 25]
    flame: dict[str, Tensor]


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
    with _own_rng(device):
        torch.manual_seed(seed)
        fakes = render_generator(G_ema, ref.z.to(device), ref.c.to(device),
                                 {k: v.to(device) for k, v in ref.flame.items()}, resolution)
    return swd(ref.reals.to(device), fakes, descriptors_per_image=descriptors, directions=directions, seed=seed)
