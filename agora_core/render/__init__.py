"""Cameras (EG3D 25-float label <-> `Camera`) and Gaussian rasterization.

`rasterize()` uses gsplat on CUDA and a pure-PyTorch sparse-pair rasterizer elsewhere; both follow
gsplat's classic 3DGS semantics. See docs/architecture.md, "Renderer".
"""

from agora_core.render.cameras import (
    EG3D_FOCAL,
    EG3D_RADIUS,
    FLAME_CAMERA_RADIUS,
    Camera,
    orbit_cameras,
    sample_ffhq_like_cameras,
)
from agora_core.render.rasterization import rasterize
from agora_core.render.rasterizer_gsplat import gsplat_status

__all__ = [
    "Camera",
    "EG3D_FOCAL",
    "EG3D_RADIUS",
    "FLAME_CAMERA_RADIUS",
    "gsplat_status",
    "orbit_cameras",
    "rasterize",
    "sample_ffhq_like_cameras",
]
