"""A small AGORA-M avatar built from the procedural demo head, for the viewer's tests, benchmark and
screenshot when no trained checkpoint is at hand.

- Neutral Gaussians: flat splats on the neutral demo-head surface at its UV sample points (eq. 4-5),
  coloured by region (skin, hair, lips, eyes, mouth) with a fixed Lambert light.
- Basis (eq. 9): the xyz group is the SVD of real mesh residuals (posed − neutral sample points under
  random expressions, jaw and eyelids), so the jaw moves the mouth as in a trained model; the scale,
  rotation and opacity groups are random orthonormal bases (on the Gaussians the mesh moves, zero
  elsewhere) with small random coefficients, so every group of the viewer's blend is exercised.
- MLP (eq. 10): a `CoefficientMLP` with one hidden layer (LeakyReLU 0.2), with non-trivial input
  normalisation and w. Its xyz part is linear in the parameters — hidden pairs leaky(x) − leaky(−x)
  = 1.2·x — fitted by least squares to the SVD coefficients; the other groups use random hidden units
  of [w, e].
Files are written in exactly the `basis.safetensors` / `mlp.safetensors` layouts.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from agora_core.export.web_bundle import NUM_PARAMS, PARAM_DIMS
from agora_core.gaussians import GaussianSet, rgb_to_sh0, rotmat_to_quat
from agora_core.head import FlameParams, HeadModel, add_mouth_interior, interpolate, sample_uv_grid
from agora_core.head.demo_head import build_demo_head
from agora_core.mobile.basis_file import GaussianBasis
from agora_core.mobile.coefficient_mlp import CoefficientMLP
from agora_core.mobile.residuals import RESIDUAL_GROUPS

REGION_COLOURS = {  # albedo per demo-head region (later entries win)
    "face_vertices": (0.86, 0.67, 0.55), "neck_vertices": (0.80, 0.62, 0.50), "ear_vertices": (0.84, 0.64, 0.52),
    "hair_vertices": (0.25, 0.16, 0.10), "brow_vertices": (0.20, 0.13, 0.08), "lip_vertices": (0.75, 0.35, 0.35),
    "eye_vertices": (0.92, 0.92, 0.90), "mouth_cavity": (0.45, 0.12, 0.12), "upper_teeth": (0.95, 0.95, 0.90),
    "lower_teeth": (0.95, 0.95, 0.90),
}
LIGHT = (0.35, 0.55, 0.75)
LEAKY_SLOPE = 0.2


@dataclass
class DemoAgoraM:
    neutral: GaussianSet  # batch 1, M Gaussians, SH degree 0
    w: Tensor  # [w_dim]
    basis: GaussianBasis
    mlp: CoefficientMLP
    head: HeadModel


def _random_params(n: int, g: torch.Generator) -> Tensor:
    """[n, 55] expressions (first 10 comps ~ N(0, 1)), jaw opening in [0, 0.4] rad, eyelids in [0, 1]."""
    p = torch.zeros(n, NUM_PARAMS)
    p[:, :10] = torch.randn(n, 10, generator=g)
    p[:, 50] = 0.4 * torch.rand(n, generator=g)
    p[:, 51:53] = 0.05 * torch.randn(n, 2, generator=g)
    p[:, 53:55] = torch.rand(n, 2, generator=g)
    return p


def sample_points(head: HeadModel, samples, params: Tensor) -> Tensor:
    """Posed demo-head points at the UV samples for parameter vectors [B, 55] -> [B, M, 3]."""
    verts = head(FlameParams(expression=params[:, :50], jaw=params[:, 50:53], eyelids=params[:, 53:55]))
    return interpolate(verts, head.faces, samples)


def _vertex_colours(head: HeadModel, extras: dict) -> Tensor:
    v = head.num_vertices
    albedo = torch.tensor(REGION_COLOURS["face_vertices"]).repeat(v, 1)
    for key, colour in REGION_COLOURS.items():
        if key in extras:
            albedo[torch.as_tensor(extras[key]).long()] = torch.tensor(colour)
    verts = head.v_template[None].float()
    faces = head.faces.long()
    tri = verts[0][faces]
    normals = torch.zeros(v, 3).index_add_(0, faces.reshape(-1), torch.linalg.cross(
        tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]).repeat_interleave(3, 0))
    normals = F.normalize(normals, dim=1)
    light = F.normalize(torch.tensor(LIGHT), dim=0)
    return albedo * (0.5 + 0.5 * (normals @ light).clamp_min(0))[:, None]


def _surface_splats(head: HeadModel, samples, grid: int) -> tuple[Tensor, Tensor]:
    """Flat splats covering the surface: per sample, axes along the UV directions of its face and
    standard deviations of 0.6 texel there (so neighbours overlap even where the UV is stretched),
    thin along the normal. Returns rotation matrices [M, 3, 3] (columns = axes) and log-scales [M, 3]."""
    faces = head.faces.long()[samples.face_idx]
    tri = head.v_template.float()[faces]  # [M, 3, 3]
    uv = head.uv_coords.float()[head.uv_faces.long()[samples.face_idx]]  # [M, 3, 2]
    edges = torch.stack([tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]], dim=2)  # [M, 3, 2]
    duv = torch.stack([uv[:, 1] - uv[:, 0], uv[:, 2] - uv[:, 0]], dim=2)  # [M, 2, 2]
    det = duv[:, 0, 0] * duv[:, 1, 1] - duv[:, 0, 1] * duv[:, 1, 0]
    duv = duv + (det.abs() < 1e-12)[:, None, None] * torch.eye(2)  # degenerate UV faces: any frame
    jac = edges @ torch.linalg.inv(duv)  # [M, 3, 2]: dP/du, dP/dv
    normal = F.normalize(torch.linalg.cross(edges[..., 0], edges[..., 1]), dim=1)
    t1 = F.normalize(jac[..., 0], dim=1)
    t2 = torch.linalg.cross(normal, t1)
    s1 = 0.6 * jac[..., 0].norm(dim=1) / grid
    s2 = 0.6 * (jac[..., 1] * t2).sum(1).abs() / grid
    texel = torch.stack([s1, s2], 1).clamp(1e-4, 0.02)
    log_scales = torch.log(torch.cat([texel, 0.25 * texel.min(1, keepdim=True).values], dim=1))
    return torch.stack([t1, t2, normal], dim=2), log_scales


@torch.no_grad()
def surface_gaussians(head: HeadModel, samples, grid: int) -> GaussianSet:
    """The neutral splats (module docstring) at the UV samples of an N×N grid (`grid` = N): batch 1,
    SH degree 0, opacity 0.92, coloured by the head's regions (`head.extras`)."""
    points0 = sample_points(head, samples, torch.zeros(1, NUM_PARAMS))
    colours = interpolate(_vertex_colours(head, head.extras)[None], head.faces, samples)[0]
    frame, log_scales = _surface_splats(head, samples, grid)
    return GaussianSet(points0, log_scales[None], rotmat_to_quat(frame)[None], rgb_to_sh0(colours)[None],
                       torch.full((1, samples.num_samples), 0.92))


