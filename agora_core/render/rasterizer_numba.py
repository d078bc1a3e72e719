"""Compiled CPU compositing (numba): the same images and gradients as `composite_sparse`, faster.

Same semantics as rasterizer_torch.py (gsplat's classic rasterizer): per pair
``alpha = min(0.999, o · exp(-½ dᵀ conic d))``, pairs with ``alpha < 1/255`` skipped, front-to-back
``C = Σ c_i α_i T_i + T_final · background``, a pixel stops before the Gaussian that would bring
its transmittance to ``<= 1e-4``. What differs is how the work is laid out:

- forward: per image, Gaussians in depth order (stable sort, as the torch path), each one visits
  the pixels of its projection box; per-pixel running transmittance, colour and a "stopped at
  rank r" marker. No pair list is ever built, so the cost is the box coverage and nothing else.
- projection (`project_numba`, inference only): projection.py's EWA projection and footprint box
  in one parallel loop over Gaussians, for calls that need no gradient; with autograd the torch
  projection is used.
- backward: the same walk back to front, recovering ``T_i = T_{i+1} / (1 − α_i)`` from the final
  transmittance and carrying the colour behind each pair, ``R_{i-1} = α_i c_i + (1 − α_i) R_i``
  (the 3DGS backward pass). Gradients reach 2D means, conics, opacities, colours and background.

Two layouts of that work, with the same per-pixel arithmetic (`_blend`, `_unblend`); the kernels
live in rasterizer_numba_serial.py and rasterizer_numba_tiles.py, this module holds the projection
kernel and the host side (depth order, thread count, autograd):

- serial (`_forward`, `_backward`): one Gaussian at a time over its whole box, as above. One
  thread; the reference the tiled kernels are tested against (`composite_numba(parallel=False)`).
- tiled (`_forward_tiles`, `_backward_tiles`, the default from TILED_MIN_PIXELS pixels per call,
  i.e. 1 × 182², 8 × 64²): the image is cut into tiles, bands of TILE pixel rows across its width
  (rasterizer_numba_tiles.py says why bands), and each (image, tile) is one task of a numba `prange`. `_prepare` (also in parallel, over
  chunks of Gaussians) lists, per tile, the Gaussians whose box meets it, front to back, each entry
  with a copy of its Gaussian's values (a task reads its list in one sequential sweep). A task walks its list over the box ∩ tile, so every pixel meets the same
  Gaussians in the same order as in the serial kernel: same images. Backward, a task writes each
  Gaussian's gradient sums over its pixels to a slot of its own (one per tile-list entry), and a
  second parallel loop (over Gaussians) adds a Gaussian's slots in tile order: no atomics, no sum that depends on
  which thread ran what, so the gradients are bit-identical run to run and for any thread count
  (they differ from the serial kernel's by the order of the additions only).
  Threads: `kernel_threads`: torch's thread count (`--threads`), at most numba's pool, and one
  per 128² pixels of the call.
  Scaling is bounded by the tiles (512² has 16, 32² only 1), by the serial steps (the depth
  sort, the prefix sums of `_prepare`) and, on a head, by the uneven work per tile.

Arithmetic is float64 inside the kernels whatever the input dtype. `rasterize_torch` stays the
readable reference path, and the tests compare both with the dense reference.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from agora_core.render.projection import ALPHA_MIN, EPS2D, EXTEND_MAX, NEAR_PLANE, Projection
from agora_core.render.rasterizer_numba_serial import numba
from agora_core.render.rasterizer_numba_tiles import PREPARE_CHUNK

WORK_PER_THREAD = 128 * 128  # smallest share of a call's pixels (projection: Gaussians) worth a thread
TILED_MIN_PIXELS = 2 * WORK_PER_THREAD  # smaller calls run the serial kernels (less set-up, one thread anyway)


def numba_available() -> bool:
    return numba is not None


if numba is not None:
    from numba import njit, prange

    from agora_core.render.rasterizer_numba_serial import _backward, _forward, _sort_visible
    from agora_core.render.rasterizer_numba_tiles import (_backward_tiles, _forward_tiles, _prepare, _reduce_tiles,
                                                          _sort_visible_slices)

    @njit(cache=True, parallel=True)
    def _project(means, quats, log_scales, opac, world2cam, ks, width, height,
                 out_means2d, out_conics, out_depths, out_radii):
        """projection.py's `project_gaussians` (+ its footprint radii), one Gaussian per iteration of a
        `prange` (each output depends on its own Gaussian only)."""
        nb, n = means.shape[0], means.shape[1]
        for b in range(nb):
            fx, fy, cx, cy = ks[b, 0, 0], ks[b, 1, 1], ks[b, 0, 2], ks[b, 1, 2]
            lim_x_pos = (width - cx) / fx + 0.3 * (0.5 * width / fx)
            lim_x_neg = cx / fx + 0.3 * (0.5 * width / fx)
            lim_y_pos = (height - cy) / fy + 0.3 * (0.5 * height / fy)
            lim_y_neg = cy / fy + 0.3 * (0.5 * height / fy)
            rot = world2cam[b, :3, :3]
            for i in prange(n):
                qw, qx, qy, qz = quats[b, i, 0], quats[b, i, 1], quats[b, i, 2], quats[b, i, 3]
                norm = max(math.sqrt(qw * qw + qx * qx + qy * qy + qz * qz), 1e-12)
                qw, qx, qy, qz = qw / norm, qx / norm, qy / norm, qz / norm
                s0, s1, s2 = math.exp(log_scales[b, i, 0]), math.exp(log_scales[b, i, 1]), math.exp(log_scales[b, i, 2])
                # M = world2cam_R · R(q) · diag(s); camera covariance = M Mᵀ
                r00, r01, r02 = 1 - 2 * (qy * qy + qz * qz), 2 * (qx * qy - qw * qz), 2 * (qx * qz + qw * qy)
                r10, r11, r12 = 2 * (qx * qy + qw * qz), 1 - 2 * (qx * qx + qz * qz), 2 * (qy * qz - qw * qx)
                r20, r21, r22 = 2 * (qx * qz - qw * qy), 2 * (qy * qz + qw * qx), 1 - 2 * (qx * qx + qy * qy)
                m00 = (rot[0, 0] * r00 + rot[0, 1] * r10 + rot[0, 2] * r20) * s0
                m01 = (rot[0, 0] * r01 + rot[0, 1] * r11 + rot[0, 2] * r21) * s1
                m02 = (rot[0, 0] * r02 + rot[0, 1] * r12 + rot[0, 2] * r22) * s2
                m10 = (rot[1, 0] * r00 + rot[1, 1] * r10 + rot[1, 2] * r20) * s0
                m11 = (rot[1, 0] * r01 + rot[1, 1] * r11 + rot[1, 2] * r21) * s1
                m12 = (rot[1, 0] * r02 + rot[1, 1] * r12 + rot[1, 2] * r22) * s2
                m20 = (rot[2, 0] * r00 + rot[2, 1] * r10 + rot[2, 2] * r20) * s0
                m21 = (rot[2, 0] * r01 + rot[2, 1] * r11 + rot[2, 2] * r21) * s1
                m22 = (rot[2, 0] * r02 + rot[2, 1] * r12 + rot[2, 2] * r22) * s2
                tx = rot[0, 0] * means[b, i, 0] + rot[0, 1] * means[b, i, 1] + rot[0, 2] * means[b, i, 2] + world2cam[b, 0, 3]
                ty = rot[1, 0] * means[b, i, 0] + rot[1, 1] * means[b, i, 1] + rot[1, 2] * means[b, i, 2] + world2cam[b, 1, 3]
                tz = rot[2, 0] * means[b, i, 0] + rot[2, 1] * means[b, i, 1] + rot[2, 2] * means[b, i, 2] + world2cam[b, 2, 3]
                jx = tz * min(max(tx / tz, -lim_x_neg), lim_x_pos)
                jy = tz * min(max(ty / tz, -lim_y_neg), lim_y_pos)
                # rows of J·M (J = [[fx/tz, 0, -fx jx/tz²], [0, fy/tz, -fy jy/tz²]])
                u0 = fx / tz * m00 - fx * jx / (tz * tz) * m20
                u1 = fx / tz * m01 - fx * jx / (tz * tz) * m21
                u2 = fx / tz * m02 - fx * jx / (tz * tz) * m22
                v0 = fy / tz * m10 - fy * jy / (tz * tz) * m20
                v1 = fy / tz * m11 - fy * jy / (tz * tz) * m21
                v2 = fy / tz * m12 - fy * jy / (tz * tz) * m22
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
    use_kernel_threads(kernel_threads(b * n))
    _project(*[_np64(t) for t in (means, quats, log_scales, opacities, world2cam, ks)], width, height,
             means2d, conics, depths, radii)
    return Projection(_tensor(means2d, means), _tensor(conics, means), _tensor(depths, means),
                      torch.from_numpy(radii).to(means.device))


def _depth_order(proj: Projection, slices: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Per image: visible Gaussians front to back (stable in index for equal depths), then the
    others in index order; and the visible counts. slices > 0: the same order, sorted in parallel
    over that many slices of each image (`_sort_visible_slices`, on numba's current thread count)."""
    b, n = proj.depths.shape
    order, counts = np.empty((b, n), np.int64), np.empty(b, np.int64)
    depth_bits = _np64(proj.depths).view(np.int64)  # depths of visible Gaussians are > 0: bits sort as numbers
    radii = np.ascontiguousarray(proj.radii.cpu().numpy())
    if slices > 0:
        _sort_visible_slices(depth_bits, radii, order, counts, slices)
    else:
        _sort_visible(depth_bits, radii, order, counts)
    return order, counts


