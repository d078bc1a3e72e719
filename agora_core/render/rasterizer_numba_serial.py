"""The per-pixel arithmetic of the compiled CPU compositing and its serial layout (numba).

`_blend` / `_unblend` are one Gaussian's forward / backward step over a box of pixels (front to
back; back to front), shared by the serial kernels here (`_forward`, `_backward`: one Gaussian at a
time over its whole box, one thread; the reference of the tiled kernels) and the tiled kernels of
rasterizer_numba_tiles.py. `_sort_visible` is the depth order both layouts walk. The semantics
and the host side are in rasterizer_numba.py.
"""

from __future__ import annotations

import math

import numpy as np

from agora_core.render.pairs import ALPHA_MAX, T_MIN
from agora_core.render.projection import ALPHA_MIN

try:  # optional at import time: `rasterize(backend="auto")` falls back to the torch path
    import numba
    from numba import njit
except ImportError:  # pragma: no cover - numba is a declared dependency
    numba = None


if numba is not None:

    @njit(cache=True, inline="always")
    def _box(mx, my, rx, ry, width, height):
        """Pixel index ranges whose centres lie in the projection box (as pairs.py rounds it)."""
        mx, my = float(mx), float(my)
        x0 = max(0, int(math.ceil(mx - rx - 0.5)))
        x1 = min(width - 1, int(math.floor(mx + rx - 0.5)))
        y0 = max(0, int(math.ceil(my - ry - 0.5)))
        y1 = min(height - 1, int(math.floor(my + ry - 0.5)))
        return x0, x1, y0, y1

    @njit(cache=True, inline="always")
    def _blend(mx, my, ca, cb, cc, o, c0, c1, c2, r, x0, x1, y0, y1, width, trans, stop, acc):
        """One Gaussian (rank r; mean, conic, opacity, colour) over the pixels [x0, x1] × [y0, y1] of
        one image, front to back. trans, stop, acc: the image's [HW], [HW], [HW, 3] running
        transmittance, stop rank and colour. Returns how many pixels stopped here. The Gaussian's
        values may come from float32 arrays: all arithmetic is float64 (exact promotion first)."""
        mx, my, ca, cb, cc, o, c0, c1, c2 = (float(mx), float(my), float(ca), float(cb), float(cc), float(o),
                                             float(c0), float(c1), float(c2))
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
        Gaussian's gradient sums over these pixels: mean x, y; conic a, b, c; opacity; colour. In
        float64, as `_blend`."""
        mx, my, ca, cb, cc, o, c0, c1, c2 = (float(mx), float(my), float(ca), float(cb), float(cc), float(o),
                                             float(c0), float(c1), float(c2))
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

    @njit(cache=True)
    def _radix_sort(src_i, src_k):
        """The indices src_i reordered by their int64 keys src_k, stably: an LSD radix sort over the
        bits in which the keys differ (the others cannot change the order), in as few passes of at
        most 16-bit digits as those bits need (depth keys of float32 depths: ~24 bits, 2 passes of
        12) and skipping a pass whose digit all keys share. Overwrites both."""
        m = src_i.shape[0]
        diff = 0
        for j in range(m):
            diff |= src_k[j] ^ src_k[0]
        if diff == 0:  # all keys equal (or none): the stable order is the given one
            return src_i
        lo = 0
        while (diff >> lo) & 1 == 0:
            lo += 1
        hi = 63
        while (diff >> hi) & 1 == 0:
            hi -= 1
        passes = (hi - lo + 16) // 16
        digit = (hi - lo + passes) // passes  # ceil((hi - lo + 1) / passes) bits
        mask = (1 << digit) - 1
        dst_i, dst_k = np.empty(m, np.int64), np.empty(m, np.int64)
        hist = np.empty(1 << digit, np.int64)
        for step in range(passes):
            shift = lo + step * digit
            hist[:] = 0
            for j in range(m):
                hist[(src_k[j] >> shift) & mask] += 1
            if hist.max() == m:  # one digit value for all: this pass changes nothing
                continue
            run = 0
            for d in range(1 << digit):
                count = hist[d]
                hist[d] = run
                run += count
            for j in range(m):
                d = (src_k[j] >> shift) & mask
                dst_i[hist[d]] = src_i[j]
                dst_k[hist[d]] = src_k[j]
                hist[d] += 1
            src_i, dst_i = dst_i, src_i
            src_k, dst_k = dst_k, src_k
        return src_i

    @njit(cache=True)
    def _visible_first(keys, radii, b, order):
        """Image b's visible Gaussians (radii > 0) and their keys, in index order; the others go to
        the end of order[b], in index order. Returns (indices, keys) of the visible ones."""
        n = keys.shape[1]
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
        return idx[:m], key[:m]

    @njit(cache=True)
    def _sort_visible(keys, radii, order, counts):
        """`_depth_order` in place: a stable LSD radix sort (`_radix_sort`) of the int64 keys of the
        Gaussians with a footprint (radii > 0), per image."""
        for b in range(keys.shape[0]):
            idx, key = _visible_first(keys, radii, b, order)
            counts[b] = idx.shape[0]
            order[b, :idx.shape[0]] = _radix_sort(idx, key)
