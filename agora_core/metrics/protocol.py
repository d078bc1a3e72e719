"""What is generated for each metric (appendix 0.B.2.1, following Next3D; the authors' evaluation scripts).

- FID/KID: `fid_images` renders (paper 50 k), z ~ N(0, I), ψ = 1, camera and FLAME of random
  dataset items (sampled jointly, as in training); real statistics over the dataset's images.
- AED/APD/ASD: `identities` identities (paper 500) × `pairs_per_identity` (paper 20) random
  {expression, pose} pairs: each identity has its own z and the FLAME shape of a random dataset
  item; each pair takes the camera and FLAME (expression, jaw, eyelids, neck, eyes) of another
  random dataset item; ψ = 0.7.
- ID: `id_pairs` identities (paper 1000), each rendered twice with the camera + FLAME of two
  random dataset items (shape forced equal); ψ = 0.7.
- SWD: `swd_images` real images vs renders of the same dataset items' camera + FLAME, ψ = 1
  (the training stage's `swd_reference`).

For ID and AED the identity branch is run once per identity with a fixed conditioning camera --
the checkpoint's frontal dataset camera, standing in for the authors' median FFHQ camera -- so
the identity does not change with the render camera; noise is constant ("const") for these.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable, Iterator

import torch
from torch import Tensor

from agora_core.head import FlameParams
from agora_core.render import Camera, rasterize
from agora_core.data.conditions import ConditionSampler


@dataclass(frozen=True)
class ProtocolConfig:
    """Sample counts, truncation and seeds; the defaults are the paper's protocol."""

    fid_images: int = 50_000  # generated images for FID/KID (paper: 50 k)
    fid_real_images: int = 0  # real images for FID/KID statistics (0 = the whole dataset, as the authors)
    identities: int = 500  # AED/APD: identities (paper 500)
    pairs_per_identity: int = 20  # AED/APD: {expression, pose} pairs per identity (paper 20)
    id_pairs: int = 1000  # ID: same-identity image pairs (paper 1000)
    swd_images: int = 1000  # SWD: real and generated images
    truncation_fid: float = 1.0  # ψ for FID/KID/SWD (authors: 1)
    truncation_animation: float = 0.7  # ψ for ID and AED/APD (authors: 0.7)
    seed: int = 0  # seeds every draw (z, dataset items, noise, KID subsets, SWD patches)
    batch: int = 16  # images rendered per generator call

    def as_dict(self) -> dict:
        return asdict(self)


# --quick: a CPU-sized subset of the protocol (same procedure, far fewer samples)
QUICK_PROTOCOL = ProtocolConfig(fid_images=256, fid_real_images=256, identities=10, pairs_per_identity=5,
                                id_pairs=32, swd_images=64)


@dataclass
class AnimationSamples:
    """I identities × K frames each: z [I, Z], shape [I, S]; per frame camera labels [I, K, 25] and
    FLAME parameters of I·K heads (identity-major) with the identity's shape."""

    z: Tensor
    shape: Tensor
    cameras: Tensor
    flame: FlameParams

    @property
    def identities(self) -> int:
        return self.z.shape[0]

    @property
    def frames(self) -> int:
        return self.cameras.shape[1]

    def frame_slice(self, i0: int, i1: int) -> tuple[Tensor, FlameParams]:
        """Identities i0..i1-1, flattened: cameras [n·K, 25], FLAME of n·K heads."""
        k = self.frames
        return self.cameras[i0:i1].reshape(-1, 25), self.flame[i0 * k:i1 * k]


def animation_samples(conditions: ConditionSampler, identities: int, frames: int, z_dim: int, seed: int
                      ) -> AnimationSamples:
    """Identities with their own z and the shape of a random dataset item, each seen in `frames`
    (camera, FLAME) of random dataset items (see module docstring). Deterministic in `seed`."""
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(identities, z_dim, generator=gen)
    _, id_flame = conditions.take(torch.randint(0, len(conditions), (identities,), generator=gen))
    cams, flame = conditions.take(torch.randint(0, len(conditions), (identities * frames,), generator=gen))
    shape = id_flame.shape
    flame = flame.replace(shape=shape.repeat_interleave(frames, dim=0))
    return AnimationSamples(z, shape, cams.reshape(identities, frames, 25), flame)


@torch.no_grad()
def render_animation(G, samples: AnimationSamples, conditioning_camera: Tensor, resolution: int, truncation: float,
                     batch: int = 16) -> Iterator[tuple[int, int, Tensor]]:
    """Render the samples identity chunk by identity chunk (each identity branch run once).

    Yields (i0, i1, images [(i1 − i0)·K, 3, R, R] in [0, 1]) for identities i0..i1-1, frames in
    order; the identity is mapped with the label `conditioning_camera` [c_dim] (the model's framing),
    rendered with each frame's camera."""
    device = next(G.parameters()).device
    k = samples.frames
    per_chunk = max(1, batch // k)
    for i0 in range(0, samples.identities, per_chunk):
        i1 = min(samples.identities, i0 + per_chunk)
        n = i1 - i0
        c_map = conditioning_camera.reshape(1, -1).expand(n, -1).to(device)
        cache = G.identity(samples.z[i0:i1].to(device), c_map, samples.shape[i0:i1].to(device), truncation,
                           noise_mode="const")
        cache = cache.map(lambda t: t.repeat_interleave(k, dim=0))
        cams, flame = samples.frame_slice(i0, i1)
        out = G.animate(cache, flame.to(device), noise_mode="const")
        rgb, _ = rasterize(out.gaussians, Camera.from_label(cams.to(device)), resolution, resolution, background=1.0)
        yield i0, i1, rgb.clamp(0, 1).cpu()


@torch.no_grad()
def render_random_conditions(G, conditions: ConditionSampler, n: int, resolution: int, truncation: float, seed: int,
                             batch: int = 16, on_batch: Callable[[int], None] | None = None) -> Iterator[Tensor]:
    """`n` renders (batches [B, 3, R, R] in [0, 1]) with z ~ N(0, I) and the camera + FLAME of
    random dataset items -- the FID/KID fakes. Seeded: z, items and noise come from `seed`."""
    from agora_core.inference import render_generator

    device = next(G.parameters()).device
    gen = torch.Generator().manual_seed(seed)
    idx = torch.randint(0, len(conditions), (n,), generator=gen)
    z = torch.randn(n, G.config.z_dim, generator=gen)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        for i in range(0, n, batch):
            c, flame = conditions.take(idx[i : i + batch], device)
            images = render_generator(G, z[i : i + batch].to(device), c, flame, resolution, truncation, chunk=batch)
            if on_batch is not None:
                on_batch(images.shape[0])
            yield images.cpu()


__all__ = ["QUICK_PROTOCOL", "AnimationSamples", "ProtocolConfig", "animation_samples", "render_animation",
           "render_random_conditions"]
