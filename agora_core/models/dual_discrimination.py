"""Dual-discrimination cue S(ψ) (paper sec. 3.6, eq. 8; Table 3 ablation).

"displacement" (ours, the paper's): the zero-shape mesh posed with the sample's expression,
coloured by its expression-isolated displacement ΔV = V_posed − V_neutral (eq. 8) with
V_posed = M(β0, ψ, θ) and V_neutral = M(β0, ψ0, θ0). The colours are signed: a splat's colour is
0.5 + ΔV / (2·scale) clamped to [0, 1], rendered on black, and the cue is 2·(rgb − 0.5·alpha), i.e.
≈ clamp(ΔV / scale, −1, 1) on the surface, exactly zero on the background and exactly zero
everywhere at the neutral expression. Eq. (8) writes θ0 for V_posed, but the jaw opening is the
largest expression-driven displacement (and the paper reports AED-jaw), so the jaw is included by
default; `include_jaw=False` follows eq. (8) literally. Eyelids (part of the expression vector e)
are included; neck and eye rotations and the global pose are zero (the camera orbits the head).

"uv" (Next3D-style, the authors' code): same geometry coloured (u, v, (2 − u − v)/2), in [0, 1] on
black. "none" and "projection" have no image cue (None).

The mesh is drawn as a dense splat of its UV samples: flat, surface-aligned Gaussians of opacity 1
sized by the local sample spacing (`splat_shapes`), so the surface is covered without holes at any
resolution (the renderer's 0.3 px² low-pass covers the sub-pixel case), rendered by `rasterize()`.
No gradients: the cue is an input of D, never a function of G's parameters.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from agora_core.gaussians import GaussianSet, rgb_to_sh0, rotmat_to_quat
from agora_core.head import FlameParams, HeadModel, UVSamples, interpolate
from agora_core.render import Camera, rasterize

CueMode = Literal["none", "projection", "uv", "displacement"]
CUE_CHANNELS = 3  # the image cue's channels ("uv" and "displacement")
SPLAT_SIGMA = 0.6  # in-surface splat std-dev in units of the local sample spacing: hole-free overlap
SPLAT_THICKNESS = 0.1  # normal std-dev relative to the smaller in-surface one (a flat disc)
MIN_SIGMA = 1e-5  # metres; floor for splats on degenerate faces


def _triangle_areas_uv(uv: Tensor, faces: Tensor) -> Tensor:
    """[F] areas of the UV triangles uv[faces] (uv [T, 2], faces [F, 3])."""
    p = uv[faces.long()]
    e1, e2 = p[:, 1] - p[:, 0], p[:, 2] - p[:, 0]
    return 0.5 * (e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]).abs()


def uv_jacobians(vertices: Tensor, head: HeadModel) -> Tensor:
    """[F, 3, 2] d(position)/d(u, v) of every face: the 3D step of a unit UV step on the surface."""
    p = vertices[head.faces.long()]  # [F, 3, 3]
    t = head.uv_coords.to(vertices.dtype)[head.uv_faces.long()]  # [F, 3, 2]
    dp = torch.stack([p[:, 1] - p[:, 0], p[:, 2] - p[:, 0]], dim=2)  # [F, 3, 2]
    dt = torch.stack([t[:, 1] - t[:, 0], t[:, 2] - t[:, 0]], dim=2)  # [F, 2, 2]
    det = dt[:, 0, 0] * dt[:, 1, 1] - dt[:, 0, 1] * dt[:, 1, 0]
    safe = torch.where(det.abs() > 1e-12, det, torch.ones_like(det))
    inv = torch.stack([torch.stack([dt[:, 1, 1], -dt[:, 0, 1]], 1), torch.stack([-dt[:, 1, 0], dt[:, 0, 0]], 1)], 1)
    return dp @ (inv / safe[:, None, None]) * (det.abs() > 1e-12)[:, None, None]


def splat_shapes(vertices: Tensor, head: HeadModel, samples: UVSamples) -> tuple[Tensor, Tensor]:
    """Surface-aligned splat frames: (quats [M, 4] wxyz, log_scales [M, 3]).

    The samples form a regular UV grid of step h (h² = UV area of the sampled faces / M), so
    around a sample on face f its neighbours sit at J_f·(±h, 0) and J_f·(0, ±h) with J_f the
    face's UV Jacobian. With J_f = U S Vᵀ the splat's in-surface axes are U's columns with std-devs
    SPLAT_SIGMA·h·S, and its normal axis is thin (SPLAT_THICKNESS of the smaller one): hole-free
    even where the UV layout is stretched (FLAME's filled back of the head, the mouth interior).

    Args:
        vertices: [V, 3] a (neutral) mesh of `head`.
    """
    face_idx = samples.face_idx.to(vertices.device)
    area_uv = _triangle_areas_uv(head.uv_coords.to(vertices.dtype), head.uv_faces)
    sampled = torch.zeros_like(area_uv, dtype=torch.bool)
    sampled[face_idx] = True
    step = torch.sqrt(area_uv[sampled].sum() / samples.num_samples)
    u, s, _ = torch.linalg.svd(uv_jacobians(vertices, head)[face_idx], full_matrices=False)  # [M,3,2], [M,2]
    normal = torch.linalg.cross(u[..., 0], u[..., 1])
    frame = torch.stack([u[..., 0], u[..., 1], normal], dim=2)  # right-handed: det = +1
    sigma = (SPLAT_SIGMA * step * s).clamp_min(MIN_SIGMA)
    scales = torch.cat([sigma, (SPLAT_THICKNESS * sigma[:, 1:]).clamp_min(MIN_SIGMA)], dim=1)
    return rotmat_to_quat(frame), scales.log()


def cue_meshes(head: HeadModel, flame: FlameParams, include_jaw: bool = True) -> tuple[Tensor, Tensor]:
    """(V_posed, V_neutral) [B, V, 3] of eq. (8): zero shape, the sample's ψ (and jaw, eyelids).

    The head is evaluated one row at a time: its batched matmuls round differently for different
    batch sizes (~1e-8 m), and a row's cue must not depend on the rows beside it, so that cues
    cached per dataset row (`agora_core.train.sampling.CueCache`) equal freshly rendered ones bit
    for bit. Every call has batch shape 1, so a neutral row is bit-identical to V_neutral (ΔV = 0).
    """
    b = flame.batch_size
    neutral_params = head.zero_params(1)
    neutral = head(neutral_params)
    dtype = neutral_params.jaw.dtype
    posed = []
    for i in range(b):
        row = flame[i].to(dtype=dtype)
        params = neutral_params.replace(expression=row.expression, eyelids=row.eyelids,
                                        jaw=row.jaw if include_jaw else neutral_params.jaw)
        posed.append(head(params))
    return torch.cat(posed), neutral.expand(b, -1, -1)


def mesh_splats(points: Tensor, colours: Tensor, shapes: tuple[Tensor, Tensor]) -> GaussianSet:
    """Opaque splats: points [B, M, 3], colours [B, M, 3] in [0, 1], shapes from `splat_shapes`."""
    b, m, _ = points.shape
    quats, log_scales = (t.to(points.dtype)[None].expand(b, m, t.shape[-1]) for t in shapes)
    return GaussianSet(means=points, log_scales=log_scales, quats=quats, sh=rgb_to_sh0(colours),
                       opacities=points.new_ones(b, m))


def uv_colours(samples: UVSamples) -> Tensor:
    """[M, 3] Next3D-style colours (u, v, (2 − u − v)/2) of the samples."""
    u, v = samples.x_uv[:, 0], samples.x_uv[:, 1]
    return torch.stack([u, v, (2 - u - v) / 2], dim=1)


@torch.no_grad()
def dual_discrimination_cue(head: HeadModel, flame: FlameParams, cameras: Camera, resolution: int,
                            mode: CueMode, samples: UVSamples, displacement_scale: float = 0.01,
                            include_jaw: bool = True) -> Tensor | None:
    """The synthetic rendering S(ψ) concatenated to D's input (sec. 3.6, eq. 8).

    Args:
        head: the FLAME-format head model.
        flame: uses expression [B, E], jaw [B, 3], eyelids [B, 2] (shape, neck and eyes are zero).
        cameras: B cameras (the sample's own view).
        resolution: output size H = W.
        mode: "displacement" | "uv" | "none" | "projection".
        samples: UV sample points drawn as splats (e.g. `AgoraGenerator.samples`).
        displacement_scale: |ΔV| in metres that maps to full colour (±1).
        include_jaw: pose V_posed with the jaw (default) or not (eq. 8 literally).
    Returns:
        [B, 3, H, W] (displacement: ≈ clamp(ΔV/scale, −1, 1)·coverage; uv: colours in [0, 1]),
        or None for "none"/"projection".
    """
    assert mode in ("none", "projection", "uv", "displacement"), mode
    if mode in ("none", "projection"):
        return None
    assert displacement_scale > 0, displacement_scale
    b = flame.batch_size
    posed, neutral = cue_meshes(head, flame, include_jaw)
    samples = samples.to(posed.device)
    points = interpolate(posed, head.faces, samples)
    shapes = splat_shapes(neutral[0], head, samples)
    if mode == "displacement":
        delta = interpolate(posed - neutral, head.faces, samples)
        colours = (0.5 + delta / (2 * displacement_scale)).clamp(0.0, 1.0)
    else:
        colours = uv_colours(samples).to(points.dtype)[None].expand(b, -1, -1)
    rgb, alpha = rasterize(mesh_splats(points, colours, shapes), cameras, resolution, resolution, background=0.0)
    if mode == "displacement":
        return 2 * (rgb - 0.5 * alpha)
    return rgb
