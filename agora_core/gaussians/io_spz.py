"""Gaussians as Niantic ``.spz`` (compressed splats), written by the optional `gsply` package.

The format is not written here: `gsply` (PyPI, `pip install 'agora[spz]'`) quantises and packs it
(version 3: a gzip stream of 24-bit fixed-point positions, 8-bit alphas, colours, log-scales,
smallest-three quaternions and SH). We hand it the values of the INRIA .ply (`io_ply`): log-scales,
opacity logits, quaternions w, x, y, z, SH DC and the higher bands [N, K−1, 3].

Coordinates: SPZ stores RUB axes (x right, y up, z toward the viewer), which is the FLAME frame the
model works in (+x the head's left, i.e. the viewer's right, +y up, +z out of the face), so
positions and SH are written unchanged.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from agora_core.errors import AgoraError
from agora_core.gaussians.activations import opacity_logit
from agora_core.gaussians.files import atomic_write_bytes, check_output_path, single_set
from agora_core.gaussians.gaussian_set import GaussianSet
from agora_core.gaussians.io_ply import OPACITY_EPS
from agora_core.gaussians.quaternions import normalize_quat

SPZ_EXTRA = "pip install 'agora[spz]'"  # what installs the writer


def _gsply():
    try:
        import gsply
    except ImportError:
        raise AgoraError(f".spz export needs the optional package gsply: {SPZ_EXTRA}") from None
    return gsply


def write_spz(path: str | Path, gaussians: GaussianSet, batch_index: int | None = None) -> Path:
    """Write one set of Gaussians as a version-3 .spz, atomically; `AgoraError` without gsply.

    Args:
        path:        output file.
        gaussians:   a batch-1 set, or any batch with ``batch_index`` choosing the set to write.
        batch_index: which set of a batch to write.
    Returns:
        ``path`` as a `Path`.
    """
    gsply = _gsply()
    path = check_output_path(path, "output")
    g = single_set(gaussians, batch_index)
    f32 = lambda t: np.ascontiguousarray(t.double().numpy(), dtype=np.float32)  # noqa: E731
    data = gsply.GSData(
        means=f32(g.means[0]),
        scales=f32(g.log_scales[0]),
        quats=f32(normalize_quat(g.quats[0].double())),
        opacities=f32(opacity_logit(g.opacities[0].double(), eps=OPACITY_EPS)),
        sh0=f32(g.sh[0, :, 0, :]),
        shN=f32(g.sh[0, :, 1:, :]),  # [N, K−1, 3], coefficient-major as gsply takes it
    )
    with tempfile.TemporaryDirectory(prefix=".agora-spz-", dir=path.parent if path.parent.is_dir() else None) as tmp:
        staged = Path(tmp) / "out.spz"  # gsply writes a path; the bytes then go through atomic_write
        gsply.write_spz(staged, data, version=3)
        atomic_write_bytes(path, staged.read_bytes())
    return path
