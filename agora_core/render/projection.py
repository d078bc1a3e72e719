"""EWA projection of 3D Gaussians to screen-space ellipses (3DGS / gsplat "classic").

Shared by the pure-PyTorch rasterizer and its dense reference. Follows gsplat 1.5.3's
`fully_fused_projection` (pinhole): world -> camera, J Σ_c J^T with the 3DGS clamp of the
Jacobian's x/z, y/z to 1.3 × the half field of view, +0.3 px² low-pass on the diagonal, conic =
inverse 2D covariance, and gsplat's opacity-aware bounding box (arXiv 2402.00525, B.2):
``radius = ceil(extend · sqrt(Σ2d_ii))`` per axis with ``extend = min(3.33, sqrt(2 ln(255 o)))``.
That box holds every pixel where ``o · exp(-½ dᵀ conic d) >= 1/255``, so a renderer that visits
only the box sees exactly the pairs a dense renderer would keep.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

EPS2D = 0.3  # px² added to the 2D covariance diagonal (anti-aliasing low-pass, 3DGS/gsplat)
NEAR_PLANE = 0.01  # Gaussians with camera depth at or below this are culled
ALPHA_MIN = 1.0 / 255.0  # (pixel, Gaussian) pairs with a smaller alpha are skipped (3DGS/gsplat)
EXTEND_MAX = 3.33  # box half-size in standard deviations when opacities are unknown (gsplat)


class Projection(NamedTuple):
    """Screen-space Gaussians of B images.

    means2d: [B, N, 2] pixel coordinates (pixel (i, j) has its centre at (i + 0.5, j + 0.5)).
    conics:  [B, N, 3] upper triangle (a, b, c) of the inverse 2D covariance.
    depths:  [B, N] camera z.
    radii:   [B, N, 2] int64 box half-sizes in pixels (x, y); 0 for culled Gaussians.
    """

    means2d: Tensor
    conics: Tensor
    depths: Tensor
    radii: Tensor


def quat_to_rotmat(quats: Tensor) -> Tensor:
    """[..., 4] quaternions (w, x, y, z; normalised here) -> [..., 3, 3] rotation matrices."""
    w, x, y, z = F.normalize(quats, dim=-1).unbind(-1)
    rows = [
        1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
        2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
        2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
    ]  # fmt: skip
    return torch.stack(rows, dim=-1).reshape(quats.shape[:-1] + (3, 3))


def covariance_3d(quats: Tensor, scales: Tensor) -> Tensor:
    """Σ = R S Sᵀ Rᵀ: [..., 4] quats, [..., 3] std devs -> [..., 3, 3]."""
    assert quats.shape[:-1] == scales.shape[:-1] and quats.shape[-1] == 4 and scales.shape[-1] == 3
    m = quat_to_rotmat(quats) * scales[..., None, :]
    return m @ m.transpose(-1, -2)


def project_gaussians(
    means: Tensor,  # [B, N, 3] world
    covars: Tensor,  # [B, N, 3, 3] world
    world2cam: Tensor,  # [B, 4, 4]
    ks: Tensor,  # [B, 3, 3] pixel intrinsics
    width: int,
    height: int,
    opacities: Tensor | None = None,  # [B, N]; None -> box of EXTEND_MAX std devs, no opacity cull
) -> Projection:
    """EWA-project B sets of N Gaussians, each into its own camera (see module docstring)."""
    b, n = means.shape[:2]
    assert means.shape == (b, n, 3), means.shape
    assert covars.shape == (b, n, 3, 3), covars.shape
    assert world2cam.shape == (b, 4, 4) and ks.shape == (b, 3, 3), (world2cam.shape, ks.shape)
    rot, trans = world2cam[:, None, :3, :3], world2cam[:, None, :3, 3]
    means_c = (rot @ means[..., None])[..., 0] + trans  # [B, N, 3]
    covars_c = rot @ covars @ rot.transpose(-1, -2)  # [B, N, 3, 3]
    means2d, cov2d = perspective_projection(means_c, covars_c, ks, width, height)
    cov2d = cov2d + EPS2D * torch.eye(2, dtype=cov2d.dtype, device=cov2d.device)
    det = (cov2d[..., 0, 0] * cov2d[..., 1, 1] - cov2d[..., 0, 1] * cov2d[..., 1, 0]).clamp_min(1e-10)
    conics = torch.stack(
        [cov2d[..., 1, 1] / det, -0.5 * (cov2d[..., 0, 1] + cov2d[..., 1, 0]) / det, cov2d[..., 0, 0] / det],
        dim=-1,
    )
    depths = means_c[..., 2]
    radii = _footprint_radii(means2d, cov2d, depths, opacities, width, height)
    return Projection(means2d, conics, depths, radii)


def perspective_projection(
    means_c: Tensor,  # [B, N, 3] camera
    covars_c: Tensor,  # [B, N, 3, 3] camera
    ks: Tensor,  # [B, 3, 3] pixel intrinsics
    width: int,
    height: int,
) -> tuple[Tensor, Tensor]:
    """Pinhole projection of means and first-order (Jacobian) projection of covariances.

    Returns means2d [B, N, 2] and cov2d = J Σ_c Jᵀ [B, N, 2, 2] (no low-pass yet).
    """
    fx, fy = ks[:, None, 0, 0], ks[:, None, 1, 1]
    cx, cy = ks[:, None, 0, 2], ks[:, None, 1, 2]
    tx, ty, tz = means_c.unbind(-1)
    # 3DGS clamps the Jacobian's lateral position to 1.3 × the frustum, which keeps far
    # off-screen Gaussians from producing huge footprints; means2d use the unclamped position.
    lim_x_pos = (width - cx) / fx + 0.3 * (0.5 * width / fx)
    lim_x_neg = cx / fx + 0.3 * (0.5 * width / fx)
    lim_y_pos = (height - cy) / fy + 0.3 * (0.5 * height / fy)
    lim_y_neg = cy / fy + 0.3 * (0.5 * height / fy)
    jx = tz * torch.clamp(tx / tz, min=-lim_x_neg, max=lim_x_pos)
    jy = tz * torch.clamp(ty / tz, min=-lim_y_neg, max=lim_y_pos)
    zero = torch.zeros_like(tz)
    jac = torch.stack(
        [fx / tz, zero, -fx * jx / (tz * tz), zero, fy / tz, -fy * jy / (tz * tz)], dim=-1
    ).reshape(tz.shape + (2, 3))
    cov2d = jac @ covars_c @ jac.transpose(-1, -2)
    means2d = torch.stack([fx * tx / tz + cx, fy * ty / tz + cy], dim=-1)
    return means2d, cov2d


@torch.no_grad()
def _footprint_radii(
    means2d: Tensor, cov2d: Tensor, depths: Tensor, opacities: Tensor | None, width: int, height: int
) -> Tensor:
    """[B, N, 2] int64 box half-sizes; 0 where culled (near plane, degenerate, faint, off-screen)."""
    if opacities is None:
        extend = torch.full_like(depths, EXTEND_MAX)
        bright = torch.ones_like(depths, dtype=torch.bool)
    else:
        assert opacities.shape == depths.shape, (opacities.shape, depths.shape)
        bright = opacities >= ALPHA_MIN
        ratio = (opacities / ALPHA_MIN).clamp_min(1.0)
        extend = torch.sqrt(2.0 * torch.log(ratio)).clamp_max(EXTEND_MAX)
    radius = torch.ceil(extend[..., None] * torch.sqrt(torch.diagonal(cov2d, dim1=-2, dim2=-1)))
    det = cov2d[..., 0, 0] * cov2d[..., 1, 1] - cov2d[..., 0, 1] * cov2d[..., 1, 0]
    finite = torch.isfinite(means2d).all(-1) & torch.isfinite(radius).all(-1)
    inside = (
        (means2d[..., 0] + radius[..., 0] > 0)
        & (means2d[..., 0] - radius[..., 0] < width)
        & (means2d[..., 1] + radius[..., 1] > 0)
        & (means2d[..., 1] - radius[..., 1] < height)
    )
    keep = (depths > NEAR_PLANE) & (det > 0) & bright & finite & inside
    return torch.where(keep[..., None], radius, torch.zeros_like(radius)).long()


def view_directions(means: Tensor, camera_centres: Tensor) -> Tensor:
    """Unit directions [B, N, 3] from camera centres [B, 3] to Gaussian means [B, N, 3]."""
    return F.normalize(means - camera_centres[:, None, :], dim=-1)

