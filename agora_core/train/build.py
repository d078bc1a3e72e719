"""Building what training works on: the head model, G, D, the optimisers, the cue renderer.

Shared by the loop, `agora train --dry-run` and `agora sample`, so all three build the same models
from the same config.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import Tensor

from agora_core.assets import require_asset, resolve_asset
from agora_core.errors import AgoraError, AgoraWarning
from agora_core.head import HeadModel, UVSamples, add_mouth_interior, flame_assets_from_pickle
from agora_core.head.assets import RELEASE_HEAD_PREFIX
from agora_core.models.agora_discriminator import AgoraDiscriminator
from agora_core.models.agora_generator import AgoraGenerator
from agora_core.models.dual_discrimination import dual_discrimination_cue
from agora_core.render import Camera
from agora_core.train.config import HeadConfig, OptimConfig, TrainConfig


def build_head(config: HeadConfig) -> HeadModel:
    """The demo head or the user's FLAME (pkl + UV obj, SMIRK's eyelids if given), with the mouth
    interior if asked."""
    if config.source == "demo":
        from agora_core.head.demo_head import build_demo_head

        assets = build_demo_head()
    else:  # explicit paths, else the environment / assets.yaml (agora_core.assets)
        pkl = require_asset("flame_pkl", config.flame_pkl or None)
        uv = require_asset("flame_uv_obj", config.flame_uv or None)
        assets = flame_assets_from_pickle(pkl, uv, eyelids_path=flame_eyelids_path(config))
    if config.mouth_interior:
        try:
            assets = add_mouth_interior(assets)
        except AgoraError as err:  # the mesh has no mouth opening to attach the cavity to
            if config.source == "demo":
                raise
            raise AgoraError(f"{pkl}: cannot add the mouth interior ({err}); use FLAME 2020's generic_model.pkl "
                             "or train with --set head.mouth_interior=false") from None
    return HeadModel(assets)


NO_EYELIDS = "none"  # head.flame_eyelids: built without SMIRK's eyelid blendshapes, on purpose


def pin_head_paths(config: HeadConfig) -> HeadConfig:
    """`config` with the FLAME files it resolves to right now written in, as absolute paths.

    A run stores this in its config and checkpoints, so later stages (sample, export, resume from
    another directory or shell) rebuild the same head whatever the environment says by then; eyelids
    that were not configured become "none" (no later AGORA_FLAME_EYELIDS changes the head).
    """
    import dataclasses

    if config.source != "flame":
        return config
    pkl = require_asset("flame_pkl", config.flame_pkl or None).resolve()
    uv = require_asset("flame_uv_obj", config.flame_uv or None).resolve()
    eyelids = flame_eyelids_path(config)  # warns (once, here) when none are configured
    return dataclasses.replace(config, flame_pkl=str(pkl), flame_uv=str(uv),
                               flame_eyelids=str(eyelids.resolve()) if eyelids is not None else NO_EYELIDS)


def flame_eyelids_path(config: HeadConfig) -> Path | None:
    """SMIRK's eyelid blendshapes for a FLAME head: the configured path (`AgoraError` when it does not
    exist), else None with an `AgoraWarning` (FLAME itself has no eyelid blendshapes)."""
    if config.flame_eyelids == NO_EYELIDS:
        return None
    found = resolve_asset("flame_eyelids", config.flame_eyelids or None)
    if found.path is not None:
        return found.existing()
    spec = found.spec
    warnings.warn(f"no {spec.title}: eyelid parameters will not move the FLAME mesh; pass {spec.flag} "
                  f"or set {spec.env} (get them from {spec.obtain})", AgoraWarning, stacklevel=3)
    return None


FLAME_FILE_PREFIX = "flame-"  # model ids of heads loaded from a FLAME pickle: "flame-<sha1 of the file>"
SMIRK_FLAME_ID = "flame2020"  # what prep-data writes: SMIRK estimates FLAME 2020 parameters


def head_ids_match(dataset_head_model: str, head_model: str) -> bool:
    """Whether FLAME parameters labelled `dataset_head_model` drive a head with id `head_model`.

    The mouth interior adds no parameters and every dataset carries SMIRK's eyelid parameters
    ("+mouth", "+eyelids" are ignored). Datasets made by `prep-data` say "flame2020" (SMIRK's
    parameter space); they belong to any head loaded from a FLAME pickle, whose id is the file's
    hash (agora cannot tell FLAME 2020 from another FLAME release by its arrays alone; the README
    tells users to pass FLAME 2020, the model SMIRK was trained with).
    """
    base = lambda s: s.removesuffix("+mouth").removesuffix("+eyelids")  # noqa: E731
    data, head = base(dataset_head_model), base(head_model)
    if data in ("", "unknown") or data == head:
        return True
    return data == SMIRK_FLAME_ID and head.startswith((FLAME_FILE_PREFIX, RELEASE_HEAD_PREFIX))  # the authors' is SMIRK's FLAME


def check_head_matches(dataset_head_model: str, head: HeadModel | str, dataset_root: str | Path, *,
                       head_is: str = "the config builds", fix: str = "; set head.* to match") -> None:
    """The dataset's FLAME parameters must belong to the head G is built on (`head_ids_match`).

    `head`: the head or its model id; `head_is`, `fix`: how the error names that head and the way out
    (training: the config's head; inversion and AGORA-M: the checkpoint's)."""
    model_id = head if isinstance(head, str) else head.model_id
    if not head_ids_match(dataset_head_model, model_id):
        raise AgoraError(f"{Path(dataset_root) / 'dataset.json'}: FLAME parameters of head model "
                         f"'{dataset_head_model}', but {head_is} '{model_id}'{fix}")


def check_head_model(head: HeadModel, expected: str, where: str | Path) -> None:
    """The head built from a stored config must be the one the file (checkpoint, avatar) was made with."""
    if expected and head.model_id != expected:
        raise AgoraError(f"{where}: made with head model '{expected}', but its config builds "
                         f"'{head.model_id}'; pass the matching --flame/--flame-uv/--flame-eyelids files")


def load_generator_weights(generator: AgoraGenerator, weights, where: str | Path) -> None:
    """`load_state_dict` (strict) with a mismatch reported as an `AgoraError` naming `where`."""
    if not isinstance(weights, dict):
        raise AgoraError(f"{where}: holds no generator weights")
    try:
        generator.load_state_dict(weights)
    except (RuntimeError, TypeError, KeyError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise AgoraError(f"{where}: generator weights do not match its stored config ({first[:160]})") from None


def build_models(config: TrainConfig, head: HeadModel) -> tuple[AgoraGenerator, AgoraDiscriminator]:
    """G and D of `config` (weights from the current torch RNG)."""
    return AgoraGenerator(config.generator, head), AgoraDiscriminator(config.discriminator, config.resolution)


def build_optimizers(config: OptimConfig, r1_interval: int, G: torch.nn.Module, D: torch.nn.Module
                     ) -> tuple[torch.optim.Adam, torch.optim.Adam]:
    """Adam for G and D; D's lr and betas adjusted for lazy R1 (StyleGAN2 appendix: with the
    penalty every k steps, lr·k/(k+1) and β^(k/(k+1)) keep the effective step the same)."""
    ratio = r1_interval / (r1_interval + 1)
    opt_g = torch.optim.Adam(G.parameters(), lr=config.lr_g, betas=config.betas, eps=config.eps)
    opt_d = torch.optim.Adam(D.parameters(), lr=config.lr_d * ratio,
                             betas=(config.betas[0] ** ratio, config.betas[1] ** ratio), eps=config.eps)
    return opt_g, opt_d


def parameter_counts(G: AgoraGenerator, D: torch.nn.Module) -> dict[str, int]:
    """Identity branch, deformation branch, D parameter counts and the number of Gaussians."""
    counts = G.parameter_counts()
    return {"identity_branch": counts["identity_branch"], "deformation_branch": counts["deformation_branch"],
            "generator_total": counts["total"], "discriminator": sum(p.numel() for p in D.parameters()),
            "gaussians": G.num_gaussians}


class CueRenderer:
    """The dual-discrimination cue S(ψ) (sec. 3.6) for a batch, or None when D takes no cue.

    The mesh is splatted at the generator's UV samples (`AgoraGenerator.samples`)."""

    def __init__(self, head: HeadModel, samples: UVSamples, config: TrainConfig):
        self.head, self.samples, self.resolution = head, samples, config.resolution
        self.config = config.discriminator

    @torch.no_grad()
    def __call__(self, flame: dict[str, Tensor], camera: Tensor, enabled: bool = True) -> Tensor | None:
        """flame (dataset keys, [B, D]), camera labels [B, 25] -> cue [B, 3, R, R] | None.

        `enabled` False gives zeros (the cue is switched on after `start_dual_kimg`)."""
        if self.config.cue in ("none", "projection"):
            return None
        b, r = camera.shape[0], self.resolution
        if not enabled:
            return camera.new_zeros(b, 3, r, r)
        return dual_discrimination_cue(self.head, flame, Camera.from_label(camera), r, self.config.cue, self.samples,
                                       self.config.cue_displacement_scale, self.config.cue_include_jaw)
