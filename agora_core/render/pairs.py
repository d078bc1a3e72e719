"""Which (pixel, Gaussian) pairs contribute to an image -- found without autograd.

The CPU rasterizer composites only the pairs returned here. A pair contributes when its alpha is
at least 1/255 and its pixel has not terminated (transmittance about to fall to <= 1e-4) before
it, front to back (gsplat semantics, see rasterizer_torch.py). The search is:

1. Gaussians are visited front to back (one global depth order over the batch) in chunks.
2. Each footprint is cut into pixel rows; a row's x-span is solved exactly from the quadratic
   ``½ dᵀ conic d <= ln(255 o)`` (the region where alpha >= 1/255), so no pixel of the bounding
   box outside the ellipse is ever enumerated.
3. Rows whose pixels have all terminated are dropped (a per-row prefix count of done pixels);
   this occlusion culling is what keeps dense heads cheap -- most back-surface pairs go here.
4. The remaining rows expand into pairs, alpha is evaluated, and the chunk is composited
   (transmittance only) to update the per-pixel running transmittance and done flags.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from agora_core.render.projection import ALPHA_MIN, Projection

ALPHA_MAX = 0.999  # per-pair alpha cap (gsplat; the INRIA 3DGS code uses 0.99)
T_MIN = 1e-4  # a pixel stops before its transmittance would reach this (3DGS/gsplat)
CHUNK_PAIRS = 1 << 19  # footprint-box pixels per chunk: smaller culls more, larger loops less
_SPAN_SLACK = 1e-3  # px; widens solved row spans so rounding never loses a pair (alpha re-checked)


def pair_alpha(params: Tensor, pix: Tensor, width: int, height: int) -> Tensor:
    """α of P (pixel, Gaussian) pairs.

    Args:
        params: [P, 6] per pair: 2D mean x, y; conic a, b, c; opacity.
        pix:    [P] int64 flat pixel index ``image · H · W + y · W + x``.
    Returns:
        [P] ``min(ALPHA_MAX, o · exp(-½ (a dx² + c dy²) − b dx dy))`` at the pixel centre.
    """
    px = (pix % width).to(params.dtype) + 0.5
    py = (torch.div(pix, width, rounding_mode="floor") % height).to(params.dtype) + 0.5
    dx, dy = px - params[:, 0], py - params[:, 1]
    sigma = 0.5 * (params[:, 2] * dx * dx + params[:, 4] * dy * dy) + params[:, 3] * dx * dy
    return (params[:, 5] * torch.exp(-sigma)).clamp_max(ALPHA_MAX)


def segment_starts(sorted_ids: Tensor) -> Tensor:
    """[P] index of the first element of each element's run of equal ids (ids sorted)."""
    if sorted_ids.numel() == 0:
        return sorted_ids.clone()
    new = torch.ones_like(sorted_ids, dtype=torch.bool)
    new[1:] = sorted_ids[1:] != sorted_ids[:-1]
    first = torch.where(new, torch.arange(len(sorted_ids), device=sorted_ids.device), 0)
    return torch.cummax(first, dim=0).values


def segmented_exclusive_cumsum(values: Tensor, starts: Tensor) -> Tensor:
    """Exclusive cumulative sum of ``values`` [P] restarted at each segment start [P].

    One global cumulative sum minus its value at the segment start, in float64 because the
    global sum reaches ~1e6 over a frame and float32 would lose the per-pixel differences.
    Returns float64.
    """
    total = values.double().cumsum(0)
    exclusive = total - values.double()
    return exclusive - exclusive[starts]


@torch.no_grad()
def visible_pairs(
    proj: Projection, opacities: Tensor, width: int, height: int, chunk_pairs: int | None = None
) -> tuple[Tensor, Tensor]:
    """The contributing pairs of B images, sorted by pixel then depth (front first).

    Args:
        proj:      projection of B sets of N Gaussians (radii 0 = culled).
        opacities: [B, N].
        chunk_pairs: footprint-box pixels per chunk (default `CHUNK_PAIRS`); any value gives the
            same pairs, smaller ones cull occluded Gaussians sooner.
    Returns:
        gid [P] (flat Gaussian index b·N + n) and pix [P] (flat pixel b·H·W + y·W + x), int64.
    """
    b, n = opacities.shape
    params = torch.cat([proj.means2d, proj.conics, opacities[..., None]], -1).reshape(b * n, 6)
    visible = (proj.radii > 0).any(-1).reshape(-1).nonzero()[:, 0]
    order = visible[torch.argsort(proj.depths.reshape(-1)[visible], stable=True)]
    radii = proj.radii.reshape(b * n, 2)[order]
    box_area = (2 * radii[:, 0] + 1) * (2 * radii[:, 1] + 1)
    log_t = torch.zeros(b * height * width, dtype=torch.float64, device=params.device)
    done = torch.zeros(b * height * width, dtype=torch.bool, device=params.device)
    empty = torch.zeros(0, dtype=torch.long, device=params.device)
    gids, pixs = [empty], [empty]
    for chunk in _chunks(box_area, chunk_pairs or CHUNK_PAIRS):
        rows = footprint_rows(order[chunk], params, radii[chunk, 1], n, width, height)
        rows = _drop_done_rows(rows, done, width)
        gid, pix = _expand_rows(rows)
        not_done = ~done[pix]
        gid, pix = gid[not_done], pix[not_done]
        alpha = pair_alpha(params.index_select(0, gid), pix, width, height)
        bright = alpha >= ALPHA_MIN
        gid, pix, alive = _advance_transmittance(gid[bright], pix[bright], alpha[bright], log_t, done)
        gids.append(gid[alive])
        pixs.append(pix[alive])
    gid, pix = torch.cat(gids), torch.cat(pixs)
    pix, perm = torch.sort(pix, stable=True)  # chunks are in depth order; stable keeps it
    return gid[perm], pix


