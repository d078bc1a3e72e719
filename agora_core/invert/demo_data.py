"""The demo's inversion input: a few views of ONE synthetic demo-head identity as a dataset folder.

The demo head has no SMIRK model, so `agora invert --dataset DIR --index 0 1 2` takes the images
with their exact labels. The identity is reproducible from the seed stored in the dataset header
(`extra.demo_identity_seed`), so `agora reenact --ground-truth DIR` can render the same person
with any driving parameters (`demo_identity_renderer`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from agora_core.data.format import DatasetHeader, DatasetRecord, read_dataset_index, write_dataset_index
from agora_core.errors import AgoraError
from agora_core.head import FlameParams
from agora_core.render import FLAME_CAMERA_RADIUS, Camera, orbit_cameras

DEMO_IDENTITY_STREAM = 7_000_001  # keeps demo identities apart from prep-data --synthetic's (seed, i)
# (yaw, pitch) of the views: three to invert from, the fourth held out (between two of them)
DEMO_VIEWS = ((-0.35, 0.05), (0.0, -0.05), (0.35, 0.08), (0.18, 0.0))
SOURCE_PREFIX = "demo-identity"
SPLAT_GRID = 192  # the synthetic dataset's surface-splat grid (dense enough for 128²)


def splat_grid_for(resolution: int) -> int:
    """Surface-splat grid for renders at `resolution`: 2 samples per pixel across (at least 64), at most
    the synthetic dataset's (denser only costs time; splat sizes follow the spacing)."""
    return int(min(SPLAT_GRID, max(64, 2 * resolution)))


def demo_identity_rng(seed: int) -> np.random.Generator:
    return np.random.default_rng([DEMO_IDENTITY_STREAM, seed])


@dataclass
class DemoIdentity:
    """One synthetic person: appearance, FLAME shape, and the renderer of the demo head."""

    seed: int
    renderer: object  # DemoHeadRenderer
    albedo: torch.Tensor  # [1, M, 3]
    shape: torch.Tensor  # [1, S]

    @staticmethod
    def from_seed(seed: int, splat_grid: int = SPLAT_GRID) -> "DemoIdentity":
        from agora_core.data.appearance import sample_identity
        from agora_core.data.synthetic import DemoHeadRenderer

        rng = demo_identity_rng(seed)
        renderer = DemoHeadRenderer(splat_grid=splat_grid)
        albedo = renderer.albedo(sample_identity(rng))[None]
        shape = torch.as_tensor(rng.normal(size=(1, renderer.head.num_shape)), dtype=torch.float32)
        return DemoIdentity(seed, renderer, albedo, shape)

    @torch.no_grad()
    def render(self, flame: FlameParams, cameras: Camera, resolution: int, batch: int = 8) -> torch.Tensor:
        """[T, 3, R, R] in [0, 1]: this person with per-frame FLAME (shape replaced by theirs)."""
        t = cameras.cam2world.shape[0]
        head = self.renderer.head
        out = []
        for s in range(0, t, batch):
            idx = torch.arange(s, min(t, s + batch))
            n = len(idx)
            f = flame[idx].to("cpu", torch.float32).replace(shape=self.shape.expand(n, -1)).padded(n_expr=head.num_expr)
            cams = Camera(cameras.cam2world[idx], cameras.intrinsics[idx])
            out.append(self.renderer.render(self.albedo.expand(n, -1, -1), f, cams, resolution))
        return torch.cat(out)


def make_demo_identity_dataset(out: str | Path, resolution: int = 64, seed: int = 0) -> Path:
    """Write `out` (dataset folder): the four `DEMO_VIEWS` of demo identity `seed`, each with its
    own mild expression; records' source "demo-identity:<seed>:<view>", header
    extra {"demo_identity_seed": seed}. Indices 0-2 are for inversion, 3 is a held-out view."""
    from agora_core.data.synthetic import sample_flame

    if resolution < 16:
        raise AgoraError(f"--resolution {resolution}: at least 16")
    out = Path(out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    grid = splat_grid_for(resolution)
    person = DemoIdentity.from_seed(seed, grid)
    head = person.renderer.head
    n = len(DEMO_VIEWS)
    flame = sample_flame(np.random.default_rng([DEMO_IDENTITY_STREAM, seed, 1]), n, head.num_shape, head.num_expr)
    flame.expression.mul_(0.5)  # mild expressions: the identity should be recognisable in every view
    flame.neck.zero_()
    flame.shape[:] = person.shape
    yaw, pitch = (torch.tensor(v, dtype=torch.float64) for v in zip(*DEMO_VIEWS))
    cameras = orbit_cameras(yaw, pitch, radius=FLAME_CAMERA_RADIUS, target=(0.0, 0.0, 0.0))
    images = person.render(flame, cameras, resolution)
    files = [f"images/{i:08d}.png" for i in range(n)]
    for i, img in enumerate(images):
        rgb = (img.permute(1, 2, 0).numpy() * 255 + 0.5).clip(0, 255).astype(np.uint8)
        tmp = out / f"images/{i:08d}.tmp.png"
        cv2.imwrite(str(tmp), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        tmp.replace(out / files[i])
    labels = cameras.to_label().numpy()
    records = [DatasetRecord(files[i], labels[i], flame.row_arrays(i), source=f"{SOURCE_PREFIX}:{seed}:{i}") for i in range(n)]
    header = DatasetHeader(head_model=head.model_id, resolution=resolution, source="synthetic",
                           extra={"demo_identity_seed": int(seed), "splat_grid": grid, "views": [list(v) for v in DEMO_VIEWS],
                                  "camera_radius": FLAME_CAMERA_RADIUS, "held_out_index": n - 1})
    write_dataset_index(out, header, records)
    return out


def demo_identity_from_dataset(root: str | Path) -> DemoIdentity:
    """The person of a demo-identity dataset folder (for ground-truth renders)."""
    index = read_dataset_index(root)
    seed = index.header.extra.get("demo_identity_seed")
    if seed is None:
        raise AgoraError(f"{Path(root) / 'dataset.json'}: not a demo-identity dataset (no demo_identity_seed); "
                         "--ground-truth needs one written by `agora invert-demo-data`")
    return DemoIdentity.from_seed(int(seed), int(index.header.extra.get("splat_grid", SPLAT_GRID)))