def _orthonormal_rows(k: int, dim: int, g: torch.Generator) -> Tensor:
    q, _ = torch.linalg.qr(torch.randn(dim, k, generator=g))
    return q.T.contiguous()


def build_demo_agora_m(grid: int = 48, k: int = 16, w_dim: int = 8, extra_hidden: int = 24, num_tuples: int = 160,
                       other_groups_strength: float = 1.0, seed: int = 0) -> DemoAgoraM:
    """The demo avatar (module docstring); `grid` = UV sample grid (48 → ~1.4 K Gaussians, 128 → ~10 K)."""
    g = torch.Generator().manual_seed(seed)
    assets = add_mouth_interior(build_demo_head())
    head = HeadModel(assets).eval()
    samples = sample_uv_grid(head.uv_coords, head.uv_faces, grid)
    m = samples.num_samples
    with torch.no_grad():
        neutral = surface_gaussians(head, samples, grid)
        points0 = neutral.means
        params = _random_params(num_tuples, g)
        residual = (sample_points(head, samples, params) - points0).reshape(num_tuples, -1)
    _, _, vh = torch.linalg.svd(residual, full_matrices=False)
    bases = {"xyz": vh[:k].reshape(k, m, 3).contiguous()}
    # The other groups act where the mesh moves (as AGORA's facial residual mask confines its residuals);
    # Gaussians that never move keep exactly zero blendshapes, like a real basis.
    moving = torch.nonzero(residual.reshape(num_tuples, m, 3).abs().amax(dim=(0, 2)) > 0)[:, 0]
    for grp, d in list(RESIDUAL_GROUPS.items())[1:]:
        bases[grp] = torch.zeros(k, m, d)
        bases[grp][:, moving] = _orthonormal_rows(k, len(moving) * d, g).reshape(k, len(moving), d)
    coeff_xyz = residual @ vh[:k].T  # [P, K]
    design = torch.cat([params, torch.ones(num_tuples, 1)], dim=1)
    linear = torch.linalg.lstsq(design, coeff_xyz).solution  # [56, K]: c ≈ B e + c0
    b_lin, c0 = linear[:NUM_PARAMS].T, linear[NUM_PARAMS]
    w = torch.randn(w_dim, generator=g)
    mlp = _demo_mlp(b_lin, c0, w_dim, extra_hidden, k, len(moving), other_groups_strength, g)
    basis = GaussianBasis.from_blendshapes(bases, n=num_tuples, seed=seed, source_checkpoint="demo head")
    return DemoAgoraM(neutral, w, basis, mlp, head)


