"""Posed-minus-neutral Gaussian attribute residuals ΔA (paper sec. 3.7, eq. 9).

Residuals are taken in the spaces where the generator composes its attributes (sec. 3.4,
docs/architecture.md "AGORA-M files"), one group each:

    xyz      world metres, 3 per Gaussian
    scale    log-scale, 3 (the deformation branch adds log-scales, so posed − neutral is exactly
             its residual and a linear basis fits it best)
    rotation unit quaternion wxyz, 4 (renormalised after blending)
    opacity  post-sigmoid, 1 (clamped to [0, 1] after blending)

A group's row is the Gaussian-major flattening [M·D] (Gaussian 0's D values, then Gaussian 1's…).
Colour is not animated and has no group.
"""

from __future__ import annotations

from torch import Tensor

from agora_core.gaussians import GaussianSet

# group -> values per Gaussian D_g, in the order coefficients are laid out everywhere
RESIDUAL_GROUPS: dict[str, int] = {"xyz": 3, "scale": 3, "rotation": 4, "opacity": 1}


def attribute_space(generator) -> str:
    """The residual spaces of a generator's AGORA-M: "authors" for imported models (linear scale,
    their column-normalised quaternions), else "paper" (log-scale, unit quaternions)."""
    return "authors" if generator.config.attribute_layout == "authors" else "paper"


def attribute_groups(gaussians: GaussianSet, space: str = "paper") -> dict[str, Tensor]:
    """The animated attributes 𝒜 of a Gaussian set, flattened per group.

    Args:
        gaussians: B sets of M Gaussians.
        space: "paper" (scale as log-scale) or "authors" (linear scale, as their AGORA-M).
    Returns:
        {"xyz": [B, M·3], "scale": [B, M·3], "rotation": [B, M·4], "opacity": [B, M]}.
    """
    assert space in ("paper", "authors"), space
    b = gaussians.batch_size
    scale = gaussians.log_scales.exp() if space == "authors" else gaussians.log_scales
    return {"xyz": gaussians.means.reshape(b, -1), "scale": scale.reshape(b, -1),
            "rotation": gaussians.quats.reshape(b, -1), "opacity": gaussians.opacities.reshape(b, -1)}


def attribute_residuals(posed: GaussianSet, neutral: GaussianSet, space: str = "paper") -> dict[str, Tensor]:
    """ΔA = 𝒜(w, β, ψ, θ) − 𝒜(w, β, ψ0, θ0) per group (eq. 9).

    Args:
        posed: B posed sets of M Gaussians.
        neutral: the same identities at zero expression / jaw / eyelids, B sets (or 1, broadcast).
        space: the residual spaces (`attribute_groups`).
    Returns:
        {group: [B, M·D_g]} float residuals.
    """
    assert posed.num_gaussians == neutral.num_gaussians, (posed.num_gaussians, neutral.num_gaussians)
    assert neutral.batch_size in (1, posed.batch_size), (neutral.batch_size, posed.batch_size)
    p, n = attribute_groups(posed, space), attribute_groups(neutral, space)
    return {g: p[g] - n[g] for g in RESIDUAL_GROUPS}


def group_sizes(num_gaussians: int) -> dict[str, int]:
    """{group: M·D_g}: the length of a group's residual row."""
    return {g: num_gaussians * d for g, d in RESIDUAL_GROUPS.items()}