def _numpy(t: Tensor) -> np.ndarray:
    """A CPU tensor as a numpy array (bfloat16, which numpy lacks, as float32). The copies made from
    it here and in `_tensor` are numpy's: torch would spread each over its thread pool, and on a busy
    machine waiting for a second thread costs far more than such a copy."""
    t = t.detach().cpu()
    return (t.float() if t.dtype == torch.bfloat16 else t).numpy()


def _np64(t: Tensor) -> np.ndarray:
    """A C-contiguous float64 copy (or view) of a CPU tensor."""
    return np.ascontiguousarray(_numpy(t), dtype=np.float64)


def _np_kernel(t: Tensor) -> np.ndarray:
    """A C-contiguous array of a CPU tensor for the compositing kernels: float64 stays float64, every
    other float dtype is (or becomes, exactly) float32, copied only when it must be. The kernels do
    all arithmetic in float64 (`_blend` and `_unblend` promote their inputs), so images and gradients
    are the same as from float64 copies; float32 halves the bytes they gather per Gaussian
    (`benchmarks/render.py --tiled`: ~12 % of a 512² forward)."""
    a = _numpy(t)
    return np.ascontiguousarray(a, dtype=np.float64 if a.dtype == np.float64 else np.float32)


def _tensor(a: np.ndarray, like: Tensor) -> Tensor:
    """A kernel's float64 output as a tensor of `like`'s dtype and device (numpy's cast, see `_numpy`)."""
    np_dtype = {torch.float32: np.float32, torch.float64: np.float64, torch.float16: np.float16}.get(like.dtype)
    if np_dtype is None:
        return torch.from_numpy(a).to(dtype=like.dtype, device=like.device)
    return torch.from_numpy(a.astype(np_dtype, copy=False)).to(like.device)