def footprint_rows(
    gid: Tensor, params: Tensor, radius_y: Tensor, n: int, width: int, height: int
) -> tuple[Tensor, Tensor, Tensor]:
    """Pixel rows of G footprints with their exact alpha >= 1/255 x-spans, clipped to the image.

    Args:
        gid:      [G] flat Gaussian indices; params: [B·N, 6] (see `pair_alpha`).
        radius_y: [G] box half-heights in pixels.
    Returns:
        row_gid [R], row_start [R] (flat pixel index of the span's first pixel), row_len [R].
    """
    p = params.index_select(0, gid).double()  # rows are few; float64 keeps the spans exact
    mx, my, a, b, c, o = p.unbind(1)
    y0 = torch.ceil(my - radius_y - 0.5).clamp(0, height).long()
    y1 = torch.floor(my + radius_y - 0.5).clamp(-1, height - 1).long()
    nrows = (y1 - y0 + 1).clamp_min(0)
    owner = torch.repeat_interleave(torch.arange(len(gid), device=gid.device), nrows)
    first_row = torch.cumsum(nrows, 0) - nrows
    y = y0[owner] + torch.arange(len(owner), device=gid.device) - first_row[owner]
    mx, a, b, c, o = mx[owner], a[owner], b[owner], c[owner], o[owner]
    dy = y.double() + 0.5 - my[owner]
    # ½(a dx² + c dy²) + b dx dy <= L  <=>  a dx² + 2 b dy dx + (c dy² − 2L) <= 0
    level = torch.log((o / ALPHA_MIN).clamp_min(1.0))
    disc = (b * dy) ** 2 - a * (c * dy * dy - 2.0 * level)
    half = torch.sqrt(disc.clamp_min(0.0))
    x_lo = torch.ceil(mx + (-b * dy - half) / a - 0.5 - _SPAN_SLACK).clamp(0, width)
    x_hi = torch.floor(mx + (-b * dy + half) / a - 0.5 + _SPAN_SLACK).clamp(-1, width - 1)
    length = torch.where(disc >= 0, (x_hi - x_lo + 1).clamp_min(0), torch.zeros_like(x_hi)).long()
    row_gid = gid[owner]
    image = torch.div(row_gid, n, rounding_mode="floor")
    keep = length > 0
    start = (image * height + y) * width + x_lo.long()
    return row_gid[keep], start[keep], length[keep]


def _drop_done_rows(rows: tuple[Tensor, Tensor, Tensor], done: Tensor, width: int):
    """Drop rows whose every pixel has terminated (per-image-row prefix counts of ``done``)."""
    row_gid, start, length = rows
    done_rows = done.view(-1, width).to(torch.int32)
    prefix = torch.nn.functional.pad(done_rows.cumsum(1, dtype=torch.int32), (1, 0)).reshape(-1)
    line = torch.div(start, width, rounding_mode="floor")
    first = line * (width + 1) + start % width
    done_count = prefix[first + length] - prefix[first]
    keep = done_count < length
    return row_gid[keep], start[keep], length[keep]


def _expand_rows(rows: tuple[Tensor, Tensor, Tensor]) -> tuple[Tensor, Tensor]:
    """Rows -> pairs: gid [P], pix [P] (row by row, left to right)."""
    row_gid, start, length = rows
    total = int(length.sum())
    offset = torch.cumsum(length, 0) - length
    pix = torch.repeat_interleave(start - offset, length, output_size=total)
    pix += torch.arange(total, device=pix.device)
    return torch.repeat_interleave(row_gid, length, output_size=total), pix


def _advance_transmittance(
    gid: Tensor, pix: Tensor, alpha: Tensor, log_t: Tensor, done: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    """Composite one depth-ordered chunk's transmittance into ``log_t``/``done`` (in place).

    Returns the chunk's pairs sorted by (pixel, depth) and which of them are alive: those
    before their pixel's termination, gsplat's ``next_T <= 1e-4 -> done (exclusive)``.
    """
    pix, perm = torch.sort(pix, stable=True)
    gid, alpha = gid[perm], alpha[perm]
    log_one_minus = torch.log1p(-alpha.double())
    log_before = segmented_exclusive_cumsum(log_one_minus, segment_starts(pix)) + log_t[pix]
    alive = (log_before + log_one_minus) > math.log(T_MIN)  # a prefix of every pixel's run
    log_t.index_add_(0, pix[alive], log_one_minus[alive])
    done[pix[~alive]] = True
    return gid, pix, alive


def _chunks(cost: Tensor, limit: int) -> list[slice]:
    """Consecutive slices of ``cost`` [G] of total about ``limit`` (each at least one item)."""
    if cost.numel() == 0:
        return []
    start_cost = torch.cumsum(cost, 0) - cost
    label = torch.div(start_cost, limit, rounding_mode="floor")  # items starting in one window
    counts = torch.unique_consecutive(label, return_counts=True)[1].tolist()
    bounds = [0]
    for c in counts:
        bounds.append(bounds[-1] + c)
    return [slice(s, e) for s, e in zip(bounds[:-1], bounds[1:])]
