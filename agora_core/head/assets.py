"""`FlameAssets`: the arrays of a FLAME-format head model, whatever its source.

Both sources — a user's FLAME 2020/2023 `generic_model.pkl` + UV template obj, and the procedural
demo head — become one of these, then a `HeadModel`. Plain numpy; no torch here.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

# FLAME's kinematic tree: 0 global (root), 1 neck, 2 jaw, 3 left eye, 4 right eye.
JOINT_NAMES = ("global", "neck", "jaw", "left_eye", "right_eye")
FLAME_PARENTS = np.array([-1, 0, 1, 1, 1], dtype=np.int64)
RELEASE_HEAD_PREFIX = "agora-release-"  # model ids of the authors' FLAME-with-mouth heads (imported runs)


@dataclass
class UVTables:
    """UV tables a model file carries with it (the authors' released checkpoints), used as given.

    Attributes:
        grid:            [G, 2] float32 `grid_sample` coordinates (x, y in [-1, 1]) of the Gaussians.
        raster_vertices: [R, R, 3] int64 vertex ids (into v_template) of the triangle at each texel.
        raster_bary:     [R, R, 3] float32 barycentric weights (all zero outside the UV islands).
        residual_mask:   [R, R] float32 0/1 facial mask of the deformation planes.
    """

    grid: np.ndarray
    raster_vertices: np.ndarray
    raster_bary: np.ndarray
    residual_mask: np.ndarray

    def __post_init__(self) -> None:
        r = self.raster_vertices.shape[0]
        assert self.grid.ndim == 2 and self.grid.shape[1] == 2, self.grid.shape
        assert self.raster_vertices.shape == (r, r, 3) and self.raster_bary.shape == (r, r, 3), (
            self.raster_vertices.shape, self.raster_bary.shape)
        assert self.residual_mask.shape == (r, r), self.residual_mask.shape


@dataclass
class FlameAssets:
    """Arrays of a FLAME-format model (FLAME 2020 pickle schema, split into named parts).

    Attributes:
        v_template:   [V, 3] float mean template (metres; +y up, +z front).
        faces:        [F, 3] int triangle vertex indices.
        shapedirs:    [V, 3, S] shape blendshapes.
        exprdirs:     [V, 3, E] expression blendshapes.
        posedirs:     [V, 3, 36] pose-corrective blendshapes (4 non-root joints x 9).
        J_regressor:  [5, V] dense joint regressor.
        weights:      [V, 5] skinning weights (rows sum to 1).
        kintree_table:[2, 5] parent/child table (root parent stored as 4294967295 in FLAME files).
        uv_coords:    [T, 2] UV coordinates in [0, 1], v up (OBJ convention).
        uv_faces:     [F, 3] int indices into uv_coords, one row per face.
        eyelid_dirs:  [V, 3, 2] optional eyelid blendshapes (SMIRK-style), or None.
        eyelids_after_skinning: add the eyelid offsets to the posed vertices (the authors' FLAME)
                      instead of before skinning with the other blendshapes (ours).
        uv_tables:    `UVTables` the model file carries (imported models), or None.
        model_id:     short string naming the model (file hash or "demo-head-v1").
        extras:       named vertex/face index sets (e.g. "upper_lip", "lower_lip", "mouth_cavity").
    """

    v_template: np.ndarray
    faces: np.ndarray
    shapedirs: np.ndarray
    exprdirs: np.ndarray
    posedirs: np.ndarray
    J_regressor: np.ndarray
    weights: np.ndarray
    kintree_table: np.ndarray
    uv_coords: np.ndarray
    uv_faces: np.ndarray
    eyelid_dirs: np.ndarray | None = None
    model_id: str = "unknown"
    extras: dict[str, np.ndarray] = field(default_factory=dict)
    eyelids_after_skinning: bool = False
    uv_tables: UVTables | None = None

    def __post_init__(self) -> None:
        v = self.v_template.shape[0]
        f = self.faces.shape[0]
        assert self.v_template.shape == (v, 3), self.v_template.shape
        assert self.faces.ndim == 2 and self.faces.shape[1] == 3, self.faces.shape
        assert self.shapedirs.shape[:2] == (v, 3), self.shapedirs.shape
        assert self.exprdirs.shape[:2] == (v, 3), self.exprdirs.shape
        assert self.posedirs.shape == (v, 3, 36), self.posedirs.shape
        assert self.J_regressor.shape == (5, v), self.J_regressor.shape
        assert self.weights.shape == (v, 5), self.weights.shape
        assert self.kintree_table.shape == (2, 5), self.kintree_table.shape
        assert self.uv_coords.ndim == 2 and self.uv_coords.shape[1] == 2, self.uv_coords.shape
        assert self.uv_faces.shape == (f, 3), (self.uv_faces.shape, f)
        if self.eyelid_dirs is not None:
            assert self.eyelid_dirs.shape == (v, 3, 2), self.eyelid_dirs.shape

    @property
    def num_vertices(self) -> int:
        return self.v_template.shape[0]

    @property
    def num_shape(self) -> int:
        return self.shapedirs.shape[2]

    @property
    def num_expr(self) -> int:
        return self.exprdirs.shape[2]

    def replace(self, **changes) -> "FlameAssets":
        return replace(self, **changes)
