"""Gaussians as .ply in the INRIA 3D Gaussian Splatting layout (read by most 3DGS viewers/tools).

One ``vertex`` element, binary little-endian, every property float32, in this order:
``x y z nx ny nz f_dc_0..2 f_rest_0..f_rest_{3(K-1)-1} opacity scale_0..2 rot_0..3``, where
- normals are zeros (unused by 3DGS);
- f_dc_c is SH coefficient 0 of colour c;
- f_rest is **channel-major**: f_rest_{c·(K−1) + (k−1)} is coefficient k ≥ 1 of colour c (the
  reference code transposes its [N, K−1, 3] features to [N, 3, K−1] before flattening);
- opacity is the pre-sigmoid logit, scale_* the natural log of the std deviations, rot_* the
  quaternion w, x, y, z (readers normalise it).

`write_ply(..., sh_degree=3)` pads the bands our model lacks with zeros: 62 float32 properties, 248
bytes per vertex, the layout Unity's UnityGaussianSplatting importer expects (README, "Driving and
exporting"). Such a file reads back here without `truncate_sh`, since the dropped bands are zero.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from plyfile import PlyData, PlyElement, PlyListProperty, PlyParseError

from agora_core.errors import file_error
from agora_core.gaussians.activations import opacity_logit
from agora_core.gaussians.files import atomic_write, single_set
from agora_core.gaussians.gaussian_set import GaussianSet
from agora_core.gaussians.quaternions import normalize_quat

_XYZ = ["x", "y", "z"]
_NORMALS = ["nx", "ny", "nz"]
_F_DC = [f"f_dc_{i}" for i in range(3)]
_SCALE = [f"scale_{i}" for i in range(3)]
_ROT = [f"rot_{i}" for i in range(4)]
_REQUIRED = _XYZ + _F_DC + ["opacity"] + _SCALE + _ROT  # normals are optional when reading
_DEGREE_OF_REST_COUNT = {0: 0, 9: 1, 24: 2, 45: 3}  # number of f_rest_* -> SH degree
# Opacities are clamped to [eps, 1 − eps] before the logit so 0 and 1 stay finite (|logit| ≤ 13.8).
OPACITY_EPS = 1e-6


def inria_property_names(sh_degree: int) -> list[str]:
    """The INRIA 3DGS vertex property names, in file order, for SH degree 0 to 3."""
    assert sh_degree in (0, 1, 2, 3), sh_degree
    num_rest = 3 * ((sh_degree + 1) ** 2 - 1)
    return _XYZ + _NORMALS + _F_DC + [f"f_rest_{i}" for i in range(num_rest)] + ["opacity"] + _SCALE + _ROT


def write_ply(path: str | Path, gaussians: GaussianSet, batch_index: int | None = None,
              sh_degree: int | None = None) -> Path:
    """Write one set of Gaussians as an INRIA-layout binary .ply, atomically (tmp file + rename).

    Args:
        path:        output file.
        gaussians:   a batch-1 set, or any batch with ``batch_index`` choosing the set to write.
        batch_index: which set of a batch to write.
        sh_degree:   SH degree of the file (0–3, at least the set's); bands the set lacks are zeros.
                     Default: the set's own degree.
    Returns:
        ``path`` as a `Path`.
    """
    g = single_set(gaussians, batch_index)
    degree = g.sh_degree if sh_degree is None else sh_degree
    if degree not in (0, 1, 2, 3) or degree < g.sh_degree:
        raise ValueError(f"sh_degree {degree}: must be 0–3 and at least the set's degree {g.sh_degree}")
    n = g.num_gaussians
    sh = pad_sh(g.sh[0].double(), degree)  # [N, (degree+1)², 3]
    columns = [
        g.means[0],
        torch.zeros(n, 3),
        sh[:, 0, :],
        sh[:, 1:, :].transpose(1, 2).reshape(n, -1),  # channel-major, see module docstring
        opacity_logit(g.opacities[0].double(), eps=OPACITY_EPS)[:, None],
        g.log_scales[0],
        g.quats[0],
    ]
    table = torch.cat([c.double() for c in columns], dim=1).numpy().astype("<f4")
    names = inria_property_names(degree)
    assert table.shape == (n, len(names)), (table.shape, len(names))
    vertex = np.ascontiguousarray(table).view(np.dtype([(name, "<f4") for name in names])).reshape(n)
    ply = PlyData([PlyElement.describe(vertex, "vertex")], text=False, byte_order="<")
    with atomic_write(path) as stream:
        ply.write(stream)
    return Path(path)


def pad_sh(sh: torch.Tensor, degree: int) -> torch.Tensor:
    """SH coefficients [N, K, 3] zero-padded to [N, (degree + 1)², 3] (higher bands off)."""
    k = (degree + 1) ** 2
    assert sh.ndim == 3 and sh.shape[2] == 3 and sh.shape[1] <= k, (sh.shape, degree)
    return torch.cat([sh, sh.new_zeros(sh.shape[0], k - sh.shape[1], 3)], dim=1)


def read_ply(path: str | Path, truncate_sh: bool = False) -> GaussianSet:
    """Read an INRIA-layout 3DGS .ply (any endianness, text or binary, float or double properties).

    Args:
        path:        the .ply file.
        truncate_sh: keep only SH degrees 0–1 of a degree-2/3 file (GaussianSet holds degree ≤ 1);
                     without it such a file is an error rather than a silent loss of detail,
                     unless its degree-2/3 coefficients are all zero (`write_ply(sh_degree=3)`).
    Returns:
        A batch-1 float32 `GaussianSet`; quaternions normalised, opacity = sigmoid(logit).
    Raises:
        AgoraError: the file is missing, not a PLY, truncated, lacks a Gaussian property, or holds
        non-finite values.
    """
    vertex = _vertex_element(path, _parse_ply(path))
    names = [prop.name for prop in vertex.properties]
    missing = [name for name in _REQUIRED if name not in names]
    if missing:
        raise file_error(
            path,
            f"missing Gaussian properties {', '.join(missing)}; "
            "expected an INRIA 3DGS .ply (x y z f_dc_* f_rest_* opacity scale_* rot_*)",
        )
    num_rest, num_keep = _f_rest_layout(path, names)
    rest = [f"f_rest_{i}" for i in range(num_rest)]
    table = _columns(path, vertex, _XYZ + _F_DC + rest + ["opacity"] + _SCALE + _ROT)  # float64 [N, P]
    n, r = table.shape[0], num_rest
    means, f_dc, f_rest = table[:, 0:3], table[:, 3:6], table[:, 6 : 6 + r]
    logit, log_scales, quats = table[:, 6 + r], table[:, 7 + r : 10 + r], table[:, 10 + r : 14 + r]
    f_rest = f_rest.reshape(n, 3, r // 3)  # channel-major: [N, colour, coefficient]
    if not truncate_sh and bool(f_rest[:, :, num_keep:].ne(0).any()):
        degree = _DEGREE_OF_REST_COUNT[num_rest]
        raise file_error(path, f"stores SH degree {degree}; agora keeps degree <= 1: read it with truncate_sh=True")
    f_rest = f_rest[:, :, :num_keep].transpose(1, 2)  # -> [N, k, 3]
    sh = torch.cat([f_dc[:, None, :], f_rest], dim=1)  # [N, K, 3]
    return GaussianSet(
        means=means[None].float(),
        log_scales=log_scales[None].float(),
        quats=normalize_quat(quats)[None].float(),
        sh=sh[None].float(),
        opacities=torch.sigmoid(logit)[None].float(),
    )


def _parse_ply(path: str | Path) -> PlyData:
    """`PlyData.read` with parse failures turned into one-line `AgoraError`s.

    Read from a real file so plyfile can memory-map binary data (one ``frombuffer``; its streaming
    path decodes value by value, ~50× slower: 4.5 s for 230 k Gaussians); callers copy the columns.
    """
    if not Path(path).is_file():
        raise file_error(path, "no such file; check the path")
    try:
        with open(path, "rb") as stream:
            return PlyData.read(stream)
    except OSError as err:
        raise file_error(path, f"cannot be read ({err.strerror or err})") from err
    except (PlyParseError, ValueError, TypeError, IndexError, KeyError, EOFError, UnicodeError) as err:
        reason = "header is not ASCII text" if isinstance(err, UnicodeError) else " ".join(str(err).split())
        reason = reason or type(err).__name__
        raise file_error(path, f"not a readable PLY file, or truncated ({reason})") from err


def _vertex_element(path: str | Path, ply: PlyData) -> PlyElement:
    if "vertex" not in ply:
        found = ", ".join(el.name for el in ply.elements) or "none"
        raise file_error(path, f"has no 'vertex' element (found: {found}); expected an INRIA 3DGS .ply")
    return ply["vertex"]


def _f_rest_layout(path: str | Path, names: list[str]) -> tuple[int, int]:
    """(number of f_rest_* properties, how many coefficients per colour channel to keep: 0 or 3)."""
    count = len([name for name in names if name.startswith("f_rest_")])
    if count not in _DEGREE_OF_REST_COUNT or any(f"f_rest_{i}" not in names for i in range(count)):
        raise file_error(path, f"has {count} f_rest_* properties, not 0, 9, 24 or 45 (SH degree 0 to 3)")
    return count, (3 if _DEGREE_OF_REST_COUNT[count] >= 1 else 0)


def _columns(path: str | Path, vertex: PlyElement, names: list[str]) -> torch.Tensor:
    """[N, len(names)] float64 table of scalar properties; `AgoraError` on lists or non-finite values."""
    for prop in vertex.properties:
        if prop.name in names and isinstance(prop, PlyListProperty):
            raise file_error(path, f"property '{prop.name}' is a list; expected one number per Gaussian")
    table = np.stack([np.asarray(vertex[name], dtype=np.float64) for name in names], axis=-1).reshape(-1, len(names))
    finite = np.isfinite(table).all(axis=0)
    if not finite.all():
        bad = [name for name, ok in zip(names, finite) if not ok]
        raise file_error(path, f"non-finite values in {', '.join(bad)}")
    return torch.from_numpy(table)
