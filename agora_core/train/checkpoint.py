"""Writing training checkpoints (the format and its reader: `inference.checkpoint`).

Writing goes to a temporary file that is renamed, so a killed run never leaves a half checkpoint.
"""

from __future__ import annotations

from pathlib import Path

import torch

from agora_core.gaussians.files import atomic_write
from agora_core.inference.checkpoint import FORMAT_NAME, FORMAT_VERSION, list_checkpoints


def save_checkpoint(path: str | Path, state: dict) -> Path:
    """Write `state` atomically (tmp + fsync + rename). Values must be tensors or plain types."""
    path = Path(path)
    with atomic_write(path) as f:
        torch.save({"format": FORMAT_NAME, "format_version": FORMAT_VERSION, **state}, f)
    return path


def prune_checkpoints(run_dir: str | Path, keep: int) -> list[Path]:
    """Delete all but the newest `keep` checkpoints (keep <= 0 keeps all); returns the deleted."""
    found = list_checkpoints(run_dir)
    doomed = found[:-keep] if keep > 0 else []
    for p in doomed:
        p.unlink(missing_ok=True)
    return doomed


def load_matching_weights(module: torch.nn.Module, state_dict: dict) -> tuple[int, list[str]]:
    """Copy every tensor of `state_dict` whose name and shape match `module`'s (stage-2 init from
    a stage-1 checkpoint). Returns (number copied, names of the module's entries left as they were)."""
    own = module.state_dict()
    matched = {k: v for k, v in state_dict.items() if k in own and own[k].shape == v.shape}
    module.load_state_dict(matched, strict=False)
    return len(matched), sorted(set(own) - set(matched))
