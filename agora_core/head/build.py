"""Building the head a generator runs on from its config, and the checks that the head fits.

`build_head(HeadConfig)`: the demo head or the user's FLAME files (SMIRK's eyelids if given), with the
mouth interior. Weights fit exactly one head id (`check_head_model`); a dataset's FLAME parameters fit
every head with the same parameters (`head_ids_match`, `check_head_matches`). Training, inference
and every stage that reads a checkpoint, an avatar or a dataset use these.
"""

from __future__ import annotations

import warnings
from pathlib import Path

from agora_core.assets import require_asset, resolve_asset
from agora_core.errors import AgoraError, AgoraWarning
from agora_core.head.assets import RELEASE_HEAD_PREFIX
from agora_core.head.config import HeadConfig
from agora_core.head.flame_io import flame_assets_from_pickle
from agora_core.head.model import HeadModel
from agora_core.head.mouth import add_mouth_interior


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


def with_flame_files(config: HeadConfig, flame_pkl: str | None = None, flame_uv: str | None = None,
                     flame_eyelids: str | None = None) -> HeadConfig:
    """`config` with the --flame/--flame-uv/--flame-eyelids files put in place of its stored paths (FLAME
    files make the head a FLAME head); unchanged when none is given."""
    import dataclasses

    if flame_pkl or flame_uv:
        config = dataclasses.replace(config, source="flame", flame_pkl=flame_pkl or config.flame_pkl,
                                     flame_uv=flame_uv or config.flame_uv)
    if flame_eyelids:
        config = dataclasses.replace(config, flame_eyelids=flame_eyelids)
    return config
