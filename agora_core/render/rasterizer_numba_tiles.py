"""The tiled, parallel layout of the compiled CPU compositing (numba): one `prange` task per (image,
tile), a tile being a band of TILE pixel rows across the whole image width; the same per-pixel
arithmetic as the serial kernels (`_blend`, `_unblend` of rasterizer_numba_serial.py), so the same
images; gradients through per-tile slots reduced in tile order (`_reduce_tiles`), so bit-identical
for any thread count. rasterizer_numba.py says when it is used and how many threads it gets.

Why bands and not squares: a splat's pixels then split only where it crosses a band's edge, so
there are fewer (tile, Gaussian) entries to set up, and the Gaussians a tile walks one after
another are spread across the width, so a pixel's running transmittance is rarely rewritten by
the Gaussian just before. At 512² on a head (`benchmarks/render.py --tiled`), one thread of the
16 × 16-square layout took ~1.4× the serial kernel's time, bands of 16 rows ~1.1×, bands of 32
rows ~1.0×. Why 32 rows: each band a splat crosses costs it one more tile-list entry (~80 ns), and
taller bands cross fewer (at 512²: 276,791 entries with 16 rows, 238,956 with 32, for 204,780
splats), while 32 rows still leave 16 tasks per 512² image to balance over the threads (README,
"Multi-threaded CPU rasterizer").

Why each tile-list entry carries a copy of its Gaussian's values (`_prepare`'s records): a band's
Gaussians are scattered through the depth order, so fetching them from the per-Gaussian arrays
cost cache misses per entry; read as one sequential list, one thread of the tiled kernels is now
~5 % (forward) and ~25 % (backward) faster than the serial ones at 512², records included.
"""

from __future__ import annotations

import numpy as np

from agora_core.render.rasterizer_numba_serial import numba

TILE_SHIFT = 5
TILE = 1 << TILE_SHIFT  # pixel rows per tile (one task per image and tile; a tile spans the width)
PREPARE_CHUNK = 8192  # Gaussians per task when the tile lists are built

