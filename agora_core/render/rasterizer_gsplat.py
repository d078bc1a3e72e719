"""gsplat backend (CUDA only).

gsplat's ops JIT-compile on first use and there is no CPU path; on a machine with the CUDA
toolkit but no GPU the compile fails. So nothing here imports gsplat at module import time,
`gsplat_status()` never touches a CUDA op, and `rasterize_gsplat` refuses non-CUDA tensors.
"""

from __future__ import annotations

import importlib.util

import torch
from torch import Tensor

from agora_core.errors import AgoraError
from agora_core.gaussians import GaussianSet
from agora_core.render.cameras import Camera


def gsplat_status() -> tuple[bool, str]:
    """(usable, reason) for `agora doctor`: gsplat importable and a CUDA device present.

    Imports the Python package only; does not trigger the CUDA extension build.
    """
    if importlib.util.find_spec("gsplat") is None:
        return False, "gsplat is not installed (pip install gsplat); the CPU renderer is used"
    try:
        import gsplat  # noqa: F401  (pure Python; compiles nothing at import)
    except Exception as exc:  # a broken install must not crash the doctor
        return False, f"gsplat failed to import ({type(exc).__name__}: {exc}); the CPU renderer is used"
    version = getattr(gsplat, "__version__", "?")
    if not torch.cuda.is_available():
        return False, f"gsplat {version} installed but no CUDA device; the CPU renderer is used"
    return True, f"gsplat {version} on {torch.cuda.get_device_name(0)}"


def rasterize_gsplat(
    gaussians: GaussianSet, cameras: Camera, width: int, height: int, background: Tensor
) -> tuple[Tensor, Tensor]:
    """Render set b through camera b with `gsplat.rasterization` (classic mode, dense layout).

    Args:
        gaussians:  B sets of N Gaussians on a CUDA device.
        cameras:    B cameras.
        background: [B, 3].
    Returns:
        rgb [B, 3, H, W], alpha [B, 1, H, W].
    """
    b = gaussians.batch_size
    assert cameras.batch_size == b and background.shape == (b, 3), (cameras.batch_size, background.shape)
    if not gaussians.means.is_cuda:
        raise AgoraError("backend='gsplat' needs CUDA tensors; use backend='torch' or 'auto' on CPU")
    from gsplat import rasterization  # deferred: see module docstring

    dtype, device = gaussians.means.dtype, gaussians.device
    viewmats = cameras.world2cam().to(device=device, dtype=dtype)[:, None]  # [B, C=1, 4, 4]
    ks = cameras.pixel_intrinsics(width, height).to(device=device, dtype=dtype)[:, None]
    rgb, alpha, _ = rasterization(
        means=gaussians.means,  # [B, N, 3]; gsplat treats B as a batch dimension
        quats=gaussians.quats,  # wxyz, normalised by gsplat
        scales=gaussians.scales(),
        opacities=gaussians.opacities,
        colors=gaussians.sh,  # [B, N, K, 3] SH; gsplat adds 0.5 and clamps at 0 like eval_sh
        viewmats=viewmats,
        Ks=ks,
        width=width,
        height=height,
        sh_degree=gaussians.sh_degree,
        backgrounds=background.to(device=device, dtype=dtype)[:, None],  # [B, 1, 3]
        render_mode="RGB",
        packed=False,
        rasterize_mode="classic",
    )  # rgb [B, 1, H, W, 3], alpha [B, 1, H, W, 1]
    return rgb[:, 0].permute(0, 3, 1, 2), alpha[:, 0].permute(0, 3, 1, 2)
