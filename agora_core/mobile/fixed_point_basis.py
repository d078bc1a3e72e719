"""AGORA-M's blendshapes as 16-bit fixed point: the web bundle's number format, for the CPU blend.

One component k of a group's basis U_k [D] is stored as q_k = round(32767 · U_k / a_k), clamped to
±32767, with a_k = max |U_k| (its amplitude): |a_k · q_k / 32767 − U_k| ≤ a_k / 65534. The blend
(eq. 11) of B frames then reads half the bytes of a float32 basis:

    out[b] = neutral + Σ_k (c[b, k] · a_k / 32767) · q_k

At batch 1 a frame reads the whole basis once (full size: 64 × 2,030,589 values), so on a CPU the
blend is bound by memory bandwidth and half the bytes is nearly half the time
(`benchmarks/cpu_full_size.py`). `blend_fixed_point` is the compiled kernel (numba: blocks of
values in parallel, eight components per pass over a block), `blend_fixed_point_reference` its
slow, obviously correct twin.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from agora_core.render.rasterizer_numba import kernel_threads, use_kernel_threads

FIXED_POINT = 32767  # q = round(FIXED_POINT · U / a)
BLOCK = 4096  # basis values per task of the kernel (per frame: 16 KB of float32 accumulators)

try:
    import numba
    from numba import njit, prange
except ImportError:  # pragma: no cover - numba is a declared dependency
    numba = None


def fixed_point_amplitudes(u: Tensor) -> Tensor:
    """a_k = max_d |U[k, d]| of a basis [K, D] (float64 [K]; tiny for an all-zero component)."""
    return u.detach().abs().amax(1).double().clamp_min(1e-30)


def to_fixed_point(u: Tensor, amplitudes: Tensor) -> Tensor:
    """int16 round(32767 · U / a), clamped to ±32767, of the rows u [K, D] with amplitudes a [K]."""
    scaled = u.detach().double() / amplitudes.to(u.device)[:, None] * FIXED_POINT
    return scaled.round().clamp(-FIXED_POINT, FIXED_POINT).to(torch.int16)


def blend_fixed_point_reference(neutral: Tensor, fixed: Tensor, amplitudes: Tensor, coefficients: Tensor) -> Tensor:
    """neutral [D] + Σ_k c[b, k] · a_k / 32767 · q_k for the first K' components, in float64, as
    `neutral`'s dtype: [B, D]."""
    k = coefficients.shape[1]
    scale = coefficients.double() * (amplitudes[:k].double() / FIXED_POINT)
    return (neutral.double() + scale @ fixed[:k].double()).to(neutral.dtype)


def blend_fixed_point(neutral: Tensor, fixed: Tensor, amplitudes: Tensor, coefficients: Tensor) -> Tensor:
    """`blend_fixed_point_reference` with the compiled kernel, in float32, on torch's thread count
    (`render.rasterizer_numba.kernel_threads`, which also says why torch's count must be restored).

    Args:
        neutral: [D] float32 neutral attributes of one group.
        fixed: [K, D] int16 fixed-point components (`to_fixed_point`).
        amplitudes: [K] a_k.
        coefficients: [B, K'] with K' ≤ K: the first K' components are blended.
    Returns:
        [B, D] float32.
    """
    assert numba is not None, "numba is a declared dependency"
    assert not (torch.is_grad_enabled() and coefficients.requires_grad), "the int16 basis blends for inference only"
    b, k = coefficients.shape
    assert fixed.dtype == torch.int16 and fixed.shape[1] == neutral.shape[0] and k <= fixed.shape[0], (
        fixed.dtype, fixed.shape, neutral.shape, coefficients.shape)
    scale = (coefficients.detach().double() * (amplitudes[:k].double() / FIXED_POINT)).float().numpy()
    out = np.empty((b, neutral.shape[0]), np.float32)
    use_kernel_threads(kernel_threads(b * neutral.shape[0]))  # torch's count (and torch keeps it)
    _blend(np.ascontiguousarray(neutral.detach().float().numpy()), fixed.numpy(), np.ascontiguousarray(scale), out)
    return torch.from_numpy(out)


if numba is not None:

    @njit(cache=True, parallel=True, fastmath=True)
    def _blend(neutral, fixed, scale, out):
        """out[b, block] = neutral[block] + Σ_k scale[b, k] · fixed[k, block], one block per task.
        fastmath lets the compiler reorder the sums of eight products (float32 rounding only)."""
        nb, k = scale.shape
        d = neutral.shape[0]
        blocks = (d + BLOCK - 1) // BLOCK
        for task in prange(blocks):
            d0 = task * BLOCK
            n = min(d, d0 + BLOCK) - d0
            acc = np.empty((nb, n), np.float32)
            for b in range(nb):
                acc[b] = neutral[d0:d0 + n]
            k8 = k - k % 8
            for c in range(0, k8, 8):
                r0, r1, r2, r3 = fixed[c, d0:d0 + n], fixed[c + 1, d0:d0 + n], fixed[c + 2, d0:d0 + n], fixed[c + 3, d0:d0 + n]
                r4, r5, r6, r7 = fixed[c + 4, d0:d0 + n], fixed[c + 5, d0:d0 + n], fixed[c + 6, d0:d0 + n], fixed[c + 7, d0:d0 + n]
                for b in range(nb):
                    s0, s1, s2, s3 = scale[b, c], scale[b, c + 1], scale[b, c + 2], scale[b, c + 3]
                    s4, s5, s6, s7 = scale[b, c + 4], scale[b, c + 5], scale[b, c + 6], scale[b, c + 7]
                    row = acc[b]
                    for j in range(n):
                        row[j] += (s0 * np.float32(r0[j]) + s1 * np.float32(r1[j]) + s2 * np.float32(r2[j])
                                   + s3 * np.float32(r3[j]) + s4 * np.float32(r4[j]) + s5 * np.float32(r5[j])
                                   + s6 * np.float32(r6[j]) + s7 * np.float32(r7[j]))
            for c in range(k8, k):
                r = fixed[c, d0:d0 + n]
                for b in range(nb):
                    s = scale[b, c]
                    row = acc[b]
                    for j in range(n):
                        row[j] += s * np.float32(r[j])
            out[:, d0:d0 + n] = acc
