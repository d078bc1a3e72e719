"""Reading training checkpoints: `RUN/checkpoints/kimgNNNNNN[.NNN].pt`, tensors and plain types only.

A checkpoint is a dict (docs/architecture.md):
  format, format_version, G, G_ema, D (state_dicts), opt_G, opt_D (optimizer state_dicts), step,
  nimg, kimg, rng (per rank: cpu / cuda / conditions generator states as uint8 tensors),
  world_size, config (the resolved TrainConfig as a plain dict), head_model (model id).
It loads with `torch.load(path, weights_only=True)`: no pickled modules or classes. Training writes
them (`train.checkpoint.save_checkpoint`); every stage reads them here, so no stage that only uses a
model imports the training package.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import torch

from agora_core.errors import AgoraError, AgoraWarning, check_finite
from agora_core.models.agora_generator import AgoraGenerator
from agora_core.torch_files import read_torch_file

FORMAT_NAME = "agora-train-checkpoint"
FORMAT_VERSION = 1
CHECKPOINT_DIR = "checkpoints"
_NAME = re.compile(r"^kimg(\d{6})(?:\.(\d{3}))?\.pt$")
# types of the entries readers rely on (`config` is required); state dicts and `sampling` hold tensors
_ENTRY_TYPES = {"config": dict, "G": dict, "G_ema": dict, "D": dict, "opt_G": dict, "opt_D": dict, "sampling": dict,
                "head_model": str}
_TENSOR_DICTS = ("G", "G_ema", "D", "sampling")


def checkpoint_name(nimg: int) -> str:
    """File name for a checkpoint after `nimg` images: kimg000012.pt, or kimg000012.500.pt."""
    whole, frac = divmod(int(nimg), 1000)
    return f"kimg{whole:06d}.pt" if frac == 0 else f"kimg{whole:06d}.{frac:03d}.pt"


def _nimg_of(path: Path) -> int | None:
    m = _NAME.match(path.name)
    return None if m is None else int(m.group(1)) * 1000 + int(m.group(2) or 0)


def list_checkpoints(run_dir: str | Path) -> list[Path]:
    """Checkpoints of a run, oldest first (by the image count in their names)."""
    folder = Path(run_dir) / CHECKPOINT_DIR
    if not folder.is_dir():
        return []
    found = [(n, p) for p in folder.iterdir() if (n := _nimg_of(p)) is not None]
    return [p for _, p in sorted(found)]


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    """The newest checkpoint of `run_dir`, or None."""
    found = list_checkpoints(run_dir)
    return found[-1] if found else None


def resolve_checkpoint_path(path: str | Path, no_checkpoints: str, not_found: str) -> Path:
    """A file path, or a run folder's newest checkpoint; AgoraError "PATH: <reason>" otherwise."""
    path = Path(path)
    from agora_core.inference import is_imported_run

    if is_imported_run(path):
        raise AgoraError(f"{path}: an imported run (agora import); this command reads training checkpoints of "
                         "agora train only")
    if path.is_dir():
        found = latest_checkpoint(path)
        if found is None:
            raise AgoraError(f"{path}: {no_checkpoints}")
        path = found
    if not path.is_file():
        raise AgoraError(f"{path}: {not_found}")
    return path


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """Read a checkpoint written by `save_checkpoint` (weights_only: no code is unpickled), or what a
    model folder of `agora export model` holds for inference (`inference.model_folder`)."""
    from agora_core.inference.model_folder import is_model_folder, read_model_folder

    if is_model_folder(path):
        return read_model_folder(path)
    path = resolve_checkpoint_path(path, f"no checkpoints in {Path(path) / CHECKPOINT_DIR}", "checkpoint not found")
    state = read_torch_file(path, "agora checkpoint", "pass a kimg*.pt written by `agora train`", map_location)
    if not isinstance(state, dict) or not _is(state.get("format"), str, FORMAT_NAME):
        raise AgoraError(f"{path}: not an agora training checkpoint")
    if not _is(state.get("format_version"), int, FORMAT_VERSION):
        raise AgoraError(f"{path}: checkpoint format_version {state.get('format_version')!r} not supported "
                         f"(this agora reads {FORMAT_VERSION})")
    _check_entries(state, path)
    check_finite(state, path, "checkpoint entry")
    if "G_ema" not in state and "G" in state:
        warnings.warn(AgoraWarning(f"{path}: the checkpoint has no G_ema; the raw generator G is used instead"),
                      stacklevel=2)
        state["G_ema"] = state["G"]
    return state


def _is(value: object, kind: type, expected: object) -> bool:
    return type(value) is kind and value == expected


def _check_entries(state: dict, path: Path) -> None:
    """One line naming the entry when the checkpoint's structure is not what `save_checkpoint` writes."""
    if "config" not in state:
        raise AgoraError(f"{path}: checkpoint has no stored config; it is not from `agora train`")
    for key, kind in _ENTRY_TYPES.items():
        if key in state and not isinstance(state[key], kind):
            raise AgoraError(f"{path}: checkpoint entry '{key}' is a {type(state[key]).__name__}, expected a "
                             f"{kind.__name__}; the file is damaged")
    for key in _TENSOR_DICTS:
        bad = next((k for k, v in state.get(key, {}).items() if not isinstance(v, torch.Tensor)), None)
        if bad is not None:
            raise AgoraError(f"{path}: checkpoint entry '{key}.{bad}' is not a tensor; the file is damaged")


def load_generator_weights(generator: AgoraGenerator, weights, where: str | Path) -> None:
    """`load_state_dict` (strict) with a mismatch reported as an `AgoraError` naming `where`."""
    if not isinstance(weights, dict):
        raise AgoraError(f"{where}: holds no generator weights")
    try:
        generator.load_state_dict(weights)
    except (RuntimeError, TypeError, KeyError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise AgoraError(f"{where}: generator weights do not match its stored config ({first[:160]})") from None
