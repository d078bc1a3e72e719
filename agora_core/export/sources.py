"""What an export starts from: a training checkpoint + a seed, or an inverted avatar file.

Both give an `AvatarSource`: the generator (for ONNX), the avatar's `IdentityCache` (identity branch
run once), its neutral Gaussians 𝒜(w, β, ψ0, θ0) and its w (= ws[:, 0], the coefficient MLP's input,
as `BlendshapeAvatar.from_generator` takes it).

- Checkpoint (`agora train`): G_ema, with the identity `agora sample CKPT --seed N --n 1` draws
  (z ~ N(0, I) and β ~ N(shape_mean, shape_std²) from `torch.Generator().manual_seed(N)`, the
  checkpoint's frontal sampling camera, truncation ψ).
- Avatar file (`agora invert`, format in agora_core/invert/avatar_file.py): the tuned generator,
  its pivot w (used by every synthesis layer) and the person's β, loaded as `agora reenact` does.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from agora_core.errors import AgoraError
from agora_core.gaussians import GaussianSet
from agora_core.models.agora_generator import AgoraGenerator, IdentityCache

AVATAR_FORMAT = "agora-avatar"
TRAIN_FORMAT = "agora-train-checkpoint"


@dataclass
class AvatarSource:
    generator: AgoraGenerator  # eval mode, no grad
    cache: IdentityCache  # batch 1
    neutral: GaussianSet  # batch 1
    w: torch.Tensor  # [w_dim]
    description: str  # provenance for manifests / metadata


def _peek_format(path: Path) -> str:
    from agora_core.torch_files import read_torch_file

    state = read_torch_file(path, "agora checkpoint or avatar", "pass RUN/checkpoints/kimg*.pt (with --seed) or "
                            "the avatar.pt of agora invert", mmap=True)
    return state.get("format", "") if isinstance(state, dict) else ""


@torch.no_grad()
def neutral_of(generator: AgoraGenerator, cache: IdentityCache) -> GaussianSet:
    """𝒜(w, β, ψ0 = 0, θ0 = 0): the full model's neutral Gaussians (constant noise)."""
    zeros = lambda n: torch.zeros(1, n)  # noqa: E731
    return generator.animate(cache, zeros(generator.head.num_expr), zeros(3), zeros(2), noise_mode="const").gaussians


@torch.no_grad()
def load_avatar_source(path: str | Path, seed: int | None = None, truncation: float = 0.7) -> AvatarSource:
    """An `AvatarSource` from a checkpoint (needs `seed`) or an avatar file (see module docstring)."""
    from agora_core.train.checkpoint import resolve_checkpoint_path

    path = resolve_checkpoint_path(path, "a folder without checkpoints; pass a checkpoint .pt or an avatar .pt",
                                   "file not found; pass a training checkpoint (with --seed) or an avatar.pt")
    fmt = _peek_format(path)
    if fmt == TRAIN_FORMAT:
        if seed is None:
            raise AgoraError(f"{path} is a training checkpoint: add --seed N to choose the avatar (as agora sample --seed N)")
        return _from_checkpoint(path, seed, truncation)
    if fmt == AVATAR_FORMAT:
        return _from_avatar(path)
    raise AgoraError(f"{path}: format {fmt!r} is neither a training checkpoint nor an avatar; "
                     f"pass RUN/checkpoints/kimg*.pt (with --seed) or the avatar.pt of agora invert")


def _from_checkpoint(path: Path, seed: int, truncation: float) -> AvatarSource:
    from agora_core.train.sample import load_generator

    if not 0.0 <= truncation <= 1.0:
        raise AgoraError(f"--truncation {truncation}: expected a value in [0, 1]")
    generator, state = load_generator(path)
    sampling = state.get("sampling")
    if not sampling:
        raise AgoraError(f"{path}: no 'sampling' entry (camera, shape statistics); re-save it with this agora's train")
    gen = torch.Generator().manual_seed(seed)  # the draws of `agora sample --seed N`, first avatar
    z = torch.randn(1, generator.config.z_dim, generator=gen)
    mean, std = sampling["shape_mean"].float(), sampling["shape_std"].float()
    shape = mean + std * torch.randn(1, mean.shape[0], generator=gen)
    c = sampling["camera"].float().reshape(1, 25)
    cache = generator.identity(z, c, shape, truncation, noise_mode="const")
    return AvatarSource(generator, cache, neutral_of(generator, cache), cache.ws[0, 0],
                        f"{path} seed {seed} truncation {truncation}")


def _from_avatar(path: Path) -> AvatarSource:
    """The tuned generator of an `agora invert` avatar file, its pivot w for every layer and its β."""
    from agora_core.invert.avatar_file import AvatarFile, build_avatar_generator
    from agora_core.invert.pti import broadcast_w

    avatar = AvatarFile.load(path)
    generator = build_avatar_generator(avatar, path)
    ws = broadcast_w(avatar.w.float(), generator.num_ws)
    cache = generator.identity(None, None, avatar.shape.float(), ws=ws, noise_mode="const")
    return AvatarSource(generator, cache, neutral_of(generator, cache), ws[0, 0], str(path))
