"""AGORA-M's blendshapes as fixed point for the CPU blend: 16-bit (the web bundle's number format) or 8-bit.

Each component k of a group's basis U_k [D] is cut into runs of `group` consecutive values, each run r
with its amplitude a_{k,r} = max |U_k| over the run, and stored as codes q = round(L · U / a_{k,r})
clamped to ±L, so that |a_{k,r} · q / L − U| ≤ a_{k,r} / 2L:
- "int16": L = 32767, one run per component (the web bundle's format, `export/web_bundle.py`);
- "int8": L = 127, runs of 256 values (64 to 256 neighbouring Gaussians of one attribute group, in
  UV order). Short runs are what make 8 bits usable: most Gaussians (hair, the back of the head)
  hardly move with the expression, and their runs get steps of their own instead of the mouth's.

The blend (eq. 11) of B frames is then

    out[b, d] = neutral[d] + Σ_k (c[b, k] / L) · a_{k, r(d)} · q_k[d]

At batch 1 a frame reads the whole basis once (K = 64 at full size: 64 × 2,318,932 values), so on a CPU the
blend is bound by memory bandwidth: int16 reads half a float32 basis's bytes, int8 a quarter (plus
1/64 for its amplitudes), and the time follows (`benchmarks/cpu_full_size.py`). `FixedPointBasis.blend`
is the compiled kernel (numba: blocks of values in parallel, eight components per pass over a block;
for the rotation group it also makes each quaternion unit, as `gaussians.normalize_quat` does),
`FixedPointBasis.blend_reference` its slow, obviously correct twin.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
from torch import Tensor

from agora_core.gaussians import normalize_quat
from agora_core.render.rasterizer_numba import kernel_threads, use_kernel_threads

BLOCK = 4096  # basis values per task of the kernel (per frame: 16 KB of float32 accumulators)
QUAT_FLOOR = 1e-24  # `normalize_quat`'s floor on |q|² for float32 (eps² with eps = 1e-12)

try:
    import numba
    from numba import njit, prange
except ImportError:  # pragma: no cover - numba is a declared dependency
    numba = None


@dataclasses.dataclass(frozen=True)
class FixedPointFormat:
    dtype: torch.dtype
    levels: int  # L: codes lie in [−L, L]
    group: int | None  # values per amplitude run; None: one run per component


FIXED_POINT_FORMATS = {"int16": FixedPointFormat(torch.int16, 32767, None),
                       "int8": FixedPointFormat(torch.int8, 127, 256)}
FIXED_POINT = FIXED_POINT_FORMATS["int16"].levels  # the web bundle's L


@dataclasses.dataclass(frozen=True)
class FixedPointBasis:
    """One group's K components in fixed point (module docstring).

    codes: [K, D] int16 or int8. amplitudes: [K, R] float32, R = ⌈D / group⌉ (exactly max |U| over the
    run for a float32 basis; tiny for an all-zero run). levels: L. group: values per run (D for one
    run per component).
    """

    codes: Tensor
    amplitudes: Tensor
    levels: int
    group: int

    @staticmethod
    def quantize(u: Tensor, fmt: str = "int16") -> "FixedPointBasis":
        """The rows u [K, D] (any float dtype, any device) in `fmt` ("int16" or "int8"), on the CPU."""
        f = FIXED_POINT_FORMATS[fmt]
        k, d = u.shape
        group = d if f.group is None else f.group
        runs = -(-d // group)
        u = u.detach().double().cpu()
        padded = torch.nn.functional.pad(u.abs(), (0, runs * group - d))
        amplitudes = padded.reshape(k, runs, group).amax(2).clamp_min(1e-30).float()
        per_value = amplitudes.double().repeat_interleave(group, 1)[:, :d]
        codes = (u / per_value * f.levels).round().clamp(-f.levels, f.levels).to(f.dtype)
        return FixedPointBasis(codes, amplitudes, f.levels, group)

    @property
    def k(self) -> int:
        return self.codes.shape[0]

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (self.codes, self.amplitudes))

    def value_amplitudes(self, k: int | None = None) -> Tensor:
        """[k, D] float64: the amplitude of every value of the first k components (all by default)."""
        k = self.k if k is None else k
        return self.amplitudes[:k].double().repeat_interleave(self.group, 1)[:, : self.codes.shape[1]]

    def dequantized(self) -> Tensor:
        """[K, D] float64: a · q / L, within a / 2L of the quantised basis."""
        return self.codes.double() * self.value_amplitudes() / self.levels

    def error_bound(self, coefficients: Tensor) -> Tensor:
        """[B, D] float64: Σ_k |c[b, k]| · a_{k, r(d)} / 2L, how far fixed point may move a blended value
        (before any quaternion normalisation)."""
        c = coefficients.detach().double().abs()
        return c @ self.value_amplitudes(c.shape[1]) / (2 * self.levels)

    def blend_reference(self, neutral: Tensor, coefficients: Tensor, unit_quaternions: bool = False) -> Tensor:
        """neutral [D] + Σ_k c[b, k] · a · q_k / L over the first K' components, in float64, as
        `neutral`'s dtype [B, D]; with `unit_quaternions`, `normalize_quat` of each run of 4 values."""
        k = coefficients.shape[1]
        out = neutral.double() + coefficients.double() @ (self.codes[:k].double() * self.value_amplitudes(k) / self.levels)
        if unit_quaternions:
            out = normalize_quat(out.reshape(out.shape[0], -1, 4)).reshape(out.shape)
        return out.to(neutral.dtype)

    def blend(self, neutral: Tensor, coefficients: Tensor, unit_quaternions: bool = False) -> Tensor:
        """`blend_reference` with the compiled kernel, in float32, on torch's thread count
        (`render.rasterizer_numba.kernel_threads`, which also says why torch's count must be restored).

        Args:
            neutral: [D] float32 neutral attributes of one group.
            coefficients: [B, K'] with K' ≤ K: the first K' components are blended.
            unit_quaternions: the group is quaternions (D a multiple of 4): make each one unit.
        Returns:
            [B, D] float32.
        """
        assert numba is not None, "numba is a declared dependency"
        assert not (torch.is_grad_enabled() and coefficients.requires_grad), "the fixed-point basis blends for inference only"
        b, k = coefficients.shape
        d = neutral.shape[0]
        assert self.codes.shape[1] == d and k <= self.k, (self.codes.shape, neutral.shape, coefficients.shape)
        assert not unit_quaternions or d % 4 == 0, d
        assert self.group >= d or BLOCK % self.group == 0, (self.group, d)  # a kernel block holds whole runs
        scale = np.ascontiguousarray((coefficients.detach().double() / self.levels).float().numpy())
        out = np.empty((b, d), np.float32)
        use_kernel_threads(kernel_threads(b * d))  # torch's count (and torch keeps it)
        _blend(np.ascontiguousarray(neutral.detach().float().numpy()), self.codes.numpy(), scale,
               self.amplitudes.numpy(), self.group, unit_quaternions, out)
        return torch.from_numpy(out)


