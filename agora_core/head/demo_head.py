"""The procedural demo head: a FLAME-format head model built by code, so a fresh clone runs the
whole pipeline without the (non-redistributable) FLAME 2020 model.

`build_demo_head()` returns `FlameAssets` in FLAME's exact schema (5 joints, FLAME kinematic tree,
shape/expression/pose blendshapes, SMIRK-style eyelids, a UV layout); `write_demo_head()` writes
it as a FLAME pickle + UV obj and `demo_head_assets()` loads it back through the same loader that
reads a user's real FLAME files. Parts: `demo_head_geometry` (template mesh, UVs),
`demo_head_rig` (joints, skinning, pose correctives), `demo_head_blendshapes` (shape,
expression, eyelids).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from agora_core.head import demo_head_geometry as geo
from agora_core.head.assets import FlameAssets
from agora_core.head.demo_head_blendshapes import (
    DEMO_EXPRESSION_NAMES,
    NUM_EXPRESSION,
    NUM_SHAPE,
    expression_basis,
    eyelid_basis,
    shape_basis,
)
from agora_core.head.demo_head_geometry import HeadSurface, smoothstep
from agora_core.head.demo_head_rig import (
    KINTREE_TABLE,
    joint_regressor,
    pose_correctives,
    skinning_weights,
    vertex_normals,
)

DEMO_MODEL_ID = "demo-head-v1"
DEMO_PKL_NAME = "demo_head.pkl"
DEMO_OBJ_NAME = "demo_head_uv.obj"
BACK_HEAD_AZIMUTH = np.radians(105.0)  # faces further round than this (from the front) are "back"

__all__ = [
    "DEMO_EXPRESSION_NAMES",
    "DEMO_MODEL_ID",
    "NUM_EXPRESSION",
    "NUM_SHAPE",
    "build_demo_head",
    "demo_head_assets",
    "write_demo_head",
]


def _hairline(azimuth: np.ndarray) -> np.ndarray:
    """Height [N] of the hairline: forehead top in front, above the ears, the nape at the back."""
    a = np.abs(azimuth)
    return (0.074 - 0.012 * smoothstep(np.radians(20), np.radians(55), a)
            - 0.027 * smoothstep(np.radians(55), np.radians(85), a)
            - 0.1 * smoothstep(np.radians(100), np.radians(150), a))


def demo_regions(surface: HeadSurface, weights: np.ndarray) -> dict[str, np.ndarray]:
    """Named int64 index sets (`FlameAssets.extras`) for downstream code (appearance, sampling)."""
    v, faces = surface.vertices, surface.faces
    x, y, z = v[:, 0], v[:, 1], v[:, 2]
    skin = np.ones(len(v), bool)
    eyes = np.concatenate([surface.left_eyeball, surface.right_eyeball])
    skin[eyes] = False
    az = np.arctan2(x, z - geo.HEAD_CENTRE[2])
    centroid = v[faces].mean(axis=1)
    face_az = np.arctan2(centroid[:, 0], centroid[:, 2] - geo.HEAD_CENTRE[2])
    face_skin = skin[faces].all(axis=1)
    ears = np.zeros(len(v), bool)
    for side in (1.0, -1.0):
        c = geo.EAR_CENTRE * [side, 1.0, 1.0]
        ears |= skin & (np.hypot((y - c[1]) / 0.026, (z - c[2]) / 0.017) < 1.0) & (side * x > 0.06)
    hair = skin & (y > _hairline(az)) & ~ears
    neck = skin & ((surface.row >= geo.NUM_HEAD_ROWS) | (weights[:, 0] > 0.05)
                   | ((y < -0.09) & (np.abs(az) > np.radians(60))))
    front = skin & (np.abs(az) < np.radians(68))
    face = front & (y < _hairline(az)) & (y > -0.108) & ~neck
    brow = np.zeros(len(v), bool)
    for side in (1.0, -1.0):
        ex = side * geo.EYE_CENTRE[0]
        arch = geo.EYE_CENTRE[1] + 0.0155 + 0.003 * np.clip(1 - ((x - ex) / 0.024) ** 2, 0, 1)
        reach = np.clip(1 - ((x - ex) / 0.023) ** 2, 0, 1)  # thinner towards the ends
        brow |= front & (np.abs(y - arch - 0.001) < 0.0015 + 0.0022 * reach) & (reach > 0) & (z > 0.06)
    lat = geo.mouth_lateral(x)
    lip_top = geo.MOUTH_Y + 0.0075 * lat**0.5 + 0.0012 + 0.0004
    lip_bottom = geo.MOUTH_Y - 0.0105 * lat**0.5 - 0.0006
    lips = front & (z > 0.06) & (np.abs(x) <= 1.02 * geo.MOUTH_HALF_WIDTH) & (y < lip_top) & (y > lip_bottom)
    nose = front & (z > 0.085) & (np.abs(x) < 0.02) & (y < geo.NASION_Y) & (y > geo.SUBNASALE_Y - 0.003)
    nose &= (np.abs(x) < 0.006 + 0.012 * smoothstep(geo.NASION_Y, geo.SUBNASALE_Y, y))
    idx = lambda m: np.nonzero(m)[0].astype(np.int64)  # noqa: E731
    return {
        "back_head_faces": idx(face_skin & (np.abs(face_az) > BACK_HEAD_AZIMUTH)),
        "face_vertices": idx(face),
        "hair_vertices": idx(hair),
        "brow_vertices": idx(brow),
        "lip_vertices": idx(lips),
        "upper_lip": surface.upper_lip.astype(np.int64),
        "lower_lip": surface.lower_lip.astype(np.int64),
        "eye_vertices": eyes.astype(np.int64),
        "left_eyeball": surface.left_eyeball.astype(np.int64),
        "right_eyeball": surface.right_eyeball.astype(np.int64),
        "eye_opening": idx(surface.eye_opening),
        "neck_vertices": idx(neck),
        "nose_vertices": idx(nose),
        "ear_vertices": idx(ears),
    }


def build_demo_head() -> FlameAssets:
    """Build the demo head (deterministic, pure numpy, ~1-2 s). See the module docstring."""
    surface = geo.build_head_surface()
    normals = vertex_normals(surface.vertices, surface.faces)
    weights = skinning_weights(surface)
    return FlameAssets(
        v_template=surface.vertices,
        faces=surface.faces,
        shapedirs=shape_basis(surface),
        exprdirs=expression_basis(surface, normals),
        posedirs=pose_correctives(surface, weights),
        J_regressor=joint_regressor(surface),
        weights=weights,
        kintree_table=KINTREE_TABLE.copy(),
        uv_coords=surface.uv_coords,
        uv_faces=surface.uv_faces,
        eyelid_dirs=eyelid_basis(surface),
        model_id=DEMO_MODEL_ID,
        extras=demo_regions(surface, weights),
    )


def write_demo_head(out_dir: str | Path, assets: FlameAssets | None = None) -> tuple[Path, Path]:
    """Write the demo head as FLAME-format files: `demo_head.pkl` (FLAME 2020 pickle schema)
    and `demo_head_uv.obj` (UV template). Returns (pkl_path, obj_path)."""
    from agora_core.head.flame_io import save_flame_pickle
    from agora_core.head.obj_io import write_uv_obj

    assets = build_demo_head() if assets is None else assets
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    pkl_path, obj_path = out_dir / DEMO_PKL_NAME, out_dir / DEMO_OBJ_NAME
    save_flame_pickle(assets, pkl_path)
    write_uv_obj(obj_path, assets.v_template, assets.faces, assets.uv_coords, assets.uv_faces)
    return pkl_path, obj_path


def demo_head_assets(cache_dir: str | Path | None = None) -> FlameAssets:
    """The demo head loaded back through the FLAME loader (the code path real FLAME takes).

    With `cache_dir`, the files are written there once (when absent, or when they hold another
    `model_id` than `DEMO_MODEL_ID` -- bump it whenever the construction changes) and reused;
    without it they go to a temporary folder that is removed afterwards.
    """
    from agora_core.head.flame_io import flame_assets_from_pickle

    if cache_dir is None:
        with tempfile.TemporaryDirectory(prefix="agora-demo-head-") as tmp:
            pkl_path, obj_path = write_demo_head(tmp)
            return flame_assets_from_pickle(pkl_path, obj_path)
    cache_dir = Path(cache_dir)
    pkl_path, obj_path = cache_dir / DEMO_PKL_NAME, cache_dir / DEMO_OBJ_NAME
    if pkl_path.is_file() and obj_path.is_file():
        assets = flame_assets_from_pickle(pkl_path, obj_path)
        if assets.model_id == DEMO_MODEL_ID:
            return assets
    write_demo_head(cache_dir)  # absent, or written by another version of the demo head
    return flame_assets_from_pickle(pkl_path, obj_path)
