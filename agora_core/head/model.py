"""`HeadModel`: a FLAME-format head as a torch module, M(β, ψ, θ) of the paper's eq. (2).

T_P = T̄ + B_S(β) + B_E(ψ) + B_P(θ), then linear blend skinning W(T_P, J(β), θ, 𝒲), evaluated by
`smplx.lbs.lbs` (the reference FLAME implementation). Works for any `FlameAssets` — real FLAME,
the demo head, either with the mouth interior added.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from smplx.lbs import lbs

from agora_core.errors import AgoraError
from agora_core.head.assets import FlameAssets
from agora_core.head.flame_params import FlameParams, fit_coefficients
from agora_core.head.regions import lip_sets


class HeadModel(torch.nn.Module):
    """FLAME-format head model (eq. 2) with the UV layout and lip index sets as buffers.

    Buffers (float32 unless noted): `v_template [V,3]`, `blendshapes [V,3,S+E(+2)]` (shape,
    expression, then eyelid directions if present), `posedirs [36, V*3]` (smplx layout),
    `J_regressor [5,V]`, `lbs_weights [V,5]`, `parents [5]` long, `faces [F,3]` long,
    `uv_coords [T,2]`, `uv_faces [F,3]` long, `upper_lip`, `lower_lip` (long vertex indices; empty
    when the model has no recognisable mouth, see `regions.lip_sets`).
    """

    def __init__(self, assets: FlameAssets):
        super().__init__()
        self.model_id = assets.model_id
        self.extras = dict(assets.extras)  # named vertex/face index sets (numpy), e.g. lip, hair, teeth
        self.num_shape = assets.num_shape
        self.num_expr = assets.num_expr
        self.has_eyelids = assets.eyelid_dirs is not None
        self.eyelids_after_skinning = self.has_eyelids and assets.eyelids_after_skinning
        num_v = assets.num_vertices
        f32 = lambda a: torch.as_tensor(np.asarray(a, dtype=np.float32))  # noqa: E731
        i64 = lambda a: torch.as_tensor(np.asarray(a, dtype=np.int64))  # noqa: E731
        dirs = [assets.shapedirs, assets.exprdirs]
        if self.has_eyelids and not self.eyelids_after_skinning:
            dirs.append(assets.eyelid_dirs)  # eyelids: linear, before skinning, so they follow pose
        if self.eyelids_after_skinning:  # the authors' FLAME: offsets added to the posed vertices
            self.register_buffer("eyelid_offsets", f32(assets.eyelid_dirs))
        self.register_buffer("v_template", f32(assets.v_template))
        self.register_buffer("blendshapes", f32(np.concatenate(dirs, axis=2)))
        self.register_buffer("posedirs", f32(np.reshape(assets.posedirs, (num_v * 3, 36)).T.copy()))
        self.register_buffer("J_regressor", f32(assets.J_regressor))
        self.register_buffer("lbs_weights", f32(assets.weights))
        parents = np.asarray(assets.kintree_table[0], dtype=np.int64).copy()
        parents[0] = -1
        # A plain attribute, not a buffer, so it stays on the CPU when the module moves to a GPU:
        # smplx's lbs walks the kinematic chain with parents[i] as a Python list index, which on a
        # CUDA tensor is a device-to-host sync per joint on every head evaluation.
        self.parents = i64(parents)
        self.register_buffer("faces", i64(assets.faces))
        self.register_buffer("uv_coords", f32(assets.uv_coords))
        self.register_buffer("uv_faces", i64(assets.uv_faces))
        try:
            upper, lower = lip_sets(assets)
        except AgoraError:  # e.g. a model without a mouth opening; the lips are then unknown
            upper, lower = np.zeros(0, np.int64), np.zeros(0, np.int64)
        self.register_buffer("upper_lip", i64(upper))
        self.register_buffer("lower_lip", i64(lower))
        self.has_uv_tables = assets.uv_tables is not None
        if self.has_uv_tables:  # tables the model file carries (see `assets.UVTables`)
            t = assets.uv_tables
            self.register_buffer("uv_grid", f32(t.grid))
            self.register_buffer("uv_raster_vertices", i64(t.raster_vertices))
            self.register_buffer("uv_raster_bary", f32(t.raster_bary))
            self.register_buffer("uv_residual_mask", f32(t.residual_mask))

    @classmethod
    def from_files(cls, pkl_path: str | Path, uv_obj_path: str | Path, num_shape: int | None = None,
                   eyelids_path: str | Path | None = None) -> "HeadModel":
        """Load a FLAME-format pickle + UV template obj (see `flame_io.flame_assets_from_pickle`)."""
        from agora_core.head.flame_io import flame_assets_from_pickle

        return cls(flame_assets_from_pickle(pkl_path, uv_obj_path, num_shape, eyelids_path))

    @property
    def num_vertices(self) -> int:
        return self.v_template.shape[0]

    def zero_params(self, batch: int) -> FlameParams:
        """The neutral head of the mean shape (this model's widths), B times, on this model's device."""
        return FlameParams.zeros(batch, self.num_shape, self.num_expr, self.v_template.device, self.v_template.dtype)

    def forward_with_joints(self, flame: FlameParams, global_pose: torch.Tensor | None = None
                            ) -> tuple[torch.Tensor, torch.Tensor]:
        """M(β, ψ, θ) (eq. 2) and the posed joints.

        Args:
            flame: B heads; shape and expression are zero-padded or truncated to this model's bases,
                eyelids are ignored when the model has no eyelid blendshapes.
            global_pose: [B,3] axis-angle or None (zero); full pose order is FLAME's (global, neck,
                jaw, left eye, right eye).
        Returns:
            vertices [B,V,3], joints [B,5,3].
        """
        b = flame.batch_size
        if global_pose is None:
            global_pose = flame.jaw.new_zeros(b, 3)
        assert global_pose.shape == (b, 3), global_pose.shape
        dtype = self.v_template.dtype
        coeffs = [fit_coefficients(flame.shape.to(dtype), self.num_shape),
                  fit_coefficients(flame.expression.to(dtype), self.num_expr)]
        if self.has_eyelids and not self.eyelids_after_skinning:
            coeffs.append(flame.eyelids.to(dtype))
        full_pose = torch.cat([global_pose, flame.neck, flame.jaw, flame.eyes], dim=1).to(dtype)
        vertices, joints = lbs(torch.cat(coeffs, dim=1), full_pose, self.v_template, self.blendshapes,
                               self.posedirs, self.J_regressor, self.parents, self.lbs_weights,
                               pose2rot=True)
        if self.eyelids_after_skinning:
            e = flame.eyelids.to(dtype)
            vertices = vertices + e[:, 0, None, None] * self.eyelid_offsets[:, :, 0] \
                + e[:, 1, None, None] * self.eyelid_offsets[:, :, 1]
        return vertices, joints

    def forward(self, flame: FlameParams, global_pose: torch.Tensor | None = None) -> torch.Tensor:
        """Posed vertices [B,V,3] = M(β, ψ, θ) (eq. 2); arguments as `forward_with_joints`."""
        return self.forward_with_joints(flame, global_pose)[0]

    def neutral(self, batch: int = 1) -> torch.Tensor:
        """The template in zero pose, expression and shape, [B,V,3]."""
        return self.forward(self.zero_params(batch))
