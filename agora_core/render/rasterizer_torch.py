"""Pure-PyTorch differentiable 3DGS rasterizer for the CPU (sparse (pixel, Gaussian) pairs).

Semantics are gsplat 1.5.3's "classic" CUDA rasterizer, so both backends draw the same image:
per pair ``alpha = min(0.999, o · exp(-½ dᵀ conic d))`` with d from the Gaussian's 2D mean to the
pixel centre; pairs with ``alpha < 1/255`` are skipped; front-to-back compositing
``C = Σ_i c_i α_i T_i + (1 − Σ_i α_i T_i) · background`` with ``T_i = Π_{j<i} (1 − α_j)``; a pixel
stops before the Gaussian that would bring its transmittance to ``<= 1e-4``.

Fast path (`rasterize_torch`): instead of every pixel against every Gaussian, only the pairs that
contribute are visited -- O(coverage) work. They are found without autograd (pairs.py: footprint
rows, occlusion culling), sorted by (pixel, depth), and re-evaluated with autograd; transmittance
is a segmented exclusive cumulative sum of log(1 − α) per pixel, colours are accumulated with
index_add. Everything is batched over images.

Slow reference (`rasterize_reference`): dense, one Gaussian at a time front to back, a literal
transcription of the gsplat kernel. Tests only (tiny scenes).
"""

from __future__ import annotations

import torch
from torch import Tensor

from agora_core.gaussians import GaussianSet
from agora_core.render.cameras import Camera
from agora_core.render.pairs import (
    ALPHA_MAX,
    T_MIN,
    pair_alpha,
    segment_starts,
    segmented_exclusive_cumsum,
    visible_pairs,
)
from agora_core.render.projection import (
    ALPHA_MIN,
    NEAR_PLANE,
    Projection,
    covariance_3d,
    project_gaussians,
    view_directions,
)


def screen_space(
    gaussians: GaussianSet, cameras: Camera, width: int, height: int
) -> tuple[Projection, Tensor]:
    """Project B Gaussian sets, set b into camera b: (Projection, view-dependent colours [B, N, 3])."""
    assert gaussians.batch_size == cameras.batch_size, (gaussians.batch_size, cameras.batch_size)
    covars = covariance_3d(gaussians.quats, gaussians.scales())
    ks = cameras.pixel_intrinsics(width, height).to(gaussians.means.dtype)
    world2cam = cameras.world2cam().to(gaussians.means.dtype)
    proj = project_gaussians(
        gaussians.means, covars, world2cam, ks, width, height, gaussians.opacities
    )
    return proj, view_colors(gaussians, cameras)


def view_colors(gaussians: GaussianSet, cameras: Camera) -> Tensor:
    """[B, N, 3] colours of set b seen from camera b (SH degree 0 needs no view direction)."""
    dirs = None
    if gaussians.sh_degree > 0:
        dirs = view_directions(gaussians.means, cameras.position().to(gaussians.means.dtype))
    return gaussians.colors(dirs)


def rasterize_torch(
    gaussians: GaussianSet, cameras: Camera, width: int, height: int, background: Tensor
) -> tuple[Tensor, Tensor]:
    """Render set b through camera b: (rgb [B, 3, H, W], alpha [B, 1, H, W]); background [B, 3]."""
    proj, colors = screen_space(gaussians, cameras, width, height)
    return composite_sparse(proj, gaussians.opacities, colors, width, height, background)


def composite_sparse(
    proj: Projection,
    opacities: Tensor,  # [B, N]
    colors: Tensor,  # [B, N, 3]
    width: int,
    height: int,
    background: Tensor,  # [B, 3]
) -> tuple[Tensor, Tensor]:
    """Alpha-composite projected Gaussians over their footprint pairs -> rgb, alpha (NCHW)."""
    b, n = opacities.shape
    assert colors.shape == (b, n, 3) and background.shape == (b, 3), (colors.shape, background.shape)
    gid, pix = visible_pairs(proj, opacities, width, height)
    packed = torch.cat([proj.means2d, proj.conics, opacities[..., None], colors], dim=-1)
    per_pair = packed.reshape(b * n, 9).index_select(0, gid)  # one gather for all parameters
    alpha = pair_alpha(per_pair[:, :6], pix, width, height)
    log_t = segmented_exclusive_cumsum(torch.log1p(-alpha), segment_starts(pix))
    weight = torch.exp(log_t.to(alpha.dtype)) * alpha  # [P] = T_i α_i
    values = torch.cat([weight[:, None] * per_pair[:, 6:9], weight[:, None]], dim=1)
    image = values.new_zeros(b * height * width, 4).index_add(0, pix, values)
    image = image.reshape(b, height, width, 4).permute(0, 3, 1, 2)
    alpha_img = image[:, 3:4]
    rgb = image[:, :3] + (1.0 - alpha_img) * background[:, :, None, None].to(image.dtype)
    return rgb, alpha_img


def rasterize_reference(
    gaussians: GaussianSet, cameras: Camera, width: int, height: int, background: Tensor
) -> tuple[Tensor, Tensor]:
    """Dense, loop-over-Gaussians twin of `rasterize_torch` (same signature and semantics).

    Every pixel meets every Gaussian in front of the near plane; footprint boxes are not used,
    so agreement with the fast path also checks the boxes. O(H·W·N) time: tiny scenes only.
    """
    proj, colors = screen_space(gaussians, cameras, width, height)
    rgbs, alphas = [], []
    for b in range(gaussians.batch_size):
        rgb, alpha = _composite_dense(
            proj.means2d[b], proj.conics[b], proj.depths[b], gaussians.opacities[b], colors[b],
            width, height, background[b],
        )  # fmt: skip
        rgbs.append(rgb)
        alphas.append(alpha)
    return torch.stack(rgbs), torch.stack(alphas)


def _composite_dense(
    means2d: Tensor, conics: Tensor, depths: Tensor, opacities: Tensor, colors: Tensor,
    width: int, height: int, background: Tensor,
) -> tuple[Tensor, Tensor]:  # fmt: skip
    """One image, as the gsplat forward kernel does it per pixel: rgb [3, H, W], alpha [1, H, W]."""
    grid = dict(dtype=means2d.dtype, device=means2d.device)
    ys, xs = torch.meshgrid(
        torch.arange(height, **grid) + 0.5, torch.arange(width, **grid) + 0.5, indexing="ij"
    )
    xs, ys = xs.reshape(-1), ys.reshape(-1)
    trans = torch.ones_like(xs)
    done = torch.zeros_like(xs, dtype=torch.bool)
    rgb = torch.zeros(len(xs), 3, **grid)
    front = (depths > NEAR_PLANE).nonzero()[:, 0]
    for g in front[torch.argsort(depths[front])].tolist():
        dx, dy = xs - means2d[g, 0], ys - means2d[g, 1]
        a, b, c = conics[g]
        sigma = 0.5 * (a * dx * dx + c * dy * dy) + b * dx * dy
        alpha = torch.clamp_max(opacities[g] * torch.exp(-sigma), ALPHA_MAX)
        alpha = torch.where((alpha >= ALPHA_MIN) & ~done, alpha, torch.zeros_like(alpha))
        stop = trans * (1.0 - alpha) <= T_MIN  # "this pixel is done: exclusive"
        done = done | stop
        alpha = torch.where(stop, torch.zeros_like(alpha), alpha)
        rgb = rgb + (trans * alpha)[:, None] * colors[g]
        trans = trans * (1.0 - alpha)
    rgb = rgb + trans[:, None] * background.to(rgb.dtype)
    return rgb.T.reshape(3, height, width), (1.0 - trans).reshape(1, height, width)
