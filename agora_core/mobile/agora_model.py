"""The AGORA model AGORA-M is distilled from: any model source `inference.load_model` reads (a
training checkpoint or run folder, a model folder, an imported run), or a random one of a config
(`inference.random_model`).

`load_agora_model` is what `agora extract-basis`, `agora fit-mlp` and `agora bench` start from. It adds
AGORA-M's choices to the loaded model: optionally another UV sample grid (`--gaussians`; the grid only
sets where the planes are sampled, the weights do not depend on it), and where tuple conditions come
from (`tuples.IdentityPrior`, an optional dataset pool whose cameras become the model's mapping labels).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch

from agora_core.errors import AgoraError
from agora_core.head import HeadModel, back_head_faces, sample_uv_grid
from agora_core.inference import InferenceModel
from agora_core.mobile.tuples import ConditionPool, IdentityPrior
from agora_core.models.agora_generator import AgoraGenerator, head_assets_view


@dataclass
class AgoraModel:
    model: InferenceModel  # the loaded generator (eval mode, no grad) and its source
    prior: IdentityPrior  # identities without a dataset
    pool: ConditionPool | None  # (mapping label, FLAME) rows of a dataset, if one was given

    @property
    def generator(self) -> AgoraGenerator:
        return self.model.generator

    @property
    def source(self) -> str:
        """The checkpoint path, model folder or imported run, or "random-init (<config>)"."""
        return self.model.source

    @property
    def resolution(self) -> int:
        return self.model.resolution

    @property
    def random_init(self) -> bool:
        return self.model.kind == "random-init"

    @property
    def imported(self) -> InferenceModel | None:
        """The model when it is framed by the authors' DECA cameras (an imported run), else None."""
        return self.model if self.model.camera_convention == "deca" else None


def gaussian_count(head: HeadModel, grid: int) -> int:
    """Gaussians an N×N UV sample grid gives on `head` (back of the head excluded, as G does)."""
    keep = ~torch.as_tensor(back_head_faces(head_assets_view(head)))
    return sample_uv_grid(head.uv_coords, head.uv_faces, grid, face_mask=keep).num_samples


def grid_for_gaussians(head: HeadModel, target: int) -> int:
    """The UV sample grid N whose Gaussian count is closest to `target` (≈ coverage · N²)."""
    if target < 16:
        raise AgoraError(f"--gaussians {target}: ask for at least 16 Gaussians")
    probe = 128
    coverage = gaussian_count(head, probe) / probe**2
    guess = max(4, round(math.sqrt(target / max(coverage, 1e-6))))
    best = min((abs(gaussian_count(head, g) - target), g) for g in (guess - 1, guess, guess + 1) if g >= 4)
    return best[1]


def load_agora_model(checkpoint: str | Path | None, config: str | Path | None = None, *,
                     device: str | torch.device = "cpu", dataset: str | Path | None = None,
                     gaussians: int | None = None, seed: int = 0) -> AgoraModel:
    """The model at `checkpoint` (`inference.load_model`), or (checkpoint None) a generator of `config`
    initialised from `seed`.

    Args:
        dataset: a dataset folder whose (camera, FLAME) rows condition the tuples; its FLAME parameters
            must belong to the model's head (`head.build.check_head_matches`).
        gaussians: re-sample the UV planes on the grid giving about this many Gaussians.
    """
    from agora_core.inference import load_model, random_model

    uv_grid = None if gaussians is None else (lambda head: grid_for_gaussians(head, gaussians))
    if checkpoint is None:
        model = random_model(config, seed, device, uv_grid)
    else:
        model = load_model(checkpoint, device, uv_grid=uv_grid)
    pool = None
    if dataset is not None:
        pool = ConditionPool.from_dataset(dataset, model.head_model).as_mapping_labels(model.generator)
    return AgoraModel(model, identity_prior(model), pool)


def identity_prior(model: InferenceModel) -> IdentityPrior:
    """Identities without a dataset: the model's framing label and stored shape statistics (an imported
    run: its framing, the mean shape), each absent entry left to the prior's default."""
    label = None if model.framing is None else model.mapping_labels(1)[0].cpu().double().numpy()
    arr = lambda t: None if t is None else t.cpu().double().numpy()  # noqa: E731
    return IdentityPrior(label, arr(model.shape_mean), arr(model.shape_std))
