"""Compiled CPU compositing (numba): the same images and gradients as `composite_sparse`, faster.

Same semantics as rasterizer_torch.py (gsplat's classic rasterizer): per pair
``alpha = min(0.999, o · exp(-½ dᵀ conic d))``, pairs with ``alpha < 1/255`` skipped, front-to-back
``C = Σ c_i α_i T_i + T_final · background``, a pixel stops before the Gaussian that would bring
its transmittance to ``<= 1e-4``. What differs is how the work is laid out:

- forward: per image, Gaussians in depth order (stable sort, as the torch path), each one visits
  the pixels of its projection box; per-pixel running transmittance, colour and a "stopped at
  rank r" marker. No pair list is ever built, so the cost is the box coverage and nothing else.
- projection (`project_numba`, inference only): projection.py's EWA projection and footprint box
  in one loop, for calls that need no gradient; with autograd the torch projection is used.
- backward: the same walk back to front, recovering ``T_i = T_{i+1} / (1 − α_i)`` from the final
  transmittance and carrying the colour behind each pair, ``R_{i-1} = α_i c_i + (1 − α_i) R_i``
  (the 3DGS backward pass). Gradients reach 2D means, conics, opacities, colours and background.

Arithmetic is float64 inside the kernels whatever the input dtype. The kernels are serial: no
numba thread pool, so they never compete with torch's threads on a shared machine.
`rasterize_torch` stays the readable reference path, and the tests compare both with the dense
reference.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from agora_core.render.pairs import ALPHA_MAX, T_MIN
from agora_core.render.projection import ALPHA_MIN, EPS2D, EXTEND_MAX, NEAR_PLANE, Projection

try:  # optional at import time: `rasterize(backend="auto")` falls back to the torch path
    import numba
    from numba import njit
except ImportError:  # pragma: no cover - numba is a declared dependency
    numba = None


def numba_available() -> bool:
    return numba is not None


if numba is not None:

    @njit(cache=True, inline="always")
    def _box(mx, my, rx, ry, width, height):
        """Pixel index ranges whose centres lie in the projection box (as pairs.py rounds it)."""
        x0 = max(0, int(math.ceil(mx - rx - 0.5)))
        x1 = min(width - 1, int(math.floor(mx + rx - 0.5)))
        y0 = max(0, int(math.ceil(my - ry - 0.5)))
        y1 = min(height - 1, int(math.floor(my + ry - 0.5)))
        return x0, x1, y0, y1

    @njit(cache=True)
    def _forward(means2d, conics, opac, colors, order, counts, radii, background, width, height,
                 out_rgb, out_trans, out_stop):
        """out_rgb [B, HW, 3], out_trans [B, HW] (final T), out_stop [B, HW] (rank a pixel stopped at)."""
        nb = means2d.shape[0]
        for b in range(nb):
            trans = out_trans[b]
            stop = out_stop[b]
            acc = out_rgb[b]
            trans[:] = 1.0
            stop[:] = counts[b]
            acc[:, :] = 0.0
            for r in range(counts[b]):
                g = order[b, r]
                mx, my = means2d[b, g, 0], means2d[b, g, 1]
                ca, cb, cc = conics[b, g, 0], conics[b, g, 1], conics[b, g, 2]
                o = opac[b, g]
                level = math.log(o / ALPHA_MIN) + 1e-9  # sigma above this: alpha < 1/255, no exp needed
                x0, x1, y0, y1 = _box(mx, my, radii[b, g, 0], radii[b, g, 1], width, height)
                for y in range(y0, y1 + 1):
                    dy = y + 0.5 - my
                    for x in range(x0, x1 + 1):
                        p = y * width + x
                        if r >= stop[p]:
                            continue
                        dx = x + 0.5 - mx
                        sigma = 0.5 * (ca * dx * dx + cc * dy * dy) + cb * dx * dy
                        if sigma > level:
                            continue
                        alpha = min(ALPHA_MAX, o * math.exp(-sigma))
                        if alpha < ALPHA_MIN:
                            continue
                        t = trans[p]
                        next_t = t * (1.0 - alpha)
                        if next_t <= T_MIN:
                            stop[p] = r
                            continue
                        w = alpha * t
                        acc[p, 0] += w * colors[b, g, 0]
                        acc[p, 1] += w * colors[b, g, 1]
                        acc[p, 2] += w * colors[b, g, 2]
                        trans[p] = next_t
            for p in range(width * height):
                for k in range(3):
                    acc[p, k] += trans[p] * background[b, k]

    @njit(cache=True)
    def _backward(means2d, conics, opac, colors, order, counts, radii, background, width, height,
                  final_trans, stop_rank, grad_rgb, grad_alpha,
                  g_means, g_conics, g_opac, g_colors, g_background):
        """Accumulates into the g_* arrays (zeroed by the caller); grad_rgb [B, HW, 3], grad_alpha [B, HW]."""
        nb = means2d.shape[0]
        npix = width * height
        for b in range(nb):
            behind = np.empty((npix, 3))
            trans = final_trans[b].copy()
            for p in range(npix):
                for k in range(3):
                    behind[p, k] = background[b, k]
                    g_background[b, k] += final_trans[b, p] * grad_rgb[b, p, k]
            for r in range(counts[b] - 1, -1, -1):
                g = order[b, r]
                mx, my = means2d[b, g, 0], means2d[b, g, 1]
                ca, cb, cc = conics[b, g, 0], conics[b, g, 1], conics[b, g, 2]
                o = opac[b, g]
                level = math.log(o / ALPHA_MIN) + 1e-9
                x0, x1, y0, y1 = _box(mx, my, radii[b, g, 0], radii[b, g, 1], width, height)
                for y in range(y0, y1 + 1):
                    dy = y + 0.5 - my
                    for x in range(x0, x1 + 1):
                        p = y * width + x
                        if r >= stop_rank[b, p]:
                            continue
                        dx = x + 0.5 - mx
                        sigma = 0.5 * (ca * dx * dx + cc * dy * dy) + cb * dx * dy
                        if sigma > level:
                            continue
                        falloff = math.exp(-sigma)
                        raw = o * falloff
                        alpha = min(ALPHA_MAX, raw)
                        if alpha < ALPHA_MIN:
                            continue
                        t_i = trans[p] / (1.0 - alpha)
                        w = alpha * t_i
                        d_alpha = grad_alpha[b, p] * final_trans[b, p] / (1.0 - alpha)
                        for k in range(3):
                            gk = grad_rgb[b, p, k]
                            g_colors[b, g, k] += w * gk
                            d_alpha += t_i * (colors[b, g, k] - behind[p, k]) * gk
                            behind[p, k] = alpha * colors[b, g, k] + (1.0 - alpha) * behind[p, k]
                        trans[p] = t_i
                        if raw > ALPHA_MAX:  # clamped: alpha does not depend on o, sigma here
                            continue
                        g_opac[b, g] += d_alpha * falloff
                        d_sigma = -d_alpha * alpha
                        g_conics[b, g, 0] += 0.5 * d_sigma * dx * dx
                        g_conics[b, g, 1] += d_sigma * dx * dy
                        g_conics[b, g, 2] += 0.5 * d_sigma * dy * dy
                        g_means[b, g, 0] -= d_sigma * (ca * dx + cb * dy)
                        g_means[b, g, 1] -= d_sigma * (cc * dy + cb * dx)


    @njit(cache=True)
    def _project(means, quats, log_scales, opac, world2cam, ks, width, height,
                 out_means2d, out_conics, out_depths, out_radii):
        """projection.py's `project_gaussians` (+ its footprint radii), one Gaussian at a time."""
        nb, n = means.shape[0], means.shape[1]
        for b in range(nb):
            fx, fy, cx, cy = ks[b, 0, 0], ks[b, 1, 1], ks[b, 0, 2], ks[b, 1, 2]
            lim_x_pos = (width - cx) / fx + 0.3 * (0.5 * width / fx)
            lim_x_neg = cx / fx + 0.3 * (0.5 * width / fx)
            lim_y_pos = (height - cy) / fy + 0.3 * (0.5 * height / fy)
            lim_y_neg = cy / fy + 0.3 * (0.5 * height / fy)
            rot = world2cam[b, :3, :3]
            m = np.empty((3, 3))
            for i in range(n):
                qw, qx, qy, qz = quats[b, i, 0], quats[b, i, 1], quats[b, i, 2], quats[b, i, 3]
                norm = max(math.sqrt(qw * qw + qx * qx + qy * qy + qz * qz), 1e-12)
                qw, qx, qy, qz = qw / norm, qx / norm, qy / norm, qz / norm
                s0, s1, s2 = math.exp(log_scales[b, i, 0]), math.exp(log_scales[b, i, 1]), math.exp(log_scales[b, i, 2])
                # M = world2cam_R · R(q) · diag(s); camera covariance = M Mᵀ
                r00, r01, r02 = 1 - 2 * (qy * qy + qz * qz), 2 * (qx * qy - qw * qz), 2 * (qx * qz + qw * qy)
                r10, r11, r12 = 2 * (qx * qy + qw * qz), 1 - 2 * (qx * qx + qz * qz), 2 * (qy * qz - qw * qx)
                r20, r21, r22 = 2 * (qx * qz - qw * qy), 2 * (qy * qz + qw * qx), 1 - 2 * (qx * qx + qy * qy)
                for a in range(3):
                    m[a, 0] = (rot[a, 0] * r00 + rot[a, 1] * r10 + rot[a, 2] * r20) * s0
                    m[a, 1] = (rot[a, 0] * r01 + rot[a, 1] * r11 + rot[a, 2] * r21) * s1
                    m[a, 2] = (rot[a, 0] * r02 + rot[a, 1] * r12 + rot[a, 2] * r22) * s2
                tx = rot[0, 0] * means[b, i, 0] + rot[0, 1] * means[b, i, 1] + rot[0, 2] * means[b, i, 2] + world2cam[b, 0, 3]
                ty = rot[1, 0] * means[b, i, 0] + rot[1, 1] * means[b, i, 1] + rot[1, 2] * means[b, i, 2] + world2cam[b, 1, 3]
                tz = rot[2, 0] * means[b, i, 0] + rot[2, 1] * means[b, i, 1] + rot[2, 2] * means[b, i, 2] + world2cam[b, 2, 3]
                jx = tz * min(max(tx / tz, -lim_x_neg), lim_x_pos)
                jy = tz * min(max(ty / tz, -lim_y_neg), lim_y_pos)
                # rows of J·M (J = [[fx/tz, 0, -fx jx/tz²], [0, fy/tz, -fy jy/tz²]])
                u0 = fx / tz * m[0, 0] - fx * jx / (tz * tz) * m[2, 0]
                u1 = fx / tz * m[0, 1] - fx * jx / (tz * tz) * m[2, 1]
                u2 = fx / tz * m[0, 2] - fx * jx / (tz * tz) * m[2, 2]
                v0 = fy / tz * m[1, 0] - fy * jy / (tz * tz) * m[2, 0]
                v1 = fy / tz * m[1, 1] - fy * jy / (tz * tz) * m[2, 1]
                v2 = fy / tz * m[1, 2] - fy * jy / (tz * tz) * m[2, 2]
                c00 = u0 * u0 + u1 * u1 + u2 * u2 + EPS2D
                c01 = u0 * v0 + u1 * v1 + u2 * v2
                c11 = v0 * v0 + v1 * v1 + v2 * v2 + EPS2D
                det = c00 * c11 - c01 * c01
                inv = 1.0 / max(det, 1e-10)
                mx, my = fx * tx / tz + cx, fy * ty / tz + cy
                out_means2d[b, i, 0], out_means2d[b, i, 1] = mx, my
                out_conics[b, i, 0], out_conics[b, i, 1], out_conics[b, i, 2] = c11 * inv, -c01 * inv, c00 * inv
                out_depths[b, i] = tz
                o = opac[b, i]
                extend = min(math.sqrt(2.0 * math.log(max(o / ALPHA_MIN, 1.0))), EXTEND_MAX)
                rx, ry = math.ceil(extend * math.sqrt(c00)), math.ceil(extend * math.sqrt(c11))
                keep = (tz > NEAR_PLANE and det > 0 and o >= ALPHA_MIN and math.isfinite(mx) and math.isfinite(my)
                        and math.isfinite(rx) and math.isfinite(ry)
                        and mx + rx > 0 and mx - rx < width and my + ry > 0 and my - ry < height)
                out_radii[b, i, 0] = int(rx) if keep else 0
                out_radii[b, i, 1] = int(ry) if keep else 0


