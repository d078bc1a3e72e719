"""`GaussianBasis`: the Gaussian blendshapes U_k of AGORA-M (eq. 9-11) and `basis.safetensors`.

File layout (docs/architecture.md "AGORA-M files"): per group g ∈ {xyz, scale, rotation, opacity}
`g.basis [K, M·D_g]` (right singular vectors, rows orthonormal), `g.singular_values [K]`,
`g.explained_variance [K]` (cumulative fraction of the uncentred residual energy); string
metadata `format=agora-basis`, `format_version=1`, `n`, `k`, `num_gaussians`,
`source_checkpoint`, `seed`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from agora_core.errors import file_error
from agora_core.mobile.files import load_tensors, metadata_int, save_tensors
from agora_core.mobile.residuals import RESIDUAL_GROUPS
from agora_core.mobile.streaming_svd import GroupBasis

FORMAT_NAME = "agora-basis"
FORMAT_VERSION = 1
WRITER = "agora extract-basis"


@dataclass
class GaussianBasis:
    """Top-K Gaussian blendshapes per residual group, shared by all identities (sec. 3.7)."""

    basis: dict[str, Tensor]  # {group: [K, M·D_g]} float32, rows orthonormal
    singular_values: dict[str, Tensor]  # {group: [K]}
    explained_variance: dict[str, Tensor]  # {group: [K]} cumulative fraction of ‖B_g‖²
    num_gaussians: int  # M
    n: int = 0  # tuples the basis was extracted from
    seed: int = 0  # seed of those tuples
    source_checkpoint: str = ""  # the AGORA checkpoint (or "random-init")
    extra: dict[str, str] = field(default_factory=dict)  # more provenance (method, passes, …)

    def __post_init__(self) -> None:
        assert set(self.basis) == set(RESIDUAL_GROUPS), sorted(self.basis)
        k = self.k
        for g, d in RESIDUAL_GROUPS.items():
            assert self.basis[g].shape == (k, self.num_gaussians * d), (g, self.basis[g].shape, k, self.num_gaussians)
            assert self.singular_values[g].shape == (k,) and self.explained_variance[g].shape == (k,), g

    @property
    def k(self) -> int:
        return self.basis["xyz"].shape[0]

    @property
    def attribute_space(self) -> str:
        """The residual spaces (`residuals.attribute_groups`): "paper", or "authors" for a basis
        imported from (or distilled from a model imported from) the authors' release."""
        return self.extra.get("attribute_space", "paper")

    def blendshapes(self, group: str) -> Tensor:
        """U of one group per Gaussian: [K, M, D_g] (a view of `basis[group]`)."""
        return self.basis[group].reshape(self.k, self.num_gaussians, RESIDUAL_GROUPS[group])

    @staticmethod
    def from_blendshapes(blendshapes: dict[str, Tensor], **provenance) -> "GaussianBasis":
        """From per-Gaussian blendshapes {group: [K, M, D_g]} (demos, tests); singular values are the
        rows' norms and the explained variance their cumulative energy fraction."""
        k, m = blendshapes["xyz"].shape[:2]
        flat = {g: blendshapes[g].reshape(k, m * d).float().contiguous() for g, d in RESIDUAL_GROUPS.items()}
        norms = {g: flat[g].norm(dim=1) for g in RESIDUAL_GROUPS}
        energy = {g: (n.double().square().cumsum(0) / n.double().square().sum().clamp_min(1e-30)).float()
                  for g, n in norms.items()}
        return GaussianBasis(flat, norms, energy, m, **provenance)

    @staticmethod
    def from_groups(groups: dict[str, GroupBasis], num_gaussians: int, **provenance) -> "GaussianBasis":
        """From `streaming_svd` results (float64) to float32 blendshapes."""
        return GaussianBasis({g: groups[g].basis.float().cpu() for g in RESIDUAL_GROUPS},
                             {g: groups[g].singular_values.float().cpu() for g in RESIDUAL_GROUPS},
                             {g: groups[g].explained_variance.float().cpu() for g in RESIDUAL_GROUPS},
                             num_gaussians, **provenance)

    def truncate(self, k: int) -> "GaussianBasis":
        """The first k components (the basis is nested: top-k of a top-K SVD)."""
        assert 1 <= k <= self.k, (k, self.k)
        cut = lambda d: {g: t[:k] for g, t in d.items()}  # noqa: E731
        return GaussianBasis(cut(self.basis), cut(self.singular_values), cut(self.explained_variance),
                             self.num_gaussians, self.n, self.seed, self.source_checkpoint, dict(self.extra))

    def to(self, device: torch.device | str) -> "GaussianBasis":
        return GaussianBasis({g: t.to(device) for g, t in self.basis.items()}, self.singular_values,
                             self.explained_variance, self.num_gaussians, self.n, self.seed,
                             self.source_checkpoint, dict(self.extra))

    def project(self, residuals: dict[str, Tensor]) -> dict[str, Tensor]:
        """Coefficients c = ΔA U_kᵀ per group: {g: [B, M·D_g]} -> {g: [B, K]}."""
        return {g: residuals[g].to(self.basis[g].dtype) @ self.basis[g].T for g in RESIDUAL_GROUPS}

    def reconstruct(self, coefficients: dict[str, Tensor]) -> dict[str, Tensor]:
        """Σ_k c_k U_k per group (eq. 11's sum): {g: [B, K]} -> {g: [B, M·D_g]}."""
        return {g: coefficients[g].to(self.basis[g].dtype) @ self.basis[g] for g in RESIDUAL_GROUPS}

    # --- file ---------------------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        tensors = {}
        for g in RESIDUAL_GROUPS:
            tensors[f"{g}.basis"] = self.basis[g].float()
            tensors[f"{g}.singular_values"] = self.singular_values[g].float()
            tensors[f"{g}.explained_variance"] = self.explained_variance[g].float()
        metadata = {**self.extra, "format": FORMAT_NAME, "format_version": FORMAT_VERSION, "n": self.n,
                    "k": self.k, "num_gaussians": self.num_gaussians, "source_checkpoint": self.source_checkpoint,
                    "seed": self.seed}
        return save_tensors(path, tensors, metadata)

    @staticmethod
    def load(path: str | Path) -> "GaussianBasis":
        """Read and check a `basis.safetensors`; any problem is an `AgoraError` naming the file."""
        keys = [f"{g}.{part}" for g in RESIDUAL_GROUPS for part in ("basis", "singular_values", "explained_variance")]
        tensors, meta = load_tensors(path, FORMAT_NAME, FORMAT_VERSION, keys, WRITER)
        k, m = metadata_int(path, meta, "k"), metadata_int(path, meta, "num_gaussians")
        for g, d in RESIDUAL_GROUPS.items():
            shapes = {"basis": (k, m * d), "singular_values": (k,), "explained_variance": (k,)}
            for part, shape in shapes.items():
                if tuple(tensors[f"{g}.{part}"].shape) != shape:
                    raise file_error(path, f"{g}.{part} has shape {tuple(tensors[f'{g}.{part}'].shape)}, expected "
                                           f"{shape} for k={k}, num_gaussians={m}; the file is damaged")
        known = {"format", "format_version", "n", "k", "num_gaussians", "source_checkpoint", "seed"}
        return GaussianBasis(
            {g: tensors[f"{g}.basis"].float() for g in RESIDUAL_GROUPS},
            {g: tensors[f"{g}.singular_values"].float() for g in RESIDUAL_GROUPS},
            {g: tensors[f"{g}.explained_variance"].float() for g in RESIDUAL_GROUPS},
            m, metadata_int(path, meta, "n"), metadata_int(path, meta, "seed"), meta.get("source_checkpoint", ""),
            {key: v for key, v in meta.items() if key not in known})
