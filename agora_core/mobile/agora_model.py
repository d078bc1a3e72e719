"""The AGORA model AGORA-M is distilled from: a checkpoint's G_ema, or a random one of a config.

`load_agora_model` is what `agora extract-basis`, `agora fit-mlp` and `agora bench` start from. It
rebuilds the generator from the checkpoint's stored config (through `head.build.build_head`,
so the head matches training), optionally on another UV sample grid (the grid only
sets where the planes are sampled; the weights do not depend on it), and says where tuple
conditions come from (`tuples.IdentityPrior`, an optional dataset pool).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path

import torch

from agora_core.errors import AgoraError
from agora_core.head import HeadModel, back_head_faces, sample_uv_grid
from agora_core.mobile.tuples import ConditionPool, IdentityPrior
from agora_core.models.agora_generator import AgoraGenerator, head_assets_view

RANDOM_INIT = "random-init"


@dataclass
class AgoraModel:
    generator: AgoraGenerator  # eval mode, no grad
    source: str  # the checkpoint path, or "random-init (<config>)"
    prior: IdentityPrior  # identities without a dataset
    pool: ConditionPool | None  # (camera, FLAME) rows of a dataset, if one was given
    resolution: int  # the training render resolution
    imported: object | None = None  # the `inference.InferenceModel` of an imported run (its cameras), else None

    @property
    def random_init(self) -> bool:
        return self.source.startswith(RANDOM_INIT)


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
    """G_ema of `checkpoint`, or (checkpoint None) a generator of `config` initialised from `seed`.

    Args:
        dataset: a dataset folder whose (camera, FLAME) rows condition the tuples.
        gaussians: re-sample the UV planes on the grid giving about this many Gaussians.
    """
    from agora_core.head.build import build_head, check_head_model
    from agora_core.inference.checkpoint import load_checkpoint, load_generator_weights
    from agora_core.run_config import config_from_dict, load_config

    from agora_core.inference import is_imported_run

    if is_imported_run(checkpoint):
        return _imported_model(Path(checkpoint), device, dataset, gaussians)
    state = None
    if checkpoint is not None:
        state = load_checkpoint(checkpoint)
        train_config = config_from_dict(state["config"], source=f"{checkpoint} (stored config)")
        source = str(checkpoint)
    else:
        train_config = load_config(config)
        source = f"{RANDOM_INIT} ({config or 'default config'})"
    head = build_head(train_config.head)
    if state is not None:
        check_head_model(head, str(state.get("head_model", "")), checkpoint)
    gen_config = train_config.generator
    if gaussians is not None:
        gen_config = dataclasses.replace(gen_config, gaussian_grid=grid_for_gaussians(head, gaussians))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        generator = AgoraGenerator(gen_config, head)
    if state is not None:
        load_generator_weights(generator, state.get("G_ema") or state.get("G"), checkpoint)
    generator = generator.to(device).eval().requires_grad_(False)
    prior = IdentityPrior.from_checkpoint(state) if state is not None else IdentityPrior()
    pool = ConditionPool.from_dataset(dataset, head.model_id) if dataset is not None else None
    return AgoraModel(generator, source, prior, pool, train_config.resolution)


def _imported_model(run: Path, device, dataset, gaussians) -> AgoraModel:
    """An imported run (agora import) as AgoraModel: identities at its framing's mapping label with the
    mean shape (the file holds no shape statistics), expressions from the synthetic prior."""
    import numpy as np

    from agora_core.inference import load_model

    if gaussians is not None:
        raise AgoraError(f"--gaussians: {run} is an imported run, whose Gaussians sit on the file's own UV grid")
    if dataset is not None:
        raise AgoraError(f"--dataset: {run} is an imported run (DECA cameras); datasets hold EG3D cameras")
    model = load_model(run, device)
    zeros = np.zeros(model.generator.head.num_shape)
    prior = IdentityPrior(model.mapping_labels(1)[0].cpu().double().numpy(), zeros, zeros.copy())
    return AgoraModel(model.generator, str(run), prior, None, model.resolution, imported=model)
