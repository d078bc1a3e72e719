"""The sampled tuples (w_i, β_i, ψ_i, θ_i) of AGORA-M's basis extraction (paper sec. 3.7).

Every value is a pure function of (seed, stream, index), so any range of tuples can be
regenerated bit for bit at any time: the streamed SVD makes several passes over the same residuals
without ever storing them. Streams keep the sets apart: `EXTRACT` builds the basis, `HELDOUT`
measures its reconstruction error, `FIT_MLP` (fresh seeds, sec. 3.7) trains the regressor.

Tuple i belongs to identity i // expressions_per_identity (the identity branch runs once per
identity, as the authors' cached backbone does). Conditions come from a dataset's (camera, FLAME)
rows when given — sampled jointly, as training samples them; the cameras turned into the model's
mapping labels (`ConditionPool.as_mapping_labels`) — else from priors: z ~ N(0, I);
β ~ N(mean, diag(std²)) and the frontal mapping camera of a checkpoint's `sampling` entry
(`mobile.agora_model.identity_prior`), or β ~ N(0, I) and FFHQ-like cameras without one; expressions
as the synthetic dataset samples them (`data.synthetic.sample_flame`).
Only the inputs of the coefficient regressor animate a tuple (expression truncated to
`expr_dim`, jaw, eyelids); neck, eyes and the global rotation stay zero.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from agora_core.head.flame_params import FlameParams, fit_coefficients

EXTRACT, HELDOUT, FIT_MLP = 0, 1, 2  # streams
_IDENTITY, _EXPRESSION = 0, 1  # what a generator draws inside a stream


@dataclass
class TupleBatch:
    """A batch of tuples: identity inputs (z, c, β) and animation inputs (ψ, θ)."""

    identity: Tensor  # [B] int64 identity index (tuple i -> i // expressions_per_identity)
    z: Tensor  # [B, z_dim]
    camera: Tensor  # [B, c_dim] camera label fed to the mapping network (25: EG3D; imported: 12)
    flame: FlameParams  # β [B, S], ψ [B, E] (entries past expr_dim are zero), jaw, eyelids; neck, eyes zero

    @property
    def shape(self) -> Tensor:
        """[B, S] FLAME shape β."""
        return self.flame.shape


@dataclass
class ConditionPool:
    """(camera, FLAME) rows of a dataset, the empirical training distribution."""

    cameras: np.ndarray  # [P, c_dim] the mapping label of each row's camera (EG3D labels [P, 25] as read)
    flame: dict[str, np.ndarray]  # dataset FLAME keys -> [P, D]

    @staticmethod
    def from_dataset(root: str | Path, head_model: str | None = None) -> "ConditionPool":
        """The dataset's cameras and FLAME rows; with `head_model`, checked to belong to that head."""
        from agora_core.data.format import read_dataset_index
        from agora_core.head.build import check_head_matches

        index = read_dataset_index(root)
        if head_model is not None:
            check_head_matches(index.header.head_model, head_model, root, head_is="the checkpoint's head is", fix="")
        return ConditionPool(np.asarray(index.cameras, np.float64),
                             {k: np.asarray(v, np.float64) for k, v in index.flame.items()})

    def as_mapping_labels(self, generator) -> "ConditionPool":
        """The pool with each camera replaced by the label `generator`'s mapping network takes for it
        (`inference.mapping_labels`: the EG3D label itself, or for an imported model the DECA label of
        the head rotation the camera realises)."""
        from agora_core.inference import mapping_labels
        from agora_core.render import Camera

        labels = mapping_labels(generator, Camera.from_label(torch.as_tensor(self.cameras)))
        return ConditionPool(labels.double().numpy(), self.flame)

    def __len__(self) -> int:
        return self.cameras.shape[0]


@dataclass
class IdentityPrior:
    """Where identities come from without a dataset: a training checkpoint's `sampling` entry
    (`mobile.agora_model.identity_prior`)."""

    camera: np.ndarray | None = None  # [c_dim] fixed mapping label (None: FFHQ-like random EG3D cameras)
    shape_mean: np.ndarray | None = None  # [S] β mean (None: 0)
    shape_std: np.ndarray | None = None  # [S] β std (None: 1)


class TupleSampler:
    """Deterministic tuples for basis extraction and regressor fitting (see module docstring)."""

    def __init__(self, *, z_dim: int, num_shape: int, num_expr: int, expr_dim: int, seed: int, stream: int,
                 expressions_per_identity: int, pool: ConditionPool | None = None,
                 prior: IdentityPrior | None = None):
        assert expressions_per_identity >= 1, expressions_per_identity
        self.z_dim, self.num_shape, self.num_expr = z_dim, num_shape, num_expr
        self.expr_dim = min(expr_dim, num_expr)
        self.seed, self.stream, self.per_identity, self.pool = seed, stream, expressions_per_identity, pool
        self.prior = prior or IdentityPrior()

    def _rng(self, kind: int, index: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, self.stream, kind, index])

    def _identity(self, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(z [Z], mapping label [c_dim], β [S]) of identity i."""
        rng = self._rng(_IDENTITY, i)
        z = rng.standard_normal(self.z_dim)
        if self.pool is not None:
            row = int(rng.integers(len(self.pool)))
            return z, self.pool.cameras[row], fit_coefficients(self.pool.flame["shape"][row], self.num_shape)
        shape = rng.normal(size=self.num_shape)
        if self.prior.shape_std is not None:
            shape = shape * fit_coefficients(self.prior.shape_std, self.num_shape)
        if self.prior.shape_mean is not None:
            shape = shape + fit_coefficients(self.prior.shape_mean, self.num_shape)
        if self.prior.camera is not None:
            return z, self.prior.camera.reshape(-1), shape
        from agora_core.data.synthetic import sample_cameras

        return z, sample_cameras(rng, 1).to_label()[0].double().numpy(), shape

    def _animation(self, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(ψ [E], jaw [3], eyelids [2]) of tuple i."""
        rng = self._rng(_EXPRESSION, i)
        if self.pool is not None:
            row = int(rng.integers(len(self.pool)))
            expression, jaw = self.pool.flame["expression"][row], self.pool.flame["jaw"][row]
            eyelids = self.pool.flame["eyelids"][row]
        else:
            from agora_core.data.synthetic import sample_flame

            sample = sample_flame(rng, 1, 1, self.num_expr)
            expression, jaw, eyelids = (t[0].double().numpy() for t in (sample.expression, sample.jaw, sample.eyelids))
        return fit_coefficients(fit_coefficients(expression, self.expr_dim), self.num_expr), jaw, eyelids

    def tuples(self, start: int, stop: int) -> TupleBatch:
        """Tuples start … stop−1 (float32 tensors), identical on every call."""
        assert 0 <= start < stop, (start, stop)
        ids = np.arange(start, stop) // self.per_identity
        identities = {int(i): self._identity(int(i)) for i in np.unique(ids)}
        anim = [self._animation(i) for i in range(start, stop)]
        f32 = lambda rows: torch.as_tensor(np.stack(rows), dtype=torch.float32)  # noqa: E731
        return TupleBatch(
            identity=torch.as_tensor(ids, dtype=torch.int64),
            z=f32([identities[int(i)][0] for i in ids]), camera=f32([identities[int(i)][1] for i in ids]),
            flame=FlameParams(shape=f32([identities[int(i)][2] for i in ids]), expression=f32([a[0] for a in anim]),
                              jaw=f32([a[1] for a in anim]), eyelids=f32([a[2] for a in anim])))
