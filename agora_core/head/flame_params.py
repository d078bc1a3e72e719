"""`FlameParams`: one batch of FLAME parameters (β, ψ, θ of the paper's eq. 2), the type every stage
passes to the head model, the generator, AGORA-M and the driving readers.

Fields are keyword-only, so two [B, 3] rotations (jaw, neck) cannot be passed in each other's place.
Files keep their own layouts (the dataset's `flame.npz`, driving `.npz`/`.json`): `from_dict` /
`as_dict` convert at that boundary with the one key tuple `FLAME_KEYS`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

FLAME_KEYS = ("shape", "expression", "jaw", "neck", "eyes", "eyelids")  # dataset / file key of each field
FIXED_DIMS = {"jaw": 3, "neck": 3, "eyes": 6, "eyelids": 2}  # shape and expression have the head's widths


def fit_coefficients(x: Tensor | np.ndarray, n: int) -> Tensor | np.ndarray:
    """x [..., n'] -> [..., n] (a tensor or an array): trailing coefficients dropped, or missing ones
    zero (FLAME's bases are ordered by variance: a shorter vector is the same face with its
    smallest components at 0)."""
    if x.shape[-1] >= n:
        return x[..., :n]
    if isinstance(x, np.ndarray):
        return np.concatenate([x, np.zeros((*x.shape[:-1], n - x.shape[-1]), x.dtype)], axis=-1)
    return torch.cat([x, x.new_zeros(*x.shape[:-1], n - x.shape[-1])], dim=-1)


@dataclass(frozen=True, kw_only=True)
class FlameParams:
    """FLAME parameters of a batch of B heads; every field is [B, D] on one device.

    `shape`, `neck`, `eyes` and `eyelids` may be left out: they are zeros (the mean shape, no
    rotation, open eyelids), which is what the head model and the generator read for them. Shape
    and expression have any width: a head zero-pads or truncates them to its bases (`padded`).
    The global head rotation is not here: it is realised by the camera.
    """

    expression: Tensor  # [B, E] ψ
    jaw: Tensor  # [B, 3] axis-angle
    shape: Tensor | None = None  # [B, S] β; None: zeros [B, 0] (the mean shape)
    neck: Tensor | None = None  # [B, 3] axis-angle; None: zeros
    eyes: Tensor | None = None  # [B, 6] axis-angle, left eye then right; None: zeros
    eyelids: Tensor | None = None  # [B, 2] SMIRK eyelid coefficients (left, right); None: zeros

    def __post_init__(self) -> None:
        e = self.expression
        assert isinstance(e, Tensor) and e.ndim == 2, f"expression: expected [B, E], got {_shape(e)}"
        b = e.shape[0]
        for name, width in (("shape", 0), *FIXED_DIMS.items()):
            if getattr(self, name) is None:
                object.__setattr__(self, name, e.new_zeros(b, width))
        for name in FLAME_KEYS:
            value = getattr(self, name)
            assert isinstance(value, Tensor) and value.ndim == 2 and value.shape[0] == b, (
                f"{name}: expected [B={b}, D], got {_shape(value)}")
            assert name not in FIXED_DIMS or value.shape[1] == FIXED_DIMS[name], (
                f"{name}: expected [B, {FIXED_DIMS.get(name)}], got {tuple(value.shape)}")
            assert value.device == e.device, f"{name} on {value.device}, expression on {e.device}"

    # --- construction -------------------------------------------------------------------------------
    @classmethod
    def zeros(cls, batch: int, n_shape: int = 0, n_expr: int = 0, device: torch.device | str | None = None,
              dtype: torch.dtype = torch.float32) -> "FlameParams":
        """The neutral head of the mean shape, B times: shape [B, n_shape], expression [B, n_expr]."""
        z = lambda n: torch.zeros(batch, n, device=device, dtype=dtype)  # noqa: E731
        return cls(shape=z(n_shape), expression=z(n_expr), jaw=z(3), neck=z(3), eyes=z(6), eyelids=z(2))

    @classmethod
    def from_dict(cls, arrays: Mapping, dtype: torch.dtype | None = torch.float32) -> "FlameParams":
        """From a mapping with `FLAME_KEYS` ([B, D] tensors or arrays; "expression" and "jaw" required,
        other keys ignored), e.g. a dataset batch or a file's arrays."""
        return cls(**{k: torch.as_tensor(arrays[k], dtype=dtype) for k in FLAME_KEYS if arrays.get(k) is not None})

    @classmethod
    def cat(cls, parts: Sequence["FlameParams"]) -> "FlameParams":
        """Batches one after the other; shapes and expressions of different widths are zero-padded."""
        n_shape, n_expr = max(p.num_shape for p in parts), max(p.num_expr for p in parts)
        parts = [p.padded(n_shape, n_expr) for p in parts]
        return cls(**{k: torch.cat([getattr(p, k) for p in parts]) for k in FLAME_KEYS})

    def as_dict(self) -> dict[str, Tensor]:
        """{key: [B, D]} with `FLAME_KEYS` (the dataset's `flame.npz` layout)."""
        return {k: getattr(self, k) for k in FLAME_KEYS}

    def row_arrays(self, i: int) -> dict[str, np.ndarray]:
        """Head i as {key: [D]} arrays (a dataset record's layout, `data.format.DatasetRecord`)."""
        return {k: getattr(self, k)[i].detach().cpu().numpy() for k in FLAME_KEYS}

    # --- views --------------------------------------------------------------------------------------
    @property
    def batch_size(self) -> int:
        return self.expression.shape[0]

    @property
    def num_shape(self) -> int:
        return self.shape.shape[1]

    @property
    def num_expr(self) -> int:
        return self.expression.shape[1]

    @property
    def device(self) -> torch.device:
        return self.expression.device

    def map(self, fn: Callable[[Tensor], Tensor]) -> "FlameParams":
        """`fn` applied to every field (it must keep the last dim and give every field one batch size)."""
        return FlameParams(**{k: fn(getattr(self, k)) for k in FLAME_KEYS})

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> "FlameParams":
        return self.map(lambda t: t.to(device=device, dtype=dtype))

    def __getitem__(self, rows) -> "FlameParams":
        """The rows `rows` (a slice, an index tensor or list; an int keeps its batch dim: [1, D])."""
        if isinstance(rows, int):
            b = self.batch_size
            if not -b <= rows < b:
                raise IndexError(f"row {rows} of a batch of {b}")
            rows = slice(rows % b, rows % b + 1)
        return self.map(lambda t: t[rows])

    def __iter__(self):
        # Without this, iteration would fall back to __getitem__(0), (1), ...: rows, not fields.
        raise TypeError("FlameParams is not iterable: use .as_dict() for its fields, [i] for a row")

    def padded(self, n_shape: int | None = None, n_expr: int | None = None) -> "FlameParams":
        """Shape and expression zero-padded or truncated to n_shape / n_expr columns (None: as they are)."""
        return dataclasses.replace(
            self, shape=self.shape if n_shape is None else fit_coefficients(self.shape, n_shape),
            expression=self.expression if n_expr is None else fit_coefficients(self.expression, n_expr))

    def replace(self, **changes: Tensor) -> "FlameParams":
        """A copy with some fields replaced (checked like a new one)."""
        return dataclasses.replace(self, **changes)


def _shape(x) -> str:
    return str(tuple(x.shape)) if isinstance(x, Tensor) else type(x).__name__