if numba is not None:
    from numba import njit, prange

    from agora_core.render.rasterizer_numba_serial import (_add_grads, _blend, _box, _radix_sort, _unblend,
                                                           _visible_first)

    @njit(cache=True, parallel=True)
    def _sort_visible_slices(keys, radii, order, counts, slices):
        """`_sort_visible` (the same order: a stable sort has one result) with the sorting in parallel:
        each image's visible keys are split, in index order, into `slices` buckets of key ranges
        (bounds: quantiles of a sample of the keys), and each bucket is radix-sorted on its own thread
        (`_radix_sort`). Equal keys share a bucket and a bucket keeps index order, so the buckets one
        after another are the stable order, for any number of slices. One parallel region per image:
        on a busy machine each region waits for its slowest thread."""
        for b in range(keys.shape[0]):
            idx, key = _visible_first(keys, radii, b, order)
            m = idx.shape[0]
            counts[b] = m
            sample = np.sort(key[::max(1, m // 4096)])
            bounds = np.empty(slices - 1, np.int64)
            for c in range(slices - 1):
                bounds[c] = sample[(c + 1) * sample.shape[0] // slices] if sample.shape[0] else 0
            bucket = np.searchsorted(bounds, key, side="right")  # keys equal to a bound go above it
            start = np.zeros(slices + 1, np.int64)
            for j in range(m):
                start[bucket[j] + 1] += 1
            for c in range(slices):
                start[c + 1] += start[c]
            at = start[:slices].copy()
            by_i, by_k = np.empty(m, np.int64), np.empty(m, np.int64)
            for j in range(m):
                c = bucket[j]
                by_i[at[c]], by_k[at[c]] = idx[j], key[j]
                at[c] += 1
            for c in prange(slices):
                order[b, start[c]:start[c + 1]] = _radix_sort(by_i[start[c]:start[c + 1]], by_k[start[c]:start[c + 1]])

    @njit(cache=True)
    def _count_chunk(c, chunk, boxes, cursor, slot, chunk_entries):
        """Chunk c of `_prepare`: ranks [r0, r0 + chunk) of image b (c = b · chunks per image + k): how
        many of them each tile gets (cursor[c]), each rank's first slot counted from the chunk's start
        (slot) and the chunk's number of entries (chunk_entries[c])."""
        n = boxes.shape[1]
        per_image = (n + chunk - 1) // chunk
        b = c // per_image
        r0 = (c - b * per_image) * chunk
        entries = 0
        with_slots = slot.shape[0] > 0
        for r in range(r0, min(n, r0 + chunk)):
            if with_slots:
                slot[b, r] = entries
            if boxes[b, r, 0] <= boxes[b, r, 1]:
                for t in range(boxes[b, r, 2] >> TILE_SHIFT, (boxes[b, r, 3] >> TILE_SHIFT) + 1):
                    cursor[c, t] += 1
                    entries += 1
        chunk_entries[c] = entries

    @njit(cache=True)
    def _fill_chunk(c, chunk, packed, boxes, cursor, ranks, rec, rec_box, slot, chunk_start, entry):
        """Chunk c of `_prepare`'s last pass: its ranks into the tile lists, at the chunk's cursors,
        each with its Gaussian's record (rec: packed's values; rec_box: its box cut to the tile's
        rows); its slots offset by the chunk's first slot, and where each slot's entry went."""
        n = boxes.shape[1]
        per_image = (n + chunk - 1) // chunk
        b = c // per_image
        r0 = (c - b * per_image) * chunk
        with_slots = slot.shape[0] > 0
        for r in range(r0, min(n, r0 + chunk)):
            x0, x1, y0, y1 = boxes[b, r, 0], boxes[b, r, 1], boxes[b, r, 2], boxes[b, r, 3]
            if x0 > x1:
                continue
            j = 0
            if with_slots:
                slot[b, r] += chunk_start
                j = slot[b, r]
            for t in range(y0 >> TILE_SHIFT, (y1 >> TILE_SHIFT) + 1):
                at = cursor[c, t]
                ranks[at] = r
                for k in range(9):
                    rec[at, k] = packed[b, r, k]
                rec_box[at, 0], rec_box[at, 1] = x0, x1
                rec_box[at, 2], rec_box[at, 3] = max(y0, t << TILE_SHIFT), min(y1, ((t + 1) << TILE_SHIFT) - 1)
                if with_slots:
                    entry[j] = at
                    j += 1
                cursor[c, t] = at + 1

    @njit(cache=True, parallel=True)
    def _prepare(means2d, conics, opac, colors, order, counts, radii, width, height, chunk, with_slots):
        """Tile lists for the tiled kernels, in parallel over chunks of `chunk` Gaussians of one image
        (nothing returned depends on the chunking); slot and entry only `with_slots` (the backward
        pass needs them), else empty. means2d, conics, opac, colors: one float dtype, the records'.

        Returns boxes [B, N, 4]: rank r's pixel box x0, x1, y0, y1 (empty: x0 > x1; every rank from
        counts[b] on is empty); task_start [T+1] and ranks [E]: task t = b · tiles + tile (tile: rows
        [TILE · tile, TILE · (tile + 1))) has the ranks ranks[task_start[t]:task_start[t+1]], front to
        back; rec [E, 9] and rec_box [E, 4]: each entry's Gaussian (mean x, y; conic a, b, c;
        opacity; colour) and its box cut to the tile's rows, copied in list order so that the kernels
        read them one after another (gathering them in depth order from the per-Gaussian arrays took
        ~25 % of the tiled forward at 512², `benchmarks/render.py --tiled`); slot [B, N] and entry
        [E]: rank r of image b has one entry per tile its box meets, top to bottom, at ranks[entry[j]]
        for j = slot[b, r], slot[b, r] + 1, ... (how `_reduce_tiles` finds a Gaussian's gradient sums).
        """
        nb, n = order.shape[0], order.shape[1]
        ntiles = (height + TILE - 1) >> TILE_SHIFT
        per_image = (n + chunk - 1) // chunk
        # Each Gaussian's box and values go to its rank's row, read in index order and written in
        # depth order (scattered writes; the passes after this read them in rank order, one after
        # another, rather than fetching five arrays' rows per Gaussian in depth order).
        rank = np.empty((nb, n), np.int64)
        for c in prange(nb * per_image):
            b = c // per_image
            for r in range((c - b * per_image) * chunk, min(n, (c - b * per_image + 1) * chunk)):
                rank[b, order[b, r]] = r
        boxes = np.empty((nb, n, 4), np.int32)
        packed = np.empty((nb, n, 9), means2d.dtype)
        for c in prange(nb * per_image):
            b = c // per_image
            for i in range((c - b * per_image) * chunk, min(n, (c - b * per_image + 1) * chunk)):
                r = rank[b, i]
                x0, x1, y0, y1 = 1, 0, 1, 0  # no footprint (culled; its mean may not be finite): empty
                if r < counts[b]:
                    x0, x1, y0, y1 = _box(means2d[b, i, 0], means2d[b, i, 1], radii[b, i, 0], radii[b, i, 1], width,
                                          height)
                    if x0 > x1 or y0 > y1:  # off the image
                        x0, x1, y0, y1 = 1, 0, 1, 0
                boxes[b, r, 0], boxes[b, r, 1], boxes[b, r, 2], boxes[b, r, 3] = x0, x1, y0, y1
                if x0 <= x1:
                    packed[b, r, 0], packed[b, r, 1] = means2d[b, i, 0], means2d[b, i, 1]
                    packed[b, r, 2], packed[b, r, 3], packed[b, r, 4] = conics[b, i, 0], conics[b, i, 1], conics[b, i, 2]
                    packed[b, r, 5] = opac[b, i]
                    packed[b, r, 6], packed[b, r, 7], packed[b, r, 8] = colors[b, i, 0], colors[b, i, 1], colors[b, i, 2]
        cursor = np.zeros((nb * per_image, ntiles), np.int64)  # per chunk and tile: count, then write position
        slot = np.empty((nb if with_slots else 0, n), np.int64)
        chunk_entries = np.empty(nb * per_image, np.int64)
        for c in prange(nb * per_image):
            _count_chunk(c, chunk, boxes, cursor, slot, chunk_entries)
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
        ranks, entry = np.empty(run, np.int64), np.empty(run if with_slots else 0, np.int64)
        rec, rec_box = np.empty((run, 9), means2d.dtype), np.empty((run, 4), np.int32)
        chunk_start = np.zeros(nb * per_image, np.int64)
        for c in range(1, nb * per_image):
            chunk_start[c] = chunk_start[c - 1] + chunk_entries[c - 1]
        for c in prange(nb * per_image):
            _fill_chunk(c, chunk, packed, boxes, cursor, ranks, rec, rec_box, slot, chunk_start[c], entry)
        return boxes, task_start, ranks, slot, entry, rec, rec_box

    @njit(cache=True, inline="always")
    def _tile_rect(task, ntiles, width, height):
        """Image b and pixel rectangle [x0, x1] × [y0, y1] of task = b · ntiles + tile."""
        b = task // ntiles
        y0 = (task - b * ntiles) * TILE
        return b, 0, width - 1, y0, min(y0 + TILE, height) - 1

    @njit(cache=True, parallel=True)
    def _forward_tiles(rec, rec_box, ranks, counts, background, width, height, task_start, out_rgb, out_trans,
                       out_stop):
        """`_forward`, one task per (image, tile) in parallel, over `_prepare`'s lists and records: each
        pixel meets the same Gaussians in the same order with the same arithmetic (`_blend`) as in
        the serial kernel."""
        nb = out_rgb.shape[0]
        ntiles = (height + TILE - 1) >> TILE_SHIFT
        for task in prange(nb * ntiles):
            b, tx0, tx1, ty0, ty1 = _tile_rect(task, ntiles, width, height)
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
                q, box = rec[i], rec_box[i]
                live -= _blend(q[0], q[1], q[2], q[3], q[4], q[5], q[6], q[7], q[8], ranks[i],
                               box[0], box[1], box[2], box[3], width, trans, stop, acc)
            for y in range(ty0, ty1 + 1):
                for x in range(tx0, tx1 + 1):
                    p = y * width + x
                    for k in range(3):
                        acc[p, k] += trans[p] * background[b, k]

    @njit(cache=True, parallel=True)
    def _backward_tiles(rec, rec_box, ranks, background, width, height, task_start, final_trans, stop_rank,
                        grad_rgb, grad_alpha):
        """`_backward`, one task per (image, tile) in parallel, over `_prepare`'s lists and records. A
        task sums its pixels' gradients per Gaussian into that Gaussian's entry of its tile list, a
        slot no other task writes: returns part [E, 9] (`_unblend`'s sums per entry) and the
        background's gradient per task [T, 3]."""
        nb = final_trans.shape[0]
        ntiles = (height + TILE - 1) >> TILE_SHIFT
        part = np.empty((ranks.shape[0], 9))
        bg_part = np.zeros((nb * ntiles, 3))
        trans = final_trans.copy()
        behind = np.empty((nb, width * height, 3))
        for task in prange(nb * ntiles):
            b, tx0, tx1, ty0, ty1 = _tile_rect(task, ntiles, width, height)
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
                q, box = rec[i], rec_box[i]
                s = _unblend(q[0], q[1], q[2], q[3], q[4], q[5], q[6], q[7], q[8], r, box[0], box[1], box[2], box[3],
                             width, final_trans[b], stop_rank[b], grad_rgb[b], grad_alpha[b], trans[b], behind[b])
                for k in range(9):
                    part[i, k] = s[k]
        return part, bg_part

    @njit(cache=True, parallel=True)
    def _reduce_tiles(part, bg_part, order, counts, boxes, slot, entry,
                      g_means, g_conics, g_opac, g_colors, g_background):
        """Adds, per Gaussian and in parallel over Gaussians, its entries of `part` in ascending task
        order (`_prepare`'s slot and entry say where they are), then the tasks' background gradients
        in task order. No sum depends on which thread ran what: the
        gradients are the same for any thread count, and differ from the serial kernel's only by the
        order of the additions."""
        nb = order.shape[0]
        ntiles = bg_part.shape[0] // nb
        for b in range(nb):
            for r in prange(counts[b]):
                if boxes[b, r, 0] > boxes[b, r, 1]:
                    continue
                g = order[b, r]
                for j in range(slot[b, r], slot[b, r] + (boxes[b, r, 3] >> TILE_SHIFT) - (boxes[b, r, 2] >> TILE_SHIFT) + 1):
                    _add_grads(part[entry[j]], b, g, g_means, g_conics, g_opac, g_colors)
        for b in range(nb):
            for t in range(ntiles):
                for k in range(3):
                    g_background[b, k] += bg_part[b * ntiles + t, k]
