"""Float tolerances derived from the dtype and the size of the values compared.

Two code paths that evaluate the same maths (ours vs a reference, a batch vs its rows, float32 vs
float64, or one path on two machines: another SIMD width, BLAS kernel or thread count) differ by
rounding. One rounding moves a value of size |x| by at most eps/2 · |x|, so a result reached through
`steps` dependent roundings of values of size up to `magnitude` is within steps · eps/2 · magnitude
of the exact one, and two such evaluations are within steps · eps · magnitude of each other.
`magnitude` is the largest value the computation passes through, not only the result: where a
difference of large terms gives a small one (cancellation), the error is the large terms' rounding.
A test names both, so its bound holds for every IEEE-754 evaluation order, not for one machine's.
"""

from __future__ import annotations

import numpy as np
import torch


def eps(dtype) -> float:
    """Machine epsilon of a torch or numpy float dtype."""
    return float(torch.finfo(dtype).eps if isinstance(dtype, torch.dtype) else np.finfo(dtype).eps)


def rounding_tol(dtype, magnitude, steps: int):
    """Largest difference between two evaluations of the same maths in `dtype` (see module docstring):
    a float for a scalar magnitude, elementwise for a tensor of magnitudes."""
    tol = steps * eps(dtype) * magnitude
    return float(tol) if getattr(tol, "ndim", 0) == 0 else tol


def assert_within(actual: torch.Tensor, expected: torch.Tensor, tol: torch.Tensor, what: str = "") -> None:
    """|actual - expected| <= tol elementwise (tol broadcasts), naming the worst element when not."""
    err = (actual.double() - expected.double()).abs()
    ratio = err / torch.as_tensor(tol, dtype=torch.float64).expand_as(err)
    worst = int(ratio.argmax())
    assert not (ratio > 1).any(), (f"{what}: {int((ratio > 1).sum())} of {ratio.numel()} differ by more than "
                                   f"their tolerance; worst {err.flatten()[worst]:.3g} at flat index {worst}, "
                                   f"{ratio.flatten()[worst]:.3g} × its tolerance")


def posed_head_tol(vertices) -> float:
    """How far a vertex of a posed float32 head (agora_core.head.model) may move from rounding alone when
    another parameter changes, e.g. an eyelid or jaw coefficient that does not drive it: the joints are
    regressed from the changed shape and go through the kinematic chain's matrix products (each joint's
    translation comes back as a rounded difference of sums of joint positions), so every vertex carries
    rounding of the joints' and vertices' size: the 5-joint chain, the skinning sum over the joints and
    the vertex's own sums, ~16 roundings of max |vertex|."""
    return rounding_tol(torch.float32, abs(vertices).max(), steps=16)