def project_numba(means: Tensor, quats: Tensor, log_scales: Tensor, opacities: Tensor, world2cam: Tensor,
                  ks: Tensor, width: int, height: int) -> Projection:
    """`project_gaussians(means, covariance_3d(quats, exp(log_scales)), ...)` without autograd.

    Same arguments (per-Gaussian quats and log-scales instead of covariances), same `Projection`
    (float tensors in the input dtype, radii int64); computed in float64.
    """
    b, n = means.shape[:2]
    means2d, conics, depths = np.empty((b, n, 2)), np.empty((b, n, 3)), np.empty((b, n))
    radii = np.empty((b, n, 2), dtype=np.int64)
    _project(*[_np64(t) for t in (means, quats, log_scales, opacities, world2cam, ks)], width, height,
             means2d, conics, depths, radii)
    to = dict(dtype=means.dtype, device=means.device)
    return Projection(torch.from_numpy(means2d).to(**to), torch.from_numpy(conics).to(**to),
                      torch.from_numpy(depths).to(**to), torch.from_numpy(radii).to(means.device))


def _depth_order(proj: Projection) -> tuple[np.ndarray, np.ndarray]:
    """Per image: visible Gaussians front to back (stable in index for equal depths), and counts."""
    visible = (proj.radii > 0).any(-1)
    key = torch.where(visible, proj.depths.detach(), torch.full_like(proj.depths, float("inf")))
    order = torch.sort(key, dim=1, stable=True).indices
    return np.ascontiguousarray(order.cpu().numpy()), visible.sum(1).cpu().numpy().astype(np.int64)


