"""What an export starts from: a training checkpoint + a seed, or an inverted avatar file.

Both give an `AvatarSource`: the generator (for ONNX), the avatar's `IdentityCache` (identity branch
run once), its neutral Gaussians 𝒜(w, β, ψ0, θ0) and its w (= ws[:, 0], the coefficient MLP's input,
as `BlendshapeAvatar.from_generator` takes it).

- Checkpoint (`agora train`) or imported run (`agora import`): the generator, with the identity
  `agora sample RUN --seed N --n 1` draws (`inference.draw_identity`).
- Avatar file (`agora invert`, format in agora_core/invert/avatar_file.py): the tuned generator,
  its pivot w (used by every synthesis layer) and the person's β, loaded as `agora reenact` does.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from agora_core.errors import AgoraError
from agora_core.gaussians import GaussianSet
from agora_core.inference import is_imported_run, is_model_folder, neutral_gaussians
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
    resolution: int  # the render size the model was trained at (pixels)


def _peek_format(path: Path) -> str:
    from agora_core.torch_files import read_torch_file

    state = read_torch_file(path, "agora checkpoint or avatar", "pass RUN/checkpoints/kimg*.pt (with --seed) or "
                            "the avatar.pt of agora invert", mmap=True)
    return state.get("format", "") if isinstance(state, dict) else ""


@torch.no_grad()
def load_avatar_source(path: str | Path, seed: int | None = None, truncation: float = 0.7) -> AvatarSource:
    """An `AvatarSource` from a checkpoint (needs `seed`) or an avatar file (see module docstring)."""
    from agora_core.inference.checkpoint import resolve_checkpoint_path

    if is_imported_run(path) or is_model_folder(path):  # agora import / agora export model
        if seed is None:
            raise AgoraError(f"{path} is a model folder: add --seed N to choose the avatar (as agora sample --seed N)")
        return _from_model(Path(path), seed, truncation)
    path = resolve_checkpoint_path(path, "a folder without checkpoints; pass a checkpoint .pt or an avatar .pt",
                                   "file not found; pass a training checkpoint (with --seed) or an avatar.pt")
    fmt = _peek_format(path)
    if fmt == TRAIN_FORMAT:
        if seed is None:
            raise AgoraError(f"{path} is a training checkpoint: add --seed N to choose the avatar (as agora sample --seed N)")
        return _from_model(path, seed, truncation)
    if fmt == AVATAR_FORMAT:
        return _from_avatar(path)
    raise AgoraError(f"{path}: format {fmt!r} is neither a training checkpoint nor an avatar; "
                     f"pass RUN/checkpoints/kimg*.pt (with --seed) or the avatar.pt of agora invert")


def _from_model(path: Path, seed: int, truncation: float) -> AvatarSource:
    from agora_core.inference import draw_identity, load_model

    model = load_model(path)
    cache, _ = draw_identity(model, seed, 1, truncation)  # the identity `agora sample --seed N` draws first
    return AvatarSource(model.generator, cache, neutral_gaussians(model.generator, cache), cache.ws[0, 0],
                        f"{path} seed {seed} truncation {truncation}", model.resolution)


def _from_avatar(path: Path) -> AvatarSource:
    """The tuned generator of an `agora invert` avatar file, its pivot w for every layer and its β."""
    from agora_core.invert.avatar_file import AvatarFile, build_avatar_generator
    from agora_core.invert.pti import broadcast_w

    avatar = AvatarFile.load(path)
    generator = build_avatar_generator(avatar, path)
    ws = broadcast_w(avatar.w.float(), generator.num_ws)
    cache = generator.identity(None, None, avatar.shape.float(), ws=ws, noise_mode="const")
    return AvatarSource(generator, cache, neutral_gaussians(generator, cache), ws[0, 0], str(path), avatar.resolution)
