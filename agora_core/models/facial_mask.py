"""Facial residual mask: the Gaussians whose attributes the deformation branch may change (sec. 3.4).

The authors multiply the residual planes by a hand-made binary facial UV mask of their template.
We derive the mask from the head model itself, so it works for real FLAME (with or without the
mouth interior) and for the procedural demo head alike: a vertex is *facial* when an expression
can move it — its largest expression/eyelid blendshape displacement exceeds `EXPR_FRACTION` of the
model's largest one, or its jaw skinning weight exceeds `JAW_WEIGHT`. The mouth interior inherits
lip blendshapes and jaw weights (appendix 0.B.1.1), so it is facial by the same rule. The set is
dilated by one ring of mesh neighbours (residuals may refine the border where the mesh motion
fades out), and a UV sample is facial when any corner of its face is.
"""

from __future__ import annotations

import torch
from torch import Tensor

from agora_core.head import HeadModel, UVSamples
from agora_core.head.regions import JAW

EXPR_FRACTION = 0.02  # of the model's largest per-vertex expression displacement
JAW_WEIGHT = 0.05  # jaw skinning weight above which a vertex follows the jaw noticeably


def expression_magnitude(head: HeadModel) -> Tensor:
    """[V] largest displacement norm of a vertex over the expression and eyelid blendshapes.

    `HeadModel.blendshapes` is [V, 3, S + E (+2)]: shape first, then expression, then eyelids.
    """
    dirs = head.blendshapes[:, :, head.num_shape:]
    if dirs.shape[2] == 0:
        return head.blendshapes.new_zeros(head.num_vertices)
    return dirs.norm(dim=1).amax(dim=1)


def dilate_vertex_mask(mask: Tensor, faces: Tensor, rings: int = 1) -> Tensor:
    """Grow a vertex set by `rings` rings: a vertex joins when it shares a face with a member.

    Args:
        mask: [V] bool.
        faces: [F, 3] long.
    Returns:
        [V] bool.
    """
    assert mask.ndim == 1 and faces.ndim == 2 and faces.shape[1] == 3, (mask.shape, faces.shape)
    faces = faces.long()
    for _ in range(rings):
        touched = mask[faces].any(dim=1)  # [F] faces with a member corner
        grown = mask.clone()
        grown[faces[touched].reshape(-1)] = True
        mask = grown
    return mask


def facial_vertex_mask(head: HeadModel, expr_fraction: float = EXPR_FRACTION,
                       jaw_weight: float = JAW_WEIGHT, rings: int = 1) -> Tensor:
    """[V] bool: vertices an expression or the jaw moves, dilated by `rings` rings."""
    magnitude = expression_magnitude(head)
    peak = magnitude.max() if magnitude.numel() else magnitude.new_zeros(())
    moved = magnitude > expr_fraction * peak if peak > 0 else torch.zeros_like(magnitude, dtype=torch.bool)
    moved = moved | (head.lbs_weights[:, JAW] > jaw_weight)
    return dilate_vertex_mask(moved, head.faces, rings)


def facial_sample_mask(head: HeadModel, samples: UVSamples, expr_fraction: float = EXPR_FRACTION,
                       jaw_weight: float = JAW_WEIGHT, rings: int = 1) -> Tensor:
    """Per-Gaussian residual mask: 1 where a corner of the sample's face is facial, else 0.

    Args:
        head: the FLAME-format head model.
        samples: the M UV sample points.
    Returns:
        [M] float32 of 0/1.
    """
    vertex_mask = facial_vertex_mask(head, expr_fraction, jaw_weight, rings)
    corners = head.faces.long()[samples.face_idx.to(head.faces.device)]  # [M, 3]
    return vertex_mask[corners].any(dim=1).float()
