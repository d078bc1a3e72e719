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
from agora_core.head.regions import lip_sets


def _fit_coeffs(x: torch.Tensor, n: int) -> torch.Tensor:
    """Zero-pad or truncate the last dim of x [B, n'] to n (missing trailing coefficients = 0)."""
    if x.shape[1] >= n:
        return x[:, :n]
    return torch.cat([x, x.new_zeros(x.shape[0], n - x.shape[1])], dim=1)


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

    def zeros_like_params(self, batch: int) -> dict[str, torch.Tensor]:
        """Zero (neutral) parameters for `forward(**params)`, on this model's device."""
        z = lambda n: self.v_template.new_zeros(batch, n)  # noqa: E731
        return {"shape": z(self.num_shape), "expr": z(self.num_expr), "jaw": z(3), "neck": z(3),
                "eyes": z(6), "eyelids": z(2), "global_pose": z(3)}

    def forward_with_joints(self, shape: torch.Tensor, expr: torch.Tensor, jaw: torch.Tensor,
                            neck: torch.Tensor, eyes: torch.Tensor,
                            eyelids: torch.Tensor | None = None,
                            global_pose: torch.Tensor | None = None
                            ) -> tuple[torch.Tensor, torch.Tensor]:
        """M(β, ψ, θ) (eq. 2) and the posed joints.

        Args:
            shape [B,S'], expr [B,E']: coefficients; missing trailing ones are zero, extra ones
                beyond the model's basis are ignored.
            jaw [B,3], neck [B,3], eyes [B,6] (left then right), global_pose [B,3] or None (zero):
                axis-angle; full pose order is FLAME's (global, neck, jaw, left eye, right eye).
            eyelids [B,2] or None: SMIRK eyelid coefficients (left, right); ignored when the
                model has no eyelid blendshapes.
        Returns:
            vertices [B,V,3], joints [B,5,3].
        """
        b = shape.shape[0]
        assert shape.ndim == 2 and expr.ndim == 2 and expr.shape[0] == b, (shape.shape, expr.shape)
        assert jaw.shape == (b, 3) and neck.shape == (b, 3) and eyes.shape == (b, 6), (
            jaw.shape, neck.shape, eyes.shape)
        if global_pose is None:
            global_pose = jaw.new_zeros(b, 3)
        assert global_pose.shape == (b, 3), global_pose.shape
        dtype = self.v_template.dtype
        coeffs = [_fit_coeffs(shape.to(dtype), self.num_shape), _fit_coeffs(expr.to(dtype), self.num_expr)]
        if self.has_eyelids:
            if eyelids is None:
                eyelids = shape.new_zeros(b, 2)
            assert eyelids.shape == (b, 2), eyelids.shape
            if not self.eyelids_after_skinning:
                coeffs.append(eyelids.to(dtype))
        full_pose = torch.cat([global_pose, neck, jaw, eyes], dim=1).to(dtype)
        vertices, joints = lbs(torch.cat(coeffs, dim=1), full_pose, self.v_template, self.blendshapes,
                               self.posedirs, self.J_regressor, self.parents, self.lbs_weights,
                               pose2rot=True)
        if self.eyelids_after_skinning:
            e = eyelids.to(dtype)
            vertices = vertices + e[:, 0, None, None] * self.eyelid_offsets[:, :, 0] \
                + e[:, 1, None, None] * self.eyelid_offsets[:, :, 1]
        return vertices, joints

    def forward(self, shape: torch.Tensor, expr: torch.Tensor, jaw: torch.Tensor, neck: torch.Tensor,
                eyes: torch.Tensor, eyelids: torch.Tensor | None = None,
                global_pose: torch.Tensor | None = None) -> torch.Tensor:
        """Posed vertices [B,V,3] = M(β, ψ, θ) (eq. 2); arguments as `forward_with_joints`."""
        return self.forward_with_joints(shape, expr, jaw, neck, eyes, eyelids, global_pose)[0]

    def neutral(self, batch: int = 1) -> torch.Tensor:
        """The template in zero pose, expression and shape, [B,V,3]."""
        return self.forward(**self.zeros_like_params(batch))
