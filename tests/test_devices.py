"""The one default-device rule (`agora_core.devices.resolve_device`)."""

from __future__ import annotations

import pytest
import torch

from agora_core.devices import resolve_device
from agora_core.errors import AgoraError


def test_default_is_cuda_when_available_else_cpu():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device(None).type == expected and resolve_device("auto").type == expected
    assert resolve_device("cpu") == torch.device("cpu")


def test_bad_or_missing_devices_are_one_line():
    with pytest.raises(AgoraError, match="not a torch device"):
        resolve_device("gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(AgoraError, match="no CUDA device"):
            resolve_device("cuda")


def test_bf16_units_from_cpuinfo_flags():
    from agora_core.devices import cpu_has_bf16_units

    avx2 = "processor\t: 0\nflags\t\t: fpu sse2 avx avx2 fma\n"
    assert not cpu_has_bf16_units(avx2) and not cpu_has_bf16_units("")
    assert cpu_has_bf16_units(avx2.replace("fma", "fma avx512f avx512_bf16"))
    assert cpu_has_bf16_units(avx2.replace("fma", "fma amx_bf16 amx_tile"))
