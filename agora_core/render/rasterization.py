"""`rasterize()`: the one entry point; checks inputs, broadcasts, picks a backend."""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from agora_core.errors import AgoraError
from agora_core.gaussians import GaussianSet
from agora_core.render.cameras import Camera
from agora_core.render.rasterizer_gsplat import rasterize_gsplat
from agora_core.render.rasterizer_numba import composite_numba, numba_available, project_numba
from agora_core.render.rasterizer_torch import rasterize_torch, screen_space, view_colors

Backend = Literal["auto", "torch", "numba", "gsplat"]


def rasterize(
    gaussians: GaussianSet,
    cameras: Camera,
    width: int,
    height: int,
    background: Tensor | float | tuple[float, float, float] = 1.0,
    backend: Backend = "auto",
) -> tuple[Tensor, Tensor]:
    """Render Gaussian set b through camera b.

    Args:
        gaussians:  B sets of N Gaussians (or 1 set, drawn by each of B cameras).
        cameras:    B cameras (or 1 camera, used for each of B sets).
        width, height: image size in pixels.
        background: scalar grey, RGB triple, [3] or [B, 3]; default white (GGHEAD's matted FFHQ).
        backend:    "gsplat" (CUDA), "numba" (compiled CPU kernels, tiled, on torch's thread
                    count: rasterizer_numba.py), "torch" (pure PyTorch, any
                    device) or "auto" (gsplat for CUDA tensors, numba for CPU tensors when numba
                    imports, else torch). All four give the same images and gradients.
    Returns:
        rgb [B, 3, H, W] and alpha [B, 1, H, W]; rgb already composited over the background.
    """
    gaussians, cameras = _broadcast(gaussians, cameras)
    b, device, dtype = gaussians.batch_size, gaussians.device, gaussians.means.dtype
    cameras = cameras.to(device)
    bg = _background(background, b, dtype, device)
    if backend == "auto":
        backend = "gsplat" if device.type == "cuda" else "numba" if numba_available() else "torch"
    if backend == "gsplat":
        if not torch.cuda.is_available() or device.type != "cuda":
            raise AgoraError(
                "rasterize(backend='gsplat') needs CUDA tensors and a CUDA device; "
                "use backend='torch' (or 'auto') on CPU"
            )
        return rasterize_gsplat(gaussians, cameras, width, height, bg)
    if backend == "torch":
        return rasterize_torch(gaussians, cameras, width, height, bg)
    if backend == "numba":
        if device.type != "cpu" or not numba_available():
            raise AgoraError("rasterize(backend='numba') needs CPU tensors and the numba package; use 'auto'")
        proj, colors = screen_space_numba(gaussians, cameras, width, height)
        return composite_numba(proj, gaussians.opacities, colors, width, height, bg)
    raise AgoraError(f"unknown render backend {backend!r}; choose auto, torch, numba or gsplat")


def _broadcast(gaussians: GaussianSet, cameras: Camera) -> tuple[GaussianSet, Camera]:
    bg, bc = gaussians.batch_size, cameras.batch_size
    if bg == bc:
        return gaussians, cameras
    if bg == 1:
        return gaussians.map(lambda t: t.expand(bc, *t.shape[1:])), cameras
    if bc == 1:
        return gaussians, cameras.expand(bg)
    raise AgoraError(f"{bg} Gaussian sets but {bc} cameras; pass one camera per set (or 1 of either)")


def _background(background, b: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    """[B, 3] background from a scalar, a triple, [3] or [B, 3]."""
    bg = torch.as_tensor(background, dtype=dtype, device=device)
    if bg.ndim == 0:
        bg = bg.expand(3)
    if bg.ndim == 1:
        bg = bg.expand(b, 3)
    assert bg.shape == (b, 3), f"background must be a scalar, [3] or [B, 3], got {tuple(bg.shape)}"
    return bg


def screen_space_numba(gaussians: GaussianSet, cameras: Camera, width: int, height: int):
    """`screen_space`, with the compiled projection when no gradient is needed (inference)."""
    needs_grad = torch.is_grad_enabled() and any(
        t.requires_grad for t in (gaussians.means, gaussians.quats, gaussians.log_scales, gaussians.opacities))
    if needs_grad:
        return screen_space(gaussians, cameras, width, height)
    dtype = gaussians.means.dtype
    proj = project_numba(gaussians.means, gaussians.quats, gaussians.log_scales, gaussians.opacities,
                         cameras.world2cam().to(dtype), cameras.pixel_intrinsics(width, height).to(dtype),
                         width, height)
    return proj, view_colors(gaussians, cameras)
