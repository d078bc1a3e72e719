"""`BlendshapeAvatar`: AGORA-M's runtime avatar (paper sec. 3.7, eq. 11, Fig. 2 right).

    𝒜^M(w, β, ψ, θ) = 𝒜(w, β, ψ0, θ0) + Σ_k c_k U_k,    (c_1 … c_K) = f_mlp(w, ψ, θ)   (eq. 10-11)

The neutral attributes 𝒜(w, β, ψ0, θ0) are computed once per avatar (one identity-branch and one
animate call of the full model); a frame then costs one shallow MLP and four matrix products, in
the residual spaces of docs/architecture.md "AGORA-M files": xyz (metres), log-scale, unit
quaternion (renormalised after blending) and post-sigmoid opacity (clamped to [0, 1]). Colour is
the neutral's (not animated).

A basis in the authors' spaces (`basis.attribute_space == "authors"`: imported from their release,
or distilled from a model imported from it) lives in their spaces instead: linear scale (clamped to
≥ 1e-5 after blending), their column-normalised quaternions and post-activation opacity. Their code
finishes the blend in two ways, and `finish` picks one:
- "script" (default; their AGORA-M inference script, whose reference outputs the fixture holds):
  quaternions normalised per Gaussian and then, in their renderer, per component over all Gaussians;
  opacity clamped to [−0.001, 1.001];
- "viewer" (their WebGL viewer, and so `agora export web`): quaternions normalised per Gaussian
  only, opacity clamped to [0, 1]. At ψ0, θ0 this renders exactly the full model's neutral.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import torch
from torch import Tensor

from agora_core.errors import AgoraError
from agora_core.gaussians import GaussianSet, normalize_quat, normalize_quat_columns
from agora_core.head import FlameParams
from agora_core.mobile.basis_file import GaussianBasis
from agora_core.mobile.coefficient_mlp import CoefficientMLP
from agora_core.mobile.fixed_point_basis import FIXED_POINT_FORMATS, FixedPointBasis
from agora_core.mobile.residuals import RESIDUAL_GROUPS, attribute_groups
from agora_core.models.deformation_branch import expression_condition

if TYPE_CHECKING:
    from agora_core.models.agora_generator import AgoraGenerator, IdentityCache

BASIS_FORMATS = ("float32", *FIXED_POINT_FORMATS)  # how `BlendshapeAvatar` keeps its basis in memory
AUTHORS_MIN_SCALE = 1e-5  # their constraint after blending (linear scale)
AUTHORS_OPACITY_OVERSHOOT = 1e-3  # their opacity clamp [−o, 1 + o] after blending


def check_basis_format(basis_format: str, device: str | torch.device) -> None:
    """`--basis-format` as `BlendshapeAvatar` takes it: float32 anywhere, int16 or int8 on a CPU (AgoraError)."""
    if basis_format not in BASIS_FORMATS:
        raise AgoraError(f"--basis-format {basis_format!r}: choose one of {', '.join(BASIS_FORMATS)}")
    if basis_format != "float32" and torch.device(device).type != "cpu":
        raise AgoraError(f"--basis-format {basis_format} is AGORA-M's CPU blend; on {torch.device(device).type} the "
                         "basis is float32: drop it")


class BlendshapeAvatar:
    """One AGORA-M avatar: cached neutral Gaussians, shared blendshapes, its w for the regressor.

    Args:
        neutral: the avatar's Gaussians at ψ0 = 0, θ0 = 0 (batch 1).
        basis: blendshapes U (`GaussianBasis`: `.basis[g]` [K, M·D_g]).
        mlp: coefficient regressor (`CoefficientMLP`), or None to drive `blend` with given coefficients.
        w: [1, w_dim] the avatar's w (first style vector after truncation), input of f_mlp.
        finish: how a basis in the authors' spaces finishes the blend (module docstring).
        basis_format: "float32" (the basis as given), "int16" (16-bit fixed point per component, the
            web bundle's format: half the memory) or "int8" (8-bit per run of 256 values: a quarter);
            CPU only, inference only (mobile/fixed_point_basis.py, whose `error_bound` says how far
            from float32's a blended value may be; the README's CPU table has the speed and the PSNR).
    """

    def __init__(self, neutral: GaussianSet, basis: GaussianBasis, mlp: CoefficientMLP | None = None,
                 w: Tensor | None = None, finish: Literal["script", "viewer"] = "script",
                 basis_format: Literal["float32", "int16", "int8"] = "float32"):
        assert neutral.batch_size == 1, f"one avatar per BlendshapeAvatar, got batch {neutral.batch_size}"
        m = neutral.num_gaussians
        dev, dtype = neutral.device, neutral.means.dtype
        self.neutral = neutral
        assert finish in ("script", "viewer"), finish
        self.authors, self.finish = basis.attribute_space == "authors", finish
        self.neutral_flat = attribute_groups(neutral, basis.attribute_space)
        assert basis_format in BASIS_FORMATS, basis_format
        self.basis_format = basis_format
        if basis_format != "float32":  # CPU only: the kernel is numba's
            assert dev.type == "cpu" and dtype == torch.float32, f"the {basis_format} basis blends float32 on a CPU"
            self.blendshapes = {g: FixedPointBasis.quantize(basis.basis[g], basis_format) for g in RESIDUAL_GROUPS}
        else:
            self.blendshapes = {g: basis.basis[g].to(device=dev, dtype=dtype) for g in RESIDUAL_GROUPS}
        for g, d in RESIDUAL_GROUPS.items():
            shape = self.blendshapes[g].shape if basis_format == "float32" else self.blendshapes[g].codes.shape
            assert shape[1] == m * d, (g, shape, m, d)
        self.mlp = mlp.to(dev) if mlp is not None else None
        self.w = None if w is None else w.reshape(1, -1).to(device=dev, dtype=dtype)
        assert mlp is None or (self.w is not None and self.w.shape[1] == mlp.w_dim), "the regressor needs w [1, w_dim]"

    @property
    def k(self) -> int:
        xyz = self.blendshapes["xyz"]
        return xyz.shape[0] if self.basis_format == "float32" else xyz.k

    @staticmethod
    @torch.no_grad()
    def from_generator(generator: "AgoraGenerator", cache: "IdentityCache", basis: GaussianBasis,
                       mlp: CoefficientMLP | None = None, basis_format: str = "float32") -> "BlendshapeAvatar":
        """The neutral of a cached identity (batch 1) through the full model, once (eq. 11's first term)."""
        assert cache.batch_size == 1, cache.batch_size
        neutral = generator.animate(cache, FlameParams.zeros(1, n_expr=generator.head.num_expr, device=cache.ws.device),
                                    noise_mode="const").gaussians
        return BlendshapeAvatar(neutral, basis, mlp, cache.ws[:, 0], basis_format=basis_format)

    @property
    def basis_bytes(self) -> int:
        """Bytes the blendshapes hold in memory (for fixed point: codes and amplitudes)."""
        return sum(u.numel() * u.element_size() if isinstance(u, Tensor) else u.nbytes for u in self.blendshapes.values())

    def coefficients(self, flame: FlameParams) -> dict[str, Tensor]:
        """(c_1 … c_K) per group = f_mlp(w, ψ, θ) (eq. 10) of B frames (expression, jaw, eyelids read)."""
        assert self.mlp is not None, "this avatar has no regressor: pass coefficients to blend()"
        b = flame.batch_size
        e = expression_condition(flame, self.mlp.expr_dim).to(self.w.dtype)
        return self.mlp.coefficients(torch.cat([self.w.expand(b, -1), e], dim=1))

    def blend(self, coefficients: dict[str, Tensor]) -> GaussianSet:
        """𝒜^M = neutral + Σ_k c_k U_k (eq. 11), then unit quaternions and opacity in [0, 1].

        Args:
            coefficients: {group: [B, K']} with K' ≤ K (the first K' blendshapes are used).
        Returns:
            B sets of M Gaussians with the neutral's colours.
        """
        b = coefficients["xyz"].shape[0]
        m = self.neutral.num_gaussians
        attrs = {}
        for g, d in RESIDUAL_GROUPS.items():
            c = coefficients[g]
            assert c.shape[0] == b and c.shape[1] <= self.k, (g, c.shape, self.k)
            if self.basis_format != "float32":  # the kernel also makes the quaternions unit
                flat = self.blendshapes[g].blend(self.neutral_flat[g][0], c, unit_quaternions=g == "rotation")
            else:
                u = self.blendshapes[g][: c.shape[1]]
                flat = torch.addmm(self.neutral_flat[g], c.to(u.dtype), u)
            attrs[g] = flat.reshape(b, m, d)
        quats = attrs["rotation"] if self.basis_format != "float32" else normalize_quat(attrs["rotation"])
        if self.authors:  # their constraints (and, in their script, their renderer's column normalisation)
            o = AUTHORS_OPACITY_OVERSHOOT if self.finish == "script" else 0.0
            log_scales, opacities = attrs["scale"].clamp_min(AUTHORS_MIN_SCALE).log(), attrs["opacity"][..., 0].clamp(-o, 1 + o)
            quats = normalize_quat_columns(quats) if self.finish == "script" else quats
        else:
            log_scales, opacities = attrs["scale"], attrs["opacity"][..., 0].clamp(0.0, 1.0)
        return GaussianSet(means=attrs["xyz"], log_scales=log_scales, quats=quats,
                           sh=self.neutral.sh.expand(b, -1, -1, -1), opacities=opacities)

    def animate(self, flame: FlameParams) -> GaussianSet:
        """Posed Gaussians of this avatar for B frames: f_mlp then eq. 11 (expression, jaw, eyelids
        animate it; shape, neck and eyes are not read)."""
        return self.blend(self.coefficients(flame))
