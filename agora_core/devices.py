"""Devices: the one default-device rule (`resolve_device`), the per-frame path's number format
(`resolve_precision`) and RNGs forked per device (`forked_rng`)."""

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


BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")  # /proc/cpuinfo flags of CPUs with bfloat16 arithmetic units


def cpu_has_bf16_units(cpuinfo: str | None = None) -> bool:
    """Whether this CPU computes in bfloat16 natively (AVX512_BF16 or AMX), which makes bf16 convolutions
    faster than float32; elsewhere oneDNN emulates bf16 and it is slower, so inference keeps float32.

    Args:
        cpuinfo: the text of /proc/cpuinfo (read here when None; a machine without it has no such units
            as far as this check knows).
    """
    if cpuinfo is None:
        try:
            with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
                cpuinfo = f.read()
        except OSError:
            return False
    flags = set()
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            flags.update(line.partition(":")[2].split())
    return any(flag in flags for flag in BF16_CPU_FLAGS)


def inference_dtype(device: str | torch.device) -> torch.dtype:
    """Dtype of the deformation branch's convolutions at inference: bfloat16 on a CPU with bf16 units
    (`cpu_has_bf16_units`), float32 everywhere else (other CPUs, and GPUs until measured)."""
    return torch.bfloat16 if torch.device(device).type == "cpu" and cpu_has_bf16_units() else torch.float32


PRECISIONS: tuple[str, ...] = ("float32", "bfloat16", "auto")  # `--precision` of the per-frame path
DEFAULT_PRECISION = "float32"  # the same Gaussians on every machine unless asked otherwise


def resolve_precision(precision: str, device: str | torch.device) -> torch.dtype | None:
    """The `deform_dtype` of `AgoraGenerator.animate` that `--precision` asks for on `device`: None (the
    cache's dtype) for "float32", torch.bfloat16 for "bfloat16", and for "auto" `inference_dtype`'s
    choice (bfloat16 only on a CPU with bf16 units, where it is faster; emulated bf16 is ~13x slower).
    Anything else is a one-line `AgoraError` naming --precision."""
    if precision not in PRECISIONS:
        raise AgoraError(f"--precision {precision!r}: choose one of {', '.join(PRECISIONS)}")
    if precision == "bfloat16" or (precision == "auto" and inference_dtype(device) == torch.bfloat16):
        return torch.bfloat16
    return None


def forked_rng(device: torch.device):
    """A context in which the RNGs a generator's noise draws from (the CPU's and `device`'s) are
    forked, so the caller's random stream is untouched by what runs inside (evaluation, samples)."""
    return torch.random.fork_rng(devices=[device] if device.type == "cuda" else [])