def _np64(t: Tensor) -> np.ndarray:
    return np.ascontiguousarray(t.detach().cpu().to(torch.float64).numpy())


class _Composite(torch.autograd.Function):
    @staticmethod
    def forward(ctx, means2d, conics, opacities, colors, background, radii, order, counts, width, height):
        b = means2d.shape[0]
        arrays = [_np64(t) for t in (means2d, conics, opacities, colors)]
        radii_np = np.ascontiguousarray(radii.cpu().numpy().astype(np.float64))
        bg = _np64(background)
        rgb = np.empty((b, width * height, 3))
        trans = np.empty((b, width * height))
        stop = np.empty((b, width * height), dtype=np.int64)
        _forward(*arrays, order, counts, radii_np, bg, width, height, rgb, trans, stop)
        ctx.save_for_backward(means2d, conics, opacities, colors, background)
        ctx.numba_state = (arrays, radii_np, bg, order, counts, trans, stop, width, height)
        to = dict(dtype=means2d.dtype, device=means2d.device)
        return torch.from_numpy(rgb).to(**to), torch.from_numpy(1.0 - trans).to(**to)

    @staticmethod
    def backward(ctx, grad_rgb, grad_alpha):
        means2d, conics, opacities, colors, background = ctx.saved_tensors
        arrays, radii_np, bg, order, counts, trans, stop, width, height = ctx.numba_state
        zeros = [np.zeros(a.shape) for a in (*arrays, bg)]
        g_rgb = _np64(grad_rgb) if grad_rgb is not None else np.zeros(trans.shape + (3,))
        g_alpha = _np64(grad_alpha) if grad_alpha is not None else np.zeros(trans.shape)
        _backward(*arrays, order, counts, radii_np, bg, width, height, trans, stop, g_rgb, g_alpha, *zeros)
        like = (means2d, conics, opacities, colors, background)
        grads = [torch.from_numpy(z).to(dtype=t.dtype, device=t.device) for z, t in zip(zeros, like)]
        return (*grads, None, None, None, None, None)


def composite_numba(
    proj: Projection,
    opacities: Tensor,  # [B, N]
    colors: Tensor,  # [B, N, 3]
    width: int,
    height: int,
    background: Tensor,  # [B, 3]
) -> tuple[Tensor, Tensor]:
    """`composite_sparse` with compiled kernels: rgb [B, 3, H, W] over the background, alpha [B, 1, H, W]."""
    b, n = opacities.shape
    assert colors.shape == (b, n, 3) and background.shape == (b, 3), (colors.shape, background.shape)
    order, counts = _depth_order(proj)
    rgb, alpha = _Composite.apply(proj.means2d, proj.conics, opacities, colors, background, proj.radii,
                                  order, counts, width, height)
    rgb = rgb.reshape(b, height, width, 3).permute(0, 3, 1, 2)
    return rgb, alpha.reshape(b, 1, height, width)
