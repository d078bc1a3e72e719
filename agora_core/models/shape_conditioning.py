"""Spatial shape conditioning (paper sec. 3.3, eq. 6): the UV-aligned shape displacement map.

ΔV_shape(β) = M(β, ψ0, θ0) − M(β0, ψ0, θ0) is baked into UV space (3 channels, xyz in metres,
zero outside the UV islands). The generator concatenates it to the input of every modulated conv
of the identity branch (`ModulatedConv(cond_channels=3)`), which resizes it to the layer's
resolution and divides it by its per-sample standard deviation ("per-sample variance
normalisation"). That normalisation lives in `ModulatedConv` only: the map returned here is in
metres and must not be normalised again. At β = β0 the map is exactly zero (and stays zero after
normalisation: 0 / sqrt(0 + eps²)).
"""

from __future__ import annotations

from torch import Tensor

from agora_core.head import FlameParams, HeadModel, UVRasterMap


def neutral_parameters(head: HeadModel, batch: int, shape: Tensor | None = None) -> FlameParams:
    """(β, ψ0, θ0): zero expression, pose and eyelids, the mean shape where `shape` is None."""
    params = head.zero_params(batch)
    return params if shape is None else params.replace(shape=shape.to(params.shape.dtype))


def shape_displacement(head: HeadModel, shape: Tensor) -> Tensor:
    """Per-vertex ΔV_shape(β) = M(β, ψ0, θ0) − M(β0, ψ0, θ0) (eq. 6).

    Args:
        shape: [B, S] FLAME shape coefficients β (missing trailing ones are zero).
    Returns:
        [B, V, 3] displacements, metres.
    """
    assert shape.ndim == 2, shape.shape
    b = shape.shape[0]
    shaped = head(neutral_parameters(head, b, shape))
    neutral = head(neutral_parameters(head, 1))
    return shaped - neutral


def shape_displacement_map(head: HeadModel, shape: Tensor, raster: UVRasterMap) -> Tensor:
    """UV-baked shape displacement map of eq. (6), the condition of the identity branch.

    Args:
        head: the FLAME-format head model.
        shape: [B, S] β.
        raster: texel -> (face, barycentrics) map of head's UV layout at the plane resolution R.
    Returns:
        [B, 3, R, R] ΔV_shape baked to UV (metres, zero outside islands; not normalised).
    """
    delta = shape_displacement(head, shape)
    if raster.face_idx.device != delta.device:
        raster = raster.to(delta.device)
    out = raster.bake(delta, head.faces)
    r = raster.resolution
    assert out.shape == (shape.shape[0], 3, r, r), out.shape
    return out


__all__ = ["neutral_parameters", "shape_displacement", "shape_displacement_map"]
