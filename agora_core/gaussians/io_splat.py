"""Gaussians as antimatter15 ``.splat`` (the WebGL viewer format the AGORA web demo also uses).

No header; 32 bytes per Gaussian, little-endian:
- position  float32 × 3
- scale     float32 × 3   physical std deviations, exp(log_scales)
- RGBA      uint8 × 4     RGB = clip(colour, 0, 1) · 255, A = opacity · 255
- rotation  uint8 × 4     unit quaternion (w, x, y, z) as clip(q · 128 + 128, 0, 255)

Colour is view-independent: the SH DC term (0.5 + C0 · f_dc) by default, or degree-1 SH evaluated
toward a reference camera position (as the authors' web export does). We round to the nearest
byte where antimatter15's converter truncates: the bytes mean the same to every viewer (which
decodes b / 255 and (b − 128) / 128), and the quantisation error halves.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from agora_core.errors import file_error
from agora_core.gaussians.files import atomic_write, read_bytes, single_set
from agora_core.gaussians.gaussian_set import GaussianSet, eval_sh, rgb_to_sh0
from agora_core.gaussians.quaternions import normalize_quat

SPLAT_DTYPE = np.dtype([("position", "<f4", (3,)), ("scale", "<f4", (3,)), ("rgba", "u1", (4,)), ("rotation", "u1", (4,))])
assert SPLAT_DTYPE.itemsize == 32


def splat_importance(gaussians: GaussianSet) -> Tensor:
    """antimatter15's draw-order key: scale product × opacity, [B, N] (larger = more important)."""
    return gaussians.log_scales.sum(-1).exp() * gaussians.opacities


def splat_colours(gaussians: GaussianSet, camera_position: Tensor | None = None) -> Tensor:
    """[B, N, 3] view-independent RGB in [0, 1]: DC colour, or SH seen from ``camera_position`` [3].

    With a camera position and degree-1 SH, each Gaussian's colour is evaluated along the direction
    from the camera to its mean (`GaussianSet.colors` convention).
    """
    if camera_position is None or gaussians.sh_degree == 0:
        return eval_sh(gaussians.sh[..., :1, :]).clamp(0.0, 1.0)
    camera_position = torch.as_tensor(camera_position, dtype=gaussians.means.dtype, device=gaussians.device)
    assert camera_position.shape == (3,), camera_position.shape
    view_dirs = torch.nn.functional.normalize(gaussians.means - camera_position, dim=-1)
    return gaussians.colors(view_dirs).clamp(0.0, 1.0)


def encode_splat(
    gaussians: GaussianSet,
    sort_by_importance: bool = False,
    camera_position: Tensor | None = None,
) -> np.ndarray:
    """A batch-1 set -> [N] records of `SPLAT_DTYPE`, in model order unless ``sort_by_importance``.

    Sorting (descending importance, stable) is what antimatter15's converter does; model order keeps
    Gaussian i at record i, which per-Gaussian animation data (blendshape bases) relies on.
    """
    assert gaussians.batch_size == 1, gaussians.batch_size
    g = gaussians.detach().to("cpu")
    n = g.num_gaussians
    records = np.zeros(n, dtype=SPLAT_DTYPE)
    records["position"] = g.means[0].numpy()
    records["scale"] = g.scales()[0].numpy()
    rgba = torch.cat([splat_colours(g, camera_position)[0], g.opacities[0, :, None].clamp(0.0, 1.0)], dim=-1)
    records["rgba"] = torch.round(rgba * 255.0).to(torch.uint8).numpy()
    quats = normalize_quat(g.quats[0])
    records["rotation"] = torch.round(quats * 128.0 + 128.0).clamp(0.0, 255.0).to(torch.uint8).numpy()
    if sort_by_importance:
        order = np.argsort(-splat_importance(g)[0].numpy(), kind="stable")
        records = records[order]
    return records


def decode_splat(records: np.ndarray) -> GaussianSet:
    """[N] records of `SPLAT_DTYPE` -> batch-1, SH-degree-0 float32 `GaussianSet`.

    Colour becomes the DC coefficient of the stored RGB; opacity = A / 255; quaternion =
    normalise((b − 128) / 128). Scales must be positive (checked by `read_splat`).
    """
    assert records.dtype == SPLAT_DTYPE and records.ndim == 1, (records.dtype, records.shape)
    rgba = torch.from_numpy(records["rgba"].astype(np.float32)) / 255.0
    quats = (torch.from_numpy(records["rotation"].astype(np.float32)) - 128.0) / 128.0
    return GaussianSet(
        means=torch.from_numpy(records["position"].astype(np.float32))[None],
        log_scales=torch.from_numpy(records["scale"].astype(np.float32)).log()[None],
        quats=normalize_quat(quats)[None],
        sh=rgb_to_sh0(rgba[:, :3])[None],
        opacities=rgba[:, 3][None],
    )


def write_splat(
    path: str | Path,
    gaussians: GaussianSet,
    batch_index: int | None = None,
    sort_by_importance: bool = False,
    camera_position: Tensor | None = None,
) -> Path:
    """Write one set of Gaussians as antimatter15 ``.splat``, atomically (tmp file + rename).

    Args:
        path:               output file.
        gaussians:          a batch-1 set, or any batch with ``batch_index`` choosing the set.
        batch_index:        which set of a batch to write.
        sort_by_importance: reorder by scale product × opacity, descending (antimatter15's order);
                            off by default so record i is Gaussian i.
        camera_position:    [3] world position to evaluate degree-1 SH colour from; DC if None.
    Returns:
        ``path`` as a `Path`.
    """
    records = encode_splat(single_set(gaussians, batch_index), sort_by_importance, camera_position)
    with atomic_write(path) as stream:
        stream.write(records.tobytes())
    return Path(path)


def read_splat(path: str | Path) -> GaussianSet:
    """Read an antimatter15 ``.splat`` into a batch-1, SH-degree-0 `GaussianSet` (see `decode_splat`).

    Raises:
        AgoraError: missing/empty file, a size that is not a whole number of 32-byte records, or
        non-finite positions / non-positive scales (not a .splat, or a damaged one).
    """
    data = read_bytes(path)
    if len(data) == 0:
        raise file_error(path, "is empty; expected 32 bytes per Gaussian (.splat)")
    if len(data) % SPLAT_DTYPE.itemsize:
        raise file_error(
            path, f"size {len(data)} bytes is not a multiple of 32; truncated, or not an antimatter15 .splat file"
        )
    records = np.frombuffer(data, dtype=SPLAT_DTYPE)
    if not np.isfinite(records["position"]).all():
        raise file_error(path, "has non-finite positions; damaged, or not an antimatter15 .splat file")
    scales = records["scale"]
    if not (np.isfinite(scales).all() and (scales > 0).all()):
        raise file_error(path, "has non-finite or non-positive scales; damaged, or not an antimatter15 .splat file")
    return decode_splat(records)