def kernel_threads(work: int) -> int:
    """Threads the parallel kernels use for a call of `work` pixels (projection: Gaussians): torch's
    thread count (`--threads`, the training config), capped by numba's pool (NUMBA_NUM_THREADS, by
    default the number of cores) and by one thread per WORK_PER_THREAD (a batch of 32² frames is not
    worth waking a thread for: on a busy machine the wait for it costs more than it saves). No
    result depends on it."""
    threads = max(1, min(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS))
    return max(1, min(threads, work // WORK_PER_THREAD))


def use_kernel_threads(threads: int) -> None:
    """`numba.set_num_threads(threads)`, leaving torch's thread count as it was. numba's OpenMP layer
    shares torch's OpenMP runtime, and starting it (the first call) sets that runtime's thread count
    to numba's pool (NUMBA_NUM_THREADS, the cores): `--threads 1` would silently become 2 for every
    torch op after the first render (on 2 busy cores the deformation branch then took 20-40× longer)."""
    before = torch.get_num_threads()
    numba.set_num_threads(threads)
    if torch.get_num_threads() != before:
        torch.set_num_threads(before)


class _Composite(torch.autograd.Function):
    @staticmethod
    def forward(ctx, means2d, conics, opacities, colors, background, radii, order, counts, width, height, parallel):
        b = means2d.shape[0]
        arrays = [_np_kernel(t) for t in (means2d, conics, opacities, colors)]
        if parallel:  # `_prepare` copies them into records of one dtype: float64 if any is (exact)
            common = np.result_type(*arrays)
            arrays = [a.astype(common, copy=False) for a in arrays]
        radii_np = np.ascontiguousarray(radii.cpu().numpy().astype(np.float64))
        bg = _np64(background)
        rgb = np.empty((b, width * height, 3))
        trans = np.empty((b, width * height))
        stop = np.empty((b, width * height), dtype=np.int64)
        tiles = None
        if parallel:
            use_kernel_threads(kernel_threads(b * width * height))
            tiles = _prepare(*arrays, order, counts, radii_np, width, height, PREPARE_CHUNK, any(ctx.needs_input_grad))
            boxes, task_start, ranks, slot, entry, rec, rec_box = tiles
            with numba.parallel_chunksize(1):  # a thread takes one tile at a time: a head's tiles differ in work
                _forward_tiles(rec, rec_box, ranks, counts, bg, width, height, task_start, rgb, trans, stop)
        else:
            _forward(*arrays, order, counts, radii_np, bg, width, height, rgb, trans, stop)
        ctx.save_for_backward(means2d, conics, opacities, colors, background)
        ctx.numba_state = (arrays, radii_np, bg, order, counts, trans, stop, width, height, tiles)
        return _tensor(rgb, means2d), _tensor(1.0 - trans, means2d)

    @staticmethod
    def backward(ctx, grad_rgb, grad_alpha):
        means2d, conics, opacities, colors, background = ctx.saved_tensors
        arrays, radii_np, bg, order, counts, trans, stop, width, height, tiles = ctx.numba_state
        zeros = [np.zeros(a.shape) for a in (*arrays, bg)]
        g_rgb = _np64(grad_rgb) if grad_rgb is not None else np.zeros(trans.shape + (3,))
        g_alpha = _np64(grad_alpha) if grad_alpha is not None else np.zeros(trans.shape)
        if tiles is not None:
            use_kernel_threads(kernel_threads(trans.size))
            boxes, task_start, ranks, slot, entry, rec, rec_box = tiles
            with numba.parallel_chunksize(1):
                part, bg_part = _backward_tiles(rec, rec_box, ranks, bg, width, height, task_start, trans, stop, g_rgb,
                                                g_alpha)
            _reduce_tiles(part, bg_part, order, counts, boxes, slot, entry, *zeros)
        else:
            _backward(*arrays, order, counts, radii_np, bg, width, height, trans, stop, g_rgb, g_alpha, *zeros)
        like = (means2d, conics, opacities, colors, background)
        grads = [_tensor(z, t) for z, t in zip(zeros, like)]
        return (*grads, None, None, None, None, None, None)


def composite_numba(
    proj: Projection,
    opacities: Tensor,  # [B, N]
    colors: Tensor,  # [B, N, 3]
    width: int,
    height: int,
    background: Tensor,  # [B, 3]
    parallel: bool | None = None,
) -> tuple[Tensor, Tensor]:
    """`composite_sparse` with compiled kernels: rgb [B, 3, H, W] over the background, alpha [B, 1, H, W].

    parallel: True runs the tiled kernels (on `kernel_threads` threads), False the serial ones (the
    reference the tiled ones are tested against); None (default) picks by size alone, tiled from
    TILED_MIN_PIXELS pixels per call (B·H·W) -- never by thread count, so a call's gradients do not
    depend on it.
    """
    b, n = opacities.shape
    assert colors.shape == (b, n, 3) and background.shape == (b, 3), (colors.shape, background.shape)
    if parallel is None:
        parallel = b * width * height >= TILED_MIN_PIXELS
    slices = 0
    if parallel:  # the tiled layout sorts in parallel too: one bucket per thread and WORK_PER_THREAD
        threads = kernel_threads(b * width * height)  # Gaussians of an image (the same order for any count)
        use_kernel_threads(threads)
        slices = min(threads, n // WORK_PER_THREAD)
        slices = slices if slices > 1 else 0
    order, counts = _depth_order(proj, slices)
    rgb, alpha = _Composite.apply(proj.means2d, proj.conics, opacities, colors, background, proj.radii,
                                  order, counts, width, height, parallel)
    rgb = rgb.reshape(b, height, width, 3).permute(0, 3, 1, 2)
    return rgb, alpha.reshape(b, 1, height, width)
