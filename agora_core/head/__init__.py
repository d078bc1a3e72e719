"""FLAME-format head model: assets, loaders, `HeadModel` (eq. 2), mouth interior (appendix
0.B.1.1), topology-driven regions and UV sampling/baking (eq. 4-6). See docs/architecture.md."""

from agora_core.head.assets import FlameAssets, UVTables
from agora_core.head.flame_io import (
    flame_assets_from_pickle,
    load_eyelid_blendshapes,
    load_flame_pickle,
    save_flame_pickle,
)
from agora_core.head.flame_params import FLAME_KEYS, FlameParams, fit_coefficients
from agora_core.head.model import HeadModel
from agora_core.head.mouth import add_mouth_interior
from agora_core.head.obj_io import read_uv_obj, write_uv_obj
from agora_core.head.regions import back_head_faces, boundary_loops, find_mouth_loop, lip_sets
from agora_core.head.uv import (
    UVRasterMap,
    UVSamples,
    bake_to_uv,
    build_uv_raster,
    find_free_uv_rect,
    interpolate,
    interpolate_reference,
    sample_uv_grid,
    uv_validity_map,
)

__all__ = [
    "FLAME_KEYS", "FlameAssets", "FlameParams", "UVTables", "HeadModel", "fit_coefficients", "UVRasterMap", "UVSamples", "add_mouth_interior",
    "back_head_faces", "bake_to_uv", "boundary_loops", "build_uv_raster", "find_free_uv_rect",
    "find_mouth_loop", "flame_assets_from_pickle", "interpolate", "interpolate_reference",
    "lip_sets", "load_eyelid_blendshapes", "load_flame_pickle", "read_uv_obj", "sample_uv_grid", "save_flame_pickle",
    "uv_validity_map", "write_uv_obj",
]

# the procedural demo head and the presets every stage builds its head with
from agora_core.head.demo_head import build_demo_head, demo_head_assets  # noqa: E402
from agora_core.head.presets import demo_head_model, flame_head_model, head_model  # noqa: E402

__all__ += ["build_demo_head", "demo_head_assets", "demo_head_model", "flame_head_model", "head_model"]
