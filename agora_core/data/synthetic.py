"""The synthetic demo-head dataset: random identities, expressions, jaw, neck and cameras.

`agora prep-data --synthetic N OUT` renders N images, each a new random identity of the
procedural demo head (with mouth interior) wearing a procedural appearance, from an FFHQ-like
camera, on a white background, with the exact labels written in the dataset folder format.
All randomness derives from (seed, image index), so a killed run resumes and reproduces
the same images. `OUT/synthetic.json` records the settings (head model, N, resolution, seed) before
the first image; a run into an OUT made with other settings, by photo prep-data, or holding other
files is refused before anything is written (`check_synthetic_output`).
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import torch

from agora_core.data.appearance import Identity, sample_identity, shade, vertex_albedo, vertex_normals
from agora_core.data.format import DatasetHeader, DatasetRecord, read_run_state, write_dataset_index
from agora_core.errors import AgoraError, file_error
from agora_core.gaussians import GaussianSet, rgb_to_sh0
from agora_core.gaussians.files import atomic_write
from agora_core.head import FlameParams, HeadModel, demo_head_model, interpolate, sample_uv_grid
from agora_core.render import FLAME_CAMERA_RADIUS, Camera, orbit_cameras, rasterize
from agora_core.render.images import to_uint8_hwc

FLAME_CAMERA_TARGET = (0.0, 0.0, 0.0)
EXPRESSION_STD = 0.6  # per-component std of the sampled expression coefficients
NUM_EXPRESSION_SAMPLED = 50  # like SMIRK/AGORA: 50 expression coefficients drive the avatars
SPLAT_GRID = 192  # UV grid of the surface splat that renders the mesh (dense enough for 128²)
SETTINGS_FILE = "synthetic.json"
SETTINGS_FORMAT = "agora-synthetic-data"


def demo_head_with_mouth() -> HeadModel:
    """The demo head with the mouth interior (appendix 0.B.1.1), as every stage uses it."""
    return demo_head_model(mouth_interior=True)


def sample_flame(rng: np.random.Generator, n: int, num_shape: int, num_expr: int) -> FlameParams:
    """FFHQ-like FLAME parameters (float32, drawn in float64): mostly mild expressions, a jaw that
    opens sometimes."""
    expression = np.zeros((n, num_expr))
    k = min(num_expr, NUM_EXPRESSION_SAMPLED)
    expression[:, :k] = rng.normal(scale=EXPRESSION_STD, size=(n, k))
    jaw = np.zeros((n, 3))
    opening = np.abs(rng.normal(scale=0.12, size=n)) * (rng.uniform(size=n) < 0.7)
    jaw[:, 0] = np.clip(opening, 0.0, 0.35)
    jaw[:, 1:] = rng.normal(scale=0.01, size=(n, 2))
    eyelids = rng.uniform(0.0, 0.2, size=(n, 2))
    blink = rng.uniform(size=n) < 0.05
    eyelids[blink] = rng.uniform(0.7, 1.0, size=(int(blink.sum()), 1))
    eyes = np.zeros((n, 6))
    gaze = rng.normal(scale=0.08, size=(n, 2))
    eyes[:, [0, 3]] = gaze[:, :1]  # pitch, both eyes alike
    eyes[:, [1, 4]] = gaze[:, 1:]  # yaw
    arrays = {"shape": rng.normal(size=(n, num_shape)), "expression": expression, "jaw": jaw,
              "neck": rng.normal(scale=0.05, size=(n, 3)), "eyes": eyes, "eyelids": eyelids}
    return FlameParams.from_dict(arrays)


def sample_cameras(rng: np.random.Generator, n: int) -> Camera:
    """FFHQ-like yaw/pitch spread around the head (OpenCV cameras, EG3D intrinsics)."""
    yaw = np.clip(rng.normal(scale=0.3, size=n), -0.9, 0.9)
    pitch = np.clip(rng.normal(scale=0.15, size=n), -0.5, 0.5)
    return orbit_cameras(torch.as_tensor(yaw), torch.as_tensor(pitch), radius=FLAME_CAMERA_RADIUS, target=FLAME_CAMERA_TARGET)


def synthetic_draws(head: HeadModel, n: int, seed: int) -> tuple[FlameParams, Camera, list[Identity]]:
    """The FLAME parameters, cameras and identities of images 0..n-1 of `--synthetic n --seed seed`
    (image i's identity depends on (seed, i) only; the rest on n and seed, drawn in this order)."""
    rng = np.random.default_rng(seed)
    flame = sample_flame(rng, n, head.num_shape, head.num_expr)
    cameras = sample_cameras(rng, n)
    return flame, cameras, [sample_identity(np.random.default_rng([seed, i])) for i in range(n)]


class DemoHeadRenderer:
    """Renders demo-head identities as dense surface splats with procedural appearance."""

    def __init__(self, head: HeadModel | None = None, splat_grid: int = SPLAT_GRID):
        self.head = head or demo_head_with_mouth()
        self.extras = self.head.extras
        uv_coords, uv_faces = self.head.uv_coords.numpy(), self.head.uv_faces.numpy()
        self.samples = sample_uv_grid(uv_coords, uv_faces, splat_grid)  # whole head, back included
        # isotropic splats sized to the mean spacing of the samples on the neutral surface
        v0 = self.head.neutral(1)
        tri = v0[0, self.head.faces]
        area = torch.linalg.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0], dim=-1).norm(dim=-1).sum() / 2
        self.log_scale = float(np.log(0.6 * np.sqrt(area.item() / self.samples.num_samples)))

    def vertex_albedo(self, identity: Identity) -> torch.Tensor:
        """[V, 3] albedo of an identity at the head's vertices."""
        return torch.as_tensor(vertex_albedo(self.head.v_template.numpy(), self.extras, identity), dtype=torch.float32)

    def albedo(self, identity: Identity) -> torch.Tensor:
        """[M, 3] per-sample albedo of an identity."""
        return interpolate(self.vertex_albedo(identity)[None], self.head.faces, self.samples)[0]

    @torch.no_grad()
    def gaussians(self, albedo: torch.Tensor, flame: FlameParams) -> GaussianSet:
        """Surface splat of the posed head: albedo [B, M, 3], B heads -> GaussianSet."""
        verts = self.head(flame)
        means = interpolate(verts, self.head.faces, self.samples)
        normals = torch.nn.functional.normalize(interpolate(vertex_normals(verts, self.head.faces), self.head.faces, self.samples), dim=-1)
        rgb = shade(albedo, normals)
        b, m = means.shape[:2]
        quats = torch.zeros(b, m, 4)
        quats[..., 0] = 1.0
        return GaussianSet(
            means=means,
            log_scales=torch.full((b, m, 3), self.log_scale),
            quats=quats,
            sh=rgb_to_sh0(rgb),
            opacities=torch.full((b, m), 0.98),
        )

    def render(self, albedo: torch.Tensor, flame: FlameParams, cameras: Camera, resolution: int) -> torch.Tensor:
        """[B, 3, R, R] images in [0, 1] on white."""
        rgb, _ = rasterize(self.gaussians(albedo, flame), cameras, resolution, resolution, background=1.0)
        return rgb.clamp(0, 1)