if numba is not None:

    @njit(cache=True, parallel=True, fastmath=True)
    def _blend(neutral, codes, scale, amplitudes, group, unit_quaternions, out):
        """out[b, block] = neutral[block] + Σ_k scale[b, k] · amplitudes[k, run] · codes[k, block], one
        block per task, one run of the block at a time; then, if asked, each 4 values made a unit
        quaternion. fastmath lets the compiler reorder the sums of eight products (float32 rounding only)."""
        nb, k = scale.shape
        d = neutral.shape[0]
        blocks = (d + BLOCK - 1) // BLOCK
        k8 = k - k % 8
        for task in prange(blocks):
            d0 = task * BLOCK
            d1 = min(d, d0 + BLOCK)
            n = d1 - d0
            acc = np.empty((nb, n), np.float32)
            for b in range(nb):
                acc[b] = neutral[d0:d1]
            for c in range(0, k8, 8):  # eight rows of codes streamed at a time
                for lo in range(0, n, group):  # one run (one amplitude per component) at a time
                    r = (d0 + lo) // group
                    m = min(n, lo + group) - lo
                    e = d0 + lo
                    q0, q1, q2, q3 = codes[c, e:e + m], codes[c + 1, e:e + m], codes[c + 2, e:e + m], codes[c + 3, e:e + m]
                    q4, q5, q6, q7 = codes[c + 4, e:e + m], codes[c + 5, e:e + m], codes[c + 6, e:e + m], codes[c + 7, e:e + m]
                    for b in range(nb):
                        s0, s1 = scale[b, c] * amplitudes[c, r], scale[b, c + 1] * amplitudes[c + 1, r]
                        s2, s3 = scale[b, c + 2] * amplitudes[c + 2, r], scale[b, c + 3] * amplitudes[c + 3, r]
                        s4, s5 = scale[b, c + 4] * amplitudes[c + 4, r], scale[b, c + 5] * amplitudes[c + 5, r]
                        s6, s7 = scale[b, c + 6] * amplitudes[c + 6, r], scale[b, c + 7] * amplitudes[c + 7, r]
                        row = acc[b]  # 1-d slices of a C-contiguous row: the loop below vectorises
                        seg = row[lo:lo + m]
                        for j in range(m):
                            seg[j] += (s0 * np.float32(q0[j]) + s1 * np.float32(q1[j]) + s2 * np.float32(q2[j])
                                       + s3 * np.float32(q3[j]) + s4 * np.float32(q4[j]) + s5 * np.float32(q5[j])
                                       + s6 * np.float32(q6[j]) + s7 * np.float32(q7[j]))
            for c in range(k8, k):
                for lo in range(0, n, group):
                    r = (d0 + lo) // group
                    m = min(n, lo + group) - lo
                    q = codes[c, d0 + lo:d0 + lo + m]
                    for b in range(nb):
                        s = scale[b, c] * amplitudes[c, r]
                        row = acc[b]
                        seg = row[lo:lo + m]
                        for j in range(m):
                            seg[j] += s * np.float32(q[j])
            if unit_quaternions:  # BLOCK is a multiple of 4: a block holds whole quaternions
                for b in range(nb):
                    row = acc[b]
                    for i in range(0, d1 - d0, 4):
                        sq = row[i] * row[i] + row[i + 1] * row[i + 1] + row[i + 2] * row[i + 2] + row[i + 3] * row[i + 3]
                        if sq < QUAT_FLOOR:
                            row[i], row[i + 1], row[i + 2], row[i + 3] = 1.0, 0.0, 0.0, 0.0
                        else:
                            inv = np.float32(1.0) / np.sqrt(sq)
                            row[i] *= inv
                            row[i + 1] *= inv
                            row[i + 2] *= inv
                            row[i + 3] *= inv
            out[:, d0:d1] = acc
