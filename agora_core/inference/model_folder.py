"""A model folder (`agora export model`): a trained generator as a few small files every stage reads.

    MODEL/model.json             format, version, the resolved training config, head id, kimg, the
                                 sampling statistics (framing camera, FLAME shape mean/std), the
                                 weights file's SHA-256
    MODEL/generator.safetensors  G_ema only, float32
    MODEL/log.jsonl              the training log of the run it came from (SWD curve), when there was one

`read_model_folder` returns what a training checkpoint holds for inference (`config`, `G_ema`,
`head_model`, `sampling`, `kimg`), so `train.checkpoint.load_checkpoint` hands it to every stage
unchanged; `inference.load_model` reports it as kind "model". Each file is written atomically and
model.json last (removed first when replacing a model), so an interrupted export never leaves a
folder that reads as a model; a weights file that does not match model.json's hash is refused.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors, save as save_safetensors

from agora_core.errors import AgoraError, check_finite, file_error
from agora_core.gaussians.files import atomic_write_bytes, check_output_path, read_json_manifest

FORMAT = "agora-model"
FORMAT_VERSION = 1
MANIFEST, WEIGHTS, LOG = "model.json", "generator.safetensors", "log.jsonl"
_SAMPLING = ("camera", "shape_mean", "shape_std")


def is_model_folder(path: str | Path | None) -> bool:
    """Whether `path` is a folder written by `agora export model` (it holds model.json)."""
    return path is not None and Path(path).is_dir() and (Path(path) / MANIFEST).is_file()


def export_model(source: str | Path, out: str | Path, force: bool = False) -> Path:
    """Write the model folder `out` from a training checkpoint or run folder (its newest checkpoint).

    Args:
        force: replace a model already in `out` (other files there, e.g. a README, are kept).
    """
    from agora_core.inference.checkpoint import load_checkpoint, resolve_checkpoint_path

    out = check_output_path(out, "--out", folder=True)
    if is_model_folder(out) and not force:
        raise AgoraError(f"--out {out}: already holds a model ({MANIFEST}); pass --force to replace it")
    if is_model_folder(source):
        raise AgoraError(f"{source}: already a model folder; export reads a training run or checkpoint")
    checkpoint = resolve_checkpoint_path(source, "no checkpoints in this folder; pass a run folder of agora train",
                                         "checkpoint not found")
    state = load_checkpoint(checkpoint)
    sampling = state.get("sampling")
    if not sampling or any(k not in sampling for k in _SAMPLING):
        raise AgoraError(f"{checkpoint}: no 'sampling' entry (camera, shape statistics); re-save it with this agora's train")
    weights = {k: v.detach().float().contiguous() if v.is_floating_point() else v.contiguous()
               for k, v in state["G_ema"].items()}
    blob = save_safetensors(weights, metadata={"format": FORMAT, "format_version": str(FORMAT_VERSION)})
    kimg = state.get("kimg")
    manifest = {
        "format": FORMAT, "format_version": FORMAT_VERSION,
        "source_checkpoint": checkpoint.name, "kimg": float(kimg) if kimg is not None else None,
        "head_model": str(state.get("head_model", "")), "resolution": int(state["config"]["resolution"]),
        "weights": WEIGHTS, "weights_sha256": hashlib.sha256(blob).hexdigest(),
        "sampling": {k: [float(x) for x in sampling[k].float().reshape(-1).tolist()] for k in _SAMPLING},
        "config": state["config"],
    }
    log = _run_folder(checkpoint) / LOG
    out.mkdir(parents=True, exist_ok=True)
    (out / MANIFEST).unlink(missing_ok=True)  # the folder reads as a model again only when all is written
    atomic_write_bytes(out / WEIGHTS, blob)
    if log.is_file():
        atomic_write_bytes(out / LOG, log.read_bytes())
    atomic_write_bytes(out / MANIFEST, (json.dumps(manifest, indent=1) + "\n").encode())
    return out


def _run_folder(checkpoint: Path) -> Path:
    """RUN of RUN/checkpoints/kimg*.pt (a checkpoint elsewhere: its own folder)."""
    from agora_core.inference.checkpoint import CHECKPOINT_DIR

    return checkpoint.parent.parent if checkpoint.parent.name == CHECKPOINT_DIR else checkpoint.parent


def read_manifest(folder: str | Path) -> dict:
    """model.json of a model folder, its structure checked (one line naming the file otherwise)."""
    path = Path(folder) / MANIFEST
    doc = read_json_manifest(folder, MANIFEST, FORMAT, FORMAT_VERSION,
                             "not a model folder (make one with `agora export model RUN --out DIR`)")
    types = {"config": dict, "head_model": str, "sampling": dict, "weights_sha256": str, "resolution": int}
    for key, kind in types.items():
        if not isinstance(doc.get(key), kind):
            raise file_error(path, f"entry '{key}' missing or not a {kind.__name__}; the file is damaged")
    for key in _SAMPLING:
        values = doc["sampling"].get(key)
        if not isinstance(values, list) or not values or not all(isinstance(x, (int, float)) for x in values):
            raise file_error(path, f"entry 'sampling.{key}' is not a list of numbers; the file is damaged")
        if not all(math.isfinite(x) for x in values):
            raise file_error(path, f"entry 'sampling.{key}' holds NaN or inf values; the file is damaged")
    if len(doc["sampling"]["camera"]) != 25:
        raise file_error(path, f"entry 'sampling.camera' has {len(doc['sampling']['camera'])} values, expected 25")
    return doc


def read_model_folder(folder: str | Path) -> dict:
    """The checkpoint-like dict of a model folder: format, config, G_ema, head_model, sampling, kimg."""
    folder = Path(folder)
    doc = read_manifest(folder)
    weights_path = folder / WEIGHTS
    try:
        blob = weights_path.read_bytes()
    except OSError as exc:
        raise file_error(weights_path, f"cannot be read ({exc.strerror or exc})") from None
    if hashlib.sha256(blob).hexdigest() != doc["weights_sha256"]:
        raise file_error(weights_path, f"does not match {MANIFEST} (another or a damaged file); export the model again")
    try:
        weights = load_safetensors(blob)
    except (SafetensorError, ValueError) as exc:
        raise file_error(weights_path, f"not readable safetensors ({str(exc).splitlines()[0][:120]})") from None
    check_finite(weights, weights_path, "generator tensor")
    sampling = {k: torch.tensor(doc["sampling"][k], dtype=torch.float32) for k in _SAMPLING}
    return {"format": FORMAT, "config": doc["config"], "G_ema": weights, "head_model": doc["head_model"],
            "sampling": sampling, "kimg": doc.get("kimg")}