def make_synthetic_dataset(n: int, out: Path, resolution: int = 64, seed: int = 0, progress: bool = True,
                           batch_size: int = 16, threads: int = 1) -> Path:
    """Render `n` random demo-head images into the dataset folder `out` and write its index.

    Resumable: images already present (written atomically) are not rendered again.
    `threads`: torch CPU threads while rendering. One is the default because measured here, with
    one other busy process on 2 cores, 2-thread rendering ran 66x slower (16 images: 76 s vs
    1.1 s) — intra-op threads spin-wait on a core they do not get.
    Returns `out`.
    """
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(max(1, threads))
    try:
        return _make_synthetic_dataset(n, Path(out), resolution, seed, progress, batch_size)
    finally:
        torch.set_num_threads(previous_threads)


@torch.no_grad()
def _make_synthetic_dataset(n: int, out: Path, resolution: int, seed: int, progress: bool, batch_size: int) -> Path:
    if n <= 0:
        raise AgoraError(f"--synthetic {n}: the number of images must be positive")
    if resolution < 16 or resolution > 1024:
        raise AgoraError(f"--resolution {resolution}: expected 16..1024")
    out = Path(out)
    renderer = DemoHeadRenderer()
    head = renderer.head
    settings = {"format": SETTINGS_FORMAT, "format_version": 1, "head_model": head.model_id, "n": n,
                "resolution": resolution, "seed": seed}
    if not check_synthetic_output(out, settings):
        with atomic_write(out / SETTINGS_FILE) as f:
            f.write(json.dumps(settings, indent=2).encode())
    (out / "images").mkdir(parents=True, exist_ok=True)
    flame, cameras, identities = synthetic_draws(head, n, seed)
    files = [f"images/{i:08d}.png" for i in range(n)]

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    columns = [TextColumn("synthetic"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn()]
    with Progress(*columns, disable=not progress) as bar:
        task = bar.add_task("render", total=n)
        for start in range(0, n, batch_size):
            idx = list(range(start, min(n, start + batch_size)))
            todo = [i for i in idx if not (out / files[i]).exists()]
            if todo:
                albedo = torch.stack([renderer.albedo(identities[i]) for i in todo])
                images = renderer.render(albedo, flame[todo], cameras.select(torch.as_tensor(todo)), resolution)
                for j, i in enumerate(todo):
                    path = out / files[i]
                    tmp = path.with_name(path.stem + ".tmp.png")
                    cv2.imwrite(str(tmp), cv2.cvtColor(to_uint8_hwc(images[j : j + 1])[0], cv2.COLOR_RGB2BGR))
                    tmp.replace(path)
            bar.advance(task, len(idx))

    labels = cameras.to_label().numpy()
    records = [
        DatasetRecord(file=files[i], camera=labels[i], flame=flame.row_arrays(i), source=f"synthetic:{seed}:{i}")
        for i in range(n)
    ]
    header = DatasetHeader(head_model=head.model_id, resolution=resolution, source="synthetic", extra={"seed": seed, "n": n, "camera_radius": FLAME_CAMERA_RADIUS})
    write_dataset_index(out, header, records)
    _write_sample_grid(out, min(n, 16))
    return out


def check_synthetic_output(out: Path, settings: dict) -> bool:
    """True when `out` is a synthetic run with these `settings` (resume), False when it is new or
    empty; writing nothing, an `AgoraError` for anything else (a file, another run, other files)."""
    if out.exists() and not out.is_dir():
        raise file_error(out, "exists and is not a folder; choose another OUT")
    path = out / SETTINGS_FILE
    if path.is_file():
        before = read_run_state(path)
        changed = [f"{k}={before.get(k)!r} (this run: {v!r})" for k, v in settings.items() if before.get(k) != v]
        if changed:
            raise file_error(out, f"holds a synthetic dataset made with {', '.join(changed)}; pass the same "
                                  "--synthetic N, --resolution and --seed to resume, or choose another OUT")
        return True
    if (out / "dataset.json").is_file() or (out / "prep.json").is_file():
        raise file_error(out, "holds a dataset made by photo prep-data (or an older agora); choose another OUT")
    if out.is_dir() and any(out.iterdir()):
        raise file_error(out, "exists, is not empty and is not a synthetic prep-data output; choose another OUT")
    return False


def _write_sample_grid(out: Path, count: int, cols: int = 8) -> None:
    """`OUT/sample_grid.png`: the first `count` images side by side."""
    images = [cv2.imread(str(out / f"images/{i:08d}.png")) for i in range(count)]
    rows = [images[i : i + cols] for i in range(0, count, cols)]
    h, w = images[0].shape[:2]
    blank = np.full((h, w, 3), 255, np.uint8)
    grid = np.concatenate([np.concatenate(r + [blank] * (cols - len(r)), axis=1) for r in rows], axis=0)
    cv2.imwrite(str(out / "sample_grid.png"), grid)
