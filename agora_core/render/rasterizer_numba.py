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

Two layouts of that work, with the same per-pixel arithmetic (`_blend`, `_unblend`):

- serial (`_forward`, `_backward`): one Gaussian at a time over its whole box, as above. One
  thread; the reference the tiled kernels are tested against (`composite_numba(parallel=False)`).
- tiled (`_forward_tiles`, `_backward_tiles`, the default from TILED_MIN_PIXELS pixels per call,
  i.e. 1 × 182², 8 × 64²): the image is cut into TILE × TILE
  tiles and each (image, tile) is one task of a numba `prange`. `_prepare` (also in parallel, over
  chunks of Gaussians) lists, per tile, the Gaussians whose box meets it, front to back. A task walks its list over the box ∩ tile, so every pixel meets the same
  Gaussians in the same order as in the serial kernel: same images. Backward, a task writes each
  Gaussian's gradient sums over its pixels to a slot of its own (one per tile-list entry), and a
  second parallel loop (over Gaussians) adds a Gaussian's slots in tile order: no atomics, no sum that depends on
  which thread ran what, so the gradients are bit-identical run to run and for any thread count
  (they differ from the serial kernel's by the order of the additions only).
  Threads: `kernel_threads`: torch's thread count (`--threads`), at most numba's pool, and one
  per 128² pixels of the call.
  Scaling is bounded by the tiles (512² has 1,024, 32² only 4), by the serial steps (the depth
  sort, the prefix sums of `_prepare`) and, on a head, by the uneven work per tile.

Arithmetic is float64 inside the kernels whatever the input dtype. `rasterize_torch` stays the
readable reference path, and the tests compare both with the dense reference.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from agora_core.render.pairs import ALPHA_MAX, T_MIN
from agora_core.render.projection import ALPHA_MIN, EPS2D, EXTEND_MAX, NEAR_PLANE, Projection

TILE_SHIFT = 4
TILE = 1 << TILE_SHIFT  # pixels per side of the tiled kernels' tiles (one task per image and tile)
PREPARE_CHUNK = 8192  # Gaussians per task when the tile lists are built
WORK_PER_THREAD = 128 * 128  # smallest share of a call's pixels (projection: Gaussians) worth a thread
TILED_MIN_PIXELS = 2 * WORK_PER_THREAD  # smaller calls run the serial kernels (less set-up, one thread anyway)

try:  # optional at import time: `rasterize(backend="auto")` falls back to the torch path
    import numba
    from numba import njit, prange
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

    @njit(cache=True, inline="always")
    def _blend(mx, my, ca, cb, cc, o, c0, c1, c2, r, x0, x1, y0, y1, width, trans, stop, acc):
        """One Gaussian (rank r; mean, conic, opacity, colour) over the pixels [x0, x1] × [y0, y1] of
        one image, front to back. trans, stop, acc: the image's [HW], [HW], [HW, 3] running
        transmittance, stop rank and colour. Returns how many pixels stopped here."""
        level = math.log(o / ALPHA_MIN) + 1e-9  # sigma above this: alpha < 1/255, no exp needed
        stopped = 0
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
                    stopped += 1
                    continue
                w = alpha * t
                acc[p, 0] += w * c0
                acc[p, 1] += w * c1
                acc[p, 2] += w * c2
                trans[p] = next_t
        return stopped

    @njit(cache=True, inline="always")
    def _unblend(mx, my, ca, cb, cc, o, c0, c1, c2, r, x0, x1, y0, y1, width,
                 final_trans, stop_rank, grad_rgb, grad_alpha, trans, behind):
        """The backward step of `_blend` over the same pixels of one image, back to front. final_trans,
        stop_rank, grad_alpha, trans [HW] and grad_rgb, behind [HW, 3] are the image's rows; trans
        (running transmittance) and behind (colour behind this rank) are updated. Returns the
        Gaussian's gradient sums over these pixels: mean x, y; conic a, b, c; opacity; colour."""
        level = math.log(o / ALPHA_MIN) + 1e-9
        gm0 = gm1 = gca = gcb = gcc = go = gc0 = gc1 = gc2 = 0.0
        for y in range(y0, y1 + 1):
            dy = y + 0.5 - my
            for x in range(x0, x1 + 1):
                p = y * width + x
                if r >= stop_rank[p]:
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
                d_alpha = grad_alpha[p] * final_trans[p] / (1.0 - alpha)
                g0, g1, g2 = grad_rgb[p, 0], grad_rgb[p, 1], grad_rgb[p, 2]
                gc0 += w * g0
                gc1 += w * g1
                gc2 += w * g2
                d_alpha += t_i * (c0 - behind[p, 0]) * g0
                d_alpha += t_i * (c1 - behind[p, 1]) * g1
                d_alpha += t_i * (c2 - behind[p, 2]) * g2
                behind[p, 0] = alpha * c0 + (1.0 - alpha) * behind[p, 0]
                behind[p, 1] = alpha * c1 + (1.0 - alpha) * behind[p, 1]
                behind[p, 2] = alpha * c2 + (1.0 - alpha) * behind[p, 2]
                trans[p] = t_i
                if raw > ALPHA_MAX:  # clamped: alpha does not depend on o, sigma here
                    continue
                go += d_alpha * falloff
                d_sigma = -d_alpha * alpha
                gca += 0.5 * d_sigma * dx * dx
                gcb += d_sigma * dx * dy
                gcc += 0.5 * d_sigma * dy * dy
                gm0 -= d_sigma * (ca * dx + cb * dy)
                gm1 -= d_sigma * (cc * dy + cb * dx)
        return gm0, gm1, gca, gcb, gcc, go, gc0, gc1, gc2

    @njit(cache=True, inline="always")
    def _add_grads(s, b, g, g_means, g_conics, g_opac, g_colors):
        """Adds the 9 sums of `_unblend` (tuple or array) to Gaussian g of image b."""
        g_means[b, g, 0] += s[0]
        g_means[b, g, 1] += s[1]
        g_conics[b, g, 0] += s[2]
        g_conics[b, g, 1] += s[3]
        g_conics[b, g, 2] += s[4]
        g_opac[b, g] += s[5]
        g_colors[b, g, 0] += s[6]
        g_colors[b, g, 1] += s[7]
        g_colors[b, g, 2] += s[8]

    @njit(cache=True)
    def _forward(means2d, conics, opac, colors, order, counts, radii, background, width, height,
                 out_rgb, out_trans, out_stop):
        """Serial: out_rgb [B, HW, 3], out_trans [B, HW] (final T), out_stop [B, HW] (rank a pixel stopped at)."""
        nb = means2d.shape[0]
        for b in range(nb):
            out_trans[b, :] = 1.0
            out_stop[b, :] = counts[b]
            out_rgb[b, :, :] = 0.0
            for r in range(counts[b]):
                g = order[b, r]
                x0, x1, y0, y1 = _box(means2d[b, g, 0], means2d[b, g, 1], radii[b, g, 0], radii[b, g, 1], width, height)
                _blend(means2d[b, g, 0], means2d[b, g, 1], conics[b, g, 0], conics[b, g, 1], conics[b, g, 2],
                       opac[b, g], colors[b, g, 0], colors[b, g, 1], colors[b, g, 2], r, x0, x1, y0, y1, width,
                       out_trans[b], out_stop[b], out_rgb[b])
            for p in range(width * height):
                for k in range(3):
                    out_rgb[b, p, k] += out_trans[b, p] * background[b, k]

    @njit(cache=True)
    def _backward(means2d, conics, opac, colors, order, counts, radii, background, width, height,
                  final_trans, stop_rank, grad_rgb, grad_alpha,
                  g_means, g_conics, g_opac, g_colors, g_background):
        """Serial: accumulates into the g_* arrays (zeroed by the caller); grad_rgb [B, HW, 3], grad_alpha [B, HW]."""
        nb = means2d.shape[0]
        npix = width * height
        trans = final_trans.copy()
        behind = np.empty((nb, npix, 3))
        for b in range(nb):
            for p in range(npix):
                for k in range(3):
                    behind[b, p, k] = background[b, k]
                    g_background[b, k] += final_trans[b, p] * grad_rgb[b, p, k]
            for r in range(counts[b] - 1, -1, -1):
                g = order[b, r]
                x0, x1, y0, y1 = _box(means2d[b, g, 0], means2d[b, g, 1], radii[b, g, 0], radii[b, g, 1], width, height)
                s = _unblend(means2d[b, g, 0], means2d[b, g, 1], conics[b, g, 0], conics[b, g, 1], conics[b, g, 2],
                             opac[b, g], colors[b, g, 0], colors[b, g, 1], colors[b, g, 2], r, x0, x1, y0, y1, width,
                             final_trans[b], stop_rank[b], grad_rgb[b], grad_alpha[b], trans[b], behind[b])
                _add_grads(s, b, g, g_means, g_conics, g_opac, g_colors)

    # ---- parallel: one task per (image, TILE × TILE tile) ----

    @njit(cache=True)
    def _prepare_chunk(c, chunk, means2d, order, counts, radii, width, height, boxes, cursor):
        """Chunk c of `_prepare`: the boxes of ranks [r0, r0 + chunk) of image b (c = b · chunks per
        image + k), and how many of them each tile gets (cursor[c])."""
        n = order.shape[1]
        per_image = (n + chunk - 1) // chunk
        b = c // per_image
        r0 = (c - b * per_image) * chunk
        tiles_y = (height + TILE - 1) >> TILE_SHIFT
        for r in range(r0, min(n, r0 + chunk)):
            x0, x1, y0, y1 = 1, 0, 1, 0
            if r < counts[b]:
                g = order[b, r]
                x0, x1, y0, y1 = _box(means2d[b, g, 0], means2d[b, g, 1], radii[b, g, 0], radii[b, g, 1], width, height)
                if x0 <= x1 and y0 <= y1:
                    for tx in range(x0 >> TILE_SHIFT, (x1 >> TILE_SHIFT) + 1):
                        for ty in range(y0 >> TILE_SHIFT, (y1 >> TILE_SHIFT) + 1):
                            cursor[c, tx * tiles_y + ty] += 1
                else:
                    x0, x1, y0, y1 = 1, 0, 1, 0
            boxes[b, r, 0], boxes[b, r, 1], boxes[b, r, 2], boxes[b, r, 3] = x0, x1, y0, y1

    @njit(cache=True)
    def _fill_chunk(c, chunk, boxes, height, cursor, ranks):
        """Chunk c of `_prepare`'s second pass: its ranks into the tile lists, at the chunk's cursors."""
        n = boxes.shape[1]
        per_image = (n + chunk - 1) // chunk
        b = c // per_image
        r0 = (c - b * per_image) * chunk
        tiles_y = (height + TILE - 1) >> TILE_SHIFT
        for r in range(r0, min(n, r0 + chunk)):
            x0, x1, y0, y1 = boxes[b, r, 0], boxes[b, r, 1], boxes[b, r, 2], boxes[b, r, 3]
            for tx in range(x0 >> TILE_SHIFT, (x1 >> TILE_SHIFT) + 1) if x0 <= x1 else range(0):
                for ty in range(y0 >> TILE_SHIFT, (y1 >> TILE_SHIFT) + 1):
                    t = tx * tiles_y + ty
                    ranks[cursor[c, t]] = r
                    cursor[c, t] += 1

    @njit(cache=True, parallel=True)
    def _prepare(means2d, order, counts, radii, width, height, chunk):
        """Tile lists for the tiled kernels, in parallel over chunks of `chunk` ranks of one image
        (nothing returned depends on the chunking).

        Returns boxes [B, N, 4]: rank r's pixel box x0, x1, y0, y1 (empty: x0 > x1); task_start [T+1]
        and ranks [E]: task t = b · tiles + column · rows + row has the ranks
        ranks[task_start[t]:task_start[t+1]], front to back.
        """
        nb, n = order.shape[0], order.shape[1]
        ntiles = ((width + TILE - 1) >> TILE_SHIFT) * ((height + TILE - 1) >> TILE_SHIFT)
        per_image = (n + chunk - 1) // chunk
        boxes = np.empty((nb, n, 4), np.int64)
        cursor = np.zeros((nb * per_image, ntiles), np.int64)  # per chunk and tile: count, then write position
        for c in prange(nb * per_image):
            _prepare_chunk(c, chunk, means2d, order, counts, radii, width, height, boxes, cursor)
        task_start = np.empty(nb * ntiles + 1, np.int64)
        run = 0
        for b in range(nb):
            for t in range(ntiles):
                task_start[b * ntiles + t] = run
                for c in range(b * per_image, (b + 1) * per_image):
                    count = cursor[c, t]
                    cursor[c, t] = run
                    run += count
        task_start[nb * ntiles] = run
        ranks = np.empty(run, np.int64)
        for c in prange(nb * per_image):
            _fill_chunk(c, chunk, boxes, height, cursor, ranks)
        return boxes, task_start, ranks

    @njit(cache=True, inline="always")
    def _tile_rect(task, ntiles, tiles_y, width, height):
        """Image b and pixel rectangle [x0, x1] × [y0, y1] of task = b · ntiles + tile, tiles numbered
        column by column (tile = column · tiles_y + row)."""
        b = task // ntiles
        t = task - b * ntiles
        column = t // tiles_y
        x0 = column * TILE
        y0 = (t - column * tiles_y) * TILE
        return b, x0, min(x0 + TILE, width) - 1, y0, min(y0 + TILE, height) - 1

    @njit(cache=True, parallel=True)
    def _forward_tiles(means2d, conics, opac, colors, order, counts, boxes, background, width, height,
                       task_start, ranks, out_rgb, out_trans, out_stop):
        """`_forward`, one task per (image, tile) in parallel: each pixel meets the same Gaussians in the
        same order with the same arithmetic (`_blend`) as in the serial kernel."""
        nb = means2d.shape[0]
        tiles_y = (height + TILE - 1) >> TILE_SHIFT
        ntiles = tiles_y * ((width + TILE - 1) >> TILE_SHIFT)
        for task in prange(nb * ntiles):
            b, tx0, tx1, ty0, ty1 = _tile_rect(task, ntiles, tiles_y, width, height)
            trans, stop, acc = out_trans[b], out_stop[b], out_rgb[b]
            for y in range(ty0, ty1 + 1):
                for x in range(tx0, tx1 + 1):
                    p = y * width + x
                    trans[p] = 1.0
                    stop[p] = counts[b]
                    acc[p, 0] = acc[p, 1] = acc[p, 2] = 0.0
            live = (tx1 - tx0 + 1) * (ty1 - ty0 + 1)  # pixels not stopped yet
            for i in range(task_start[task], task_start[task + 1]):
                if live == 0:
                    break
                r = ranks[i]
                g = order[b, r]
                live -= _blend(means2d[b, g, 0], means2d[b, g, 1], conics[b, g, 0], conics[b, g, 1], conics[b, g, 2],
                               opac[b, g], colors[b, g, 0], colors[b, g, 1], colors[b, g, 2], r,
                               max(boxes[b, r, 0], tx0), min(boxes[b, r, 1], tx1),
                               max(boxes[b, r, 2], ty0), min(boxes[b, r, 3], ty1), width, trans, stop, acc)
            for y in range(ty0, ty1 + 1):
                for x in range(tx0, tx1 + 1):
                    p = y * width + x
                    for k in range(3):
                        acc[p, k] += trans[p] * background[b, k]

    @njit(cache=True, parallel=True)
    def _backward_tiles(means2d, conics, opac, colors, order, counts, boxes, background, width, height,
                        task_start, ranks, final_trans, stop_rank, grad_rgb, grad_alpha):
        """`_backward`, one task per (image, tile) in parallel. A task sums its pixels' gradients per
        Gaussian into that Gaussian's entry of its tile list, a slot no other task writes: returns
        part [E, 9] (`_unblend`'s sums per entry) and the background's gradient per task [T, 3]."""
        nb = means2d.shape[0]
        tiles_y = (height + TILE - 1) >> TILE_SHIFT
        ntiles = tiles_y * ((width + TILE - 1) >> TILE_SHIFT)
        part = np.empty((ranks.shape[0], 9))
        bg_part = np.zeros((nb * ntiles, 3))
        trans = final_trans.copy()
        behind = np.empty((nb, width * height, 3))
        for task in prange(nb * ntiles):
            b, tx0, tx1, ty0, ty1 = _tile_rect(task, ntiles, tiles_y, width, height)
            last = 0  # no pixel of the tile reaches rank `last`
            for y in range(ty0, ty1 + 1):
                for x in range(tx0, tx1 + 1):
                    p = y * width + x
                    last = max(last, stop_rank[b, p])
                    for k in range(3):
                        behind[b, p, k] = background[b, k]
                        bg_part[task, k] += final_trans[b, p] * grad_rgb[b, p, k]
            for i in range(task_start[task + 1] - 1, task_start[task] - 1, -1):
                r = ranks[i]
                if r >= last:  # every pixel of the tile stopped in front of it
                    part[i, :] = 0.0
                    continue
                g = order[b, r]
                s = _unblend(means2d[b, g, 0], means2d[b, g, 1], conics[b, g, 0], conics[b, g, 1], conics[b, g, 2],
                             opac[b, g], colors[b, g, 0], colors[b, g, 1], colors[b, g, 2], r,
                             max(boxes[b, r, 0], tx0), min(boxes[b, r, 1], tx1),
                             max(boxes[b, r, 2], ty0), min(boxes[b, r, 3], ty1), width,
                             final_trans[b], stop_rank[b], grad_rgb[b], grad_alpha[b], trans[b], behind[b])
                for k in range(9):
                    part[i, k] = s[k]
        return part, bg_part

    @njit(cache=True, parallel=True)
    def _reduce_tiles(part, bg_part, order, counts, boxes, height, task_start, ranks,
                      g_means, g_conics, g_opac, g_colors, g_background):
        """Adds, per Gaussian and in parallel over Gaussians, its entries of `part` in ascending task
        order (its entry in a tile's list is found by bisection: the lists are sorted by rank), then
        the tasks' background gradients in task order. No sum depends on which thread ran what: the
        gradients are the same for any thread count, and differ from the serial kernel's only by the
        order of the additions."""
        nb = order.shape[0]
        ntiles = bg_part.shape[0] // nb
        tiles_y = (height + TILE - 1) >> TILE_SHIFT
        for b in range(nb):
            for r in prange(counts[b]):
                x0, x1, y0, y1 = boxes[b, r, 0], boxes[b, r, 1], boxes[b, r, 2], boxes[b, r, 3]
                g = order[b, r]
                for tx in range(x0 >> TILE_SHIFT, (x1 >> TILE_SHIFT) + 1) if x0 <= x1 else range(0):
                    for ty in range(y0 >> TILE_SHIFT, (y1 >> TILE_SHIFT) + 1):
                        task = b * ntiles + tx * tiles_y + ty
                        lo = task_start[task] + np.searchsorted(ranks[task_start[task]:task_start[task + 1]], r)
                        _add_grads(part[lo], b, g, g_means, g_conics, g_opac, g_colors)
        for b in range(nb):
            for t in range(ntiles):
                for k in range(3):
                    g_background[b, k] += bg_part[b * ntiles + t, k]

    @njit(cache=True)
    def _sort_visible(keys, radii, order, counts):
        """`_depth_order` in place: a stable LSD radix sort (16-bit digits) of the int64 keys of the
        Gaussians with a footprint (radii > 0), per image."""
        nb, n = keys.shape
        for b in range(nb):
            idx = np.empty(n, np.int64)
            key = np.empty(n, np.int64)
            m = 0
            for i in range(n):
                if radii[b, i, 0] > 0 or radii[b, i, 1] > 0:
                    idx[m] = i
                    key[m] = keys[b, i]
                    m += 1
            k = m
            for i in range(n):
                if not (radii[b, i, 0] > 0 or radii[b, i, 1] > 0):
                    order[b, k] = i
                    k += 1
            counts[b] = m
            src_i, src_k = idx[:m], key[:m]
            dst_i, dst_k = np.empty(m, np.int64), np.empty(m, np.int64)
            hist = np.empty(1 << 16, np.int64)
            for shift in range(0, 64, 16):
                hist[:] = 0
                for j in range(m):
                    hist[(src_k[j] >> shift) & 0xFFFF] += 1
                if m == 0 or hist.max() == m:  # one digit value for all: this pass changes nothing
                    continue
                run = 0
                for d in range(1 << 16):
                    count = hist[d]
                    hist[d] = run
                    run += count
                for j in range(m):
                    d = (src_k[j] >> shift) & 0xFFFF
                    dst_i[hist[d]] = src_i[j]
                    dst_k[hist[d]] = src_k[j]
                    hist[d] += 1
                src_i, dst_i = dst_i, src_i
                src_k, dst_k = dst_k, src_k
            order[b, :m] = src_i

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
    numba.set_num_threads(kernel_threads(b * n))
    _project(*[_np64(t) for t in (means, quats, log_scales, opacities, world2cam, ks)], width, height,
             means2d, conics, depths, radii)
    return Projection(_tensor(means2d, means), _tensor(conics, means), _tensor(depths, means),
                      torch.from_numpy(radii).to(means.device))


def _depth_order(proj: Projection) -> tuple[np.ndarray, np.ndarray]:
    """Per image: visible Gaussians front to back (stable in index for equal depths), then the
    others in index order; and the visible counts."""
    b, n = proj.depths.shape
    order, counts = np.empty((b, n), np.int64), np.empty(b, np.int64)
    depth_bits = _np64(proj.depths).view(np.int64)  # depths of visible Gaussians are > 0: bits sort as numbers
    _sort_visible(depth_bits, np.ascontiguousarray(proj.radii.cpu().numpy()), order, counts)
    return order, counts


def _np64(t: Tensor) -> np.ndarray:
    """A C-contiguous float64 copy (or view) of a CPU tensor. The copies here and in `_tensor` are
    numpy's: torch would spread each over its thread pool, and on a busy machine waiting for a
    second thread costs far more than such a copy."""
    t = t.detach().cpu()
    if t.dtype == torch.bfloat16:  # no numpy dtype
        t = t.float()
    return np.ascontiguousarray(t.numpy(), dtype=np.float64)


def _tensor(a: np.ndarray, like: Tensor) -> Tensor:
    """A kernel's float64 output as a tensor of `like`'s dtype and device (numpy's cast, see `_np64`)."""
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


class _Composite(torch.autograd.Function):
    @staticmethod
    def forward(ctx, means2d, conics, opacities, colors, background, radii, order, counts, width, height, parallel):
        b = means2d.shape[0]
        arrays = [_np64(t) for t in (means2d, conics, opacities, colors)]
        radii_np = np.ascontiguousarray(radii.cpu().numpy().astype(np.float64))
        bg = _np64(background)
        rgb = np.empty((b, width * height, 3))
        trans = np.empty((b, width * height))
        stop = np.empty((b, width * height), dtype=np.int64)
        tiles = None
        if parallel:
            numba.set_num_threads(kernel_threads(b * width * height))
            tiles = _prepare(arrays[0], order, counts, radii_np, width, height, PREPARE_CHUNK)
            with numba.parallel_chunksize(-(-height // TILE)):  # a thread takes a column of tiles at a time
                _forward_tiles(*arrays, order, counts, tiles[0], bg, width, height, *tiles[1:], rgb, trans, stop)
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
            numba.set_num_threads(kernel_threads(trans.size))
            with numba.parallel_chunksize(-(-height // TILE)):
                part, bg_part = _backward_tiles(*arrays, order, counts, tiles[0], bg, width, height, *tiles[1:],
                                                trans, stop, g_rgb, g_alpha)
            _reduce_tiles(part, bg_part, order, counts, tiles[0], height, *tiles[1:], *zeros)
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
    order, counts = _depth_order(proj)
    rgb, alpha = _Composite.apply(proj.means2d, proj.conics, opacities, colors, background, proj.radii,
                                  order, counts, width, height, parallel)
    rgb = rgb.reshape(b, height, width, 3).permute(0, 3, 1, 2)
    return rgb, alpha.reshape(b, 1, height, width)
