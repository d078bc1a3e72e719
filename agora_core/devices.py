"""The one default-device rule: which torch device a `--device` value (or none) means."""

from __future__ import annotations

import torch

from agora_core.errors import AgoraError


def resolve_device(device: str | torch.device | None) -> torch.device:
    """None or "auto" -> CUDA when available, else the CPU; an explicit device must exist here
    (one-line `AgoraError` otherwise)."""
    if device in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise AgoraError(f"--device {device!r}: not a torch device; use cpu, cuda or cuda:N") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise AgoraError(f"--device {device}: no CUDA device on this machine; use --device cpu")
    return dev
