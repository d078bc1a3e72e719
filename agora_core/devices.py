"""Devices: the one default-device rule (`resolve_device`) and RNGs forked per device (`forked_rng`)."""

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


def forked_rng(device: torch.device):
    """A context in which the RNGs a generator's noise draws from (the CPU's and `device`'s) are
    forked, so the caller's random stream is untouched by what runs inside (evaluation, samples)."""
    return torch.random.fork_rng(devices=[device] if device.type == "cuda" else [])