def _demo_mlp(b_lin: Tensor, c0: Tensor, w_dim: int, extra: int, k: int, moving: int, strength: float,
              g: torch.Generator) -> CoefficientMLP:
    """Effective layers on raw x = [w, e], then folded into the stored (normalised-input) form."""
    i_dim, e = w_dim + NUM_PARAMS, NUM_PARAMS
    eye = torch.eye(e)
    w0_eff = torch.zeros(2 * e + extra, i_dim)
    w0_eff[:e, w_dim:] = eye
    w0_eff[e:2 * e, w_dim:] = -eye
    w0_eff[2 * e:] = 0.3 * torch.randn(extra, i_dim, generator=g)
    b0_eff = torch.cat([torch.zeros(2 * e), 0.1 * torch.randn(extra, generator=g)])
    w1 = torch.zeros(4 * k, 2 * e + extra)
    w1[:k, :e] = b_lin / (1 + LEAKY_SLOPE)
    w1[:k, e:2 * e] = -b_lin / (1 + LEAKY_SLOPE)
    per_gaussian = {"scale": 0.08, "rotation": 0.04, "opacity": 0.04}  # target residual size per Gaussian
    for gi, grp in enumerate(list(RESIDUAL_GROUPS)[1:], start=1):
        gain = strength * per_gaussian[grp] * (moving * RESIDUAL_GROUPS[grp] / k) ** 0.5 / extra ** 0.5
        w1[gi * k:(gi + 1) * k, 2 * e:] = gain * torch.randn(k, extra, generator=g)
    b1 = torch.cat([c0, torch.zeros(3 * k)])
    mean = 0.1 * torch.randn(i_dim, generator=g)
    std = 0.5 + torch.rand(i_dim, generator=g)
    # h = W0 (x − mean) / std + b0 == W0_eff x + b0_eff  <=>  W0 = W0_eff·diag(std), b0 = b0_eff + W0_eff·mean
    mlp = CoefficientMLP(w_dim, PARAM_DIMS["expression"], k, 2 * e + extra)
    mlp.load_state_dict({"layers.0.weight": w0_eff * std[None], "layers.0.bias": b0_eff + w0_eff @ mean,
                         "layers.1.weight": w1, "layers.1.bias": b1, "input_mean": mean, "input_std": std})
    return mlp.eval()


def write_demo_bundle(out_dir, grid: int = 48, k: int = 16, other_groups_strength: float = 1.0, seed: int = 0):
    """A web bundle of the demo avatar (tests, browser benchmark, screenshots without a checkpoint)."""
    from agora_core.export.web_bundle import write_web_bundle

    d = build_demo_agora_m(grid=grid, k=k, other_groups_strength=other_groups_strength, seed=seed)
    return write_web_bundle(out_dir, d.neutral, d.w, d.basis, d.mlp,
                            source={"avatar": f"demo head (grid {grid}, K {k}, seed {seed})"})
