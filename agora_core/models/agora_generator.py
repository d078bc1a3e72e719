"""`AgoraGenerator`: the dual-branch AGORA generator (paper sec. 3.2-3.5, Fig. 2 left).

    w = M(z, π) (eq. 3)  ->  F_uv = G(w, β) (identity branch, spatial shape condition eq. 6)
    A_M = GridSample(F_uv, x_uv) (eq. 4)                          } `identity()`: once per avatar
    D_uv = G_d(w, ψ, θ; f) (eq. 7), A_D = GridSample(D_uv, x_uv)   }
    μ = Interpolate(M(β, ψ, θ), x_uv) + μ_δM (+ Δμ) (eq. 5), …     } `animate()`: once per frame

`identity()` returns an `IdentityCache`; `animate()` only runs FLAME, the light deformation branch
and the lifting, never the identity branch — reenactment, PTI, AGORA-M basis extraction and the
benchmarks rely on this split. The head's global rotation is zero: the camera orbits the head.

The state_dict holds only learned tensors (and noise/w_avg buffers): the head model and the
tables derived from it (UV samples, UV raster, facial mask) are rebuilt from the head at
construction, so checkpoints carry none of FLAME's arrays (its licence forbids redistributing them).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
import torch
from torch import Tensor, nn

from agora_core.errors import AgoraError
from agora_core.gaussians import GaussianSet
from agora_core.head import FlameAssets, FlameParams, HeadModel, UVSamples, back_head_faces, build_uv_raster, interpolate
from agora_core.head.flame_params import fit_coefficients
from agora_core.head.uv import UVRasterMap, bake_vertex_raster, locate_uv_points, sample_uv_grid
from agora_core.models.deformation_branch import DeformationBranch, expression_condition
from agora_core.models.facial_mask import facial_sample_mask
from agora_core.models.generator_config import GeneratorConfig
from agora_core.models.lifting import canonical_attributes, lift_gaussians, sample_uv_attributes
from agora_core.models.mapping import MappingNetwork
from agora_core.models.shape_conditioning import shape_displacement
from agora_core.models.stylegan2_layers import NoiseMode, count_parameters
from agora_core.models.stylegan2_synthesis import SynthesisNetwork

SHAPE_MAP_CHANNELS = 3  # ΔV_shape xyz


@dataclass
class IdentityCache:
    """Everything `animate()` needs from the identity branch (one avatar per batch row)."""

    ws: Tensor  # [B, num_ws, w_dim] style vectors (after truncation)
    planes: Tensor  # [B, C, R, R] raw identity UV planes F_uv (C = config.main_channels)
    tap_features: Tensor  # [B, ch(tap), tap, tap] identity features at the tap (not detached)
    tap_skip_image: Tensor  # [B, C, tap, tap] identity skip image at the tap
    shape: Tensor  # [B, S] FLAME shape β
    raw_main: Tensor  # [B, M, C] raw identity attributes A_M at the UV samples (eq. 4)

    @property
    def batch_size(self) -> int:
        return self.ws.shape[0]

    def map(self, fn) -> "IdentityCache":
        return IdentityCache(**{f.name: fn(getattr(self, f.name)) for f in fields(self)})

    def detach(self) -> "IdentityCache":
        return self.map(lambda t: t.detach())

    def expand(self, batch_size: int) -> "IdentityCache":
        """Broadcast a single avatar to `batch_size` rows (one identity, many frames)."""
        assert self.batch_size in (1, batch_size), (self.batch_size, batch_size)
        return self.map(lambda t: t.expand(batch_size, *t.shape[1:]))

    def static_attributes(self, config: GeneratorConfig) -> GaussianSet:
        """`lifting.canonical_attributes` of this identity, computed once and kept with the cache for
        the next frames (inference only: a training step builds a new cache, and gradients must
        flow through each frame's own graph). Recomputed if raw_main or the config changed."""
        assert torch.is_inference_mode_enabled(), "static_attributes is for inference (torch.inference_mode)"
        memo = self.__dict__.get("_static")
        if memo is None or memo[0] is not self.raw_main or memo[1] is not config:
            memo = (self.raw_main, config, canonical_attributes(self.raw_main, config))
            self.__dict__["_static"] = memo
        return memo[2]


@dataclass
class GeneratorOutput:
    gaussians: GaussianSet  # [B, N] final Gaussians 𝒜
    regularizers: dict[str, Tensor]  # scalars: position, scale, deform_position, deform_scale, opacity_beta


def head_assets_view(head: HeadModel) -> FlameAssets:
    """The `FlameAssets` of a `HeadModel`'s buffers and named index sets, for topology helpers."""
    v, s, e = head.num_vertices, head.num_shape, head.num_expr
    npf = lambda t: t.detach().cpu().numpy()  # noqa: E731
    parents = npf(head.parents).copy()
    parents[0] = 4294967295
    return FlameAssets(
        v_template=npf(head.v_template), faces=npf(head.faces), shapedirs=npf(head.blendshapes[:, :, :s]),
        exprdirs=npf(head.blendshapes[:, :, s:s + e]), posedirs=npf(head.posedirs.T).reshape(v, 3, 36),
        J_regressor=npf(head.J_regressor), weights=npf(head.lbs_weights),
        kintree_table=np.stack([parents, np.arange(len(parents))]), uv_coords=npf(head.uv_coords),
        uv_faces=npf(head.uv_faces), model_id=head.model_id, extras=dict(getattr(head, "extras", {})))


class AgoraGenerator(nn.Module):
    """AGORA generator G (identity branch + deformation branch + 3D lifting).

    Args:
        config: architecture.
        head: FLAME-format head model (with the mouth interior for the paper's template).
        back_head: optional bool [F] faces excluded from the UV samples (appendix 0.B.1.1);
            default: the head's `back_head_faces` buffer if it has one, else the
            head's `extras["back_head_faces"]` (via `regions.back_head_faces`), else that
            function's geometric heuristic on its template.
    """

    def __init__(self, config: GeneratorConfig, head: HeadModel, back_head=None):
        super().__init__()
        self.config, self.head = config, head
        self.shape_dim = head.num_shape
        spatial = config.shape_conditioning == "spatial"
        self.synthesis = SynthesisNetwork(
            config.w_dim, config.uv_resolution, config.main_channels, config.channel_base, config.channel_max,
            cond_channels=SHAPE_MAP_CHANNELS if spatial else 0, use_noise=config.use_noise,
            tap_resolution=config.tap_resolution, cond_var_eps=config.cond_var_eps)
        c_dim = config.c_dim + (self.shape_dim if config.shape_conditioning == "mapping" else 0)
        self.mapping_network = MappingNetwork(config.z_dim, c_dim, config.w_dim, num_ws=self.synthesis.num_ws,
                                              num_layers=config.mapping_layers)
        self.position_head = None
        if config.position_zero_init:
            self.position_head = nn.Conv2d(3, 3, kernel_size=1)
            nn.init.zeros_(self.position_head.weight)
            nn.init.zeros_(self.position_head.bias)
        self.deformation_branch = DeformationBranch(config) if config.deformation_branch else None
        self._build_tables(head, back_head)
        self.register_state_dict_post_hook(_drop_head_from_state_dict)
        self.register_load_state_dict_post_hook(_ignore_missing_head_keys)

    def _build_tables(self, head: HeadModel, back_head) -> None:
        """UV samples x_uv, shape-map raster and facial mask, as non-persistent buffers."""
        cfg = self.config
        if cfg.uv_anchor == "position_map":
            self._build_tables_from_head(head)
            return
        if back_head is None:
            back_head = getattr(head, "back_head_faces", None)
        if back_head is None:
            back_head = back_head_faces(head_assets_view(head))
        if isinstance(back_head, Tensor):
            back_head = back_head.detach().cpu().numpy()
        keep = ~torch.as_tensor(np.asarray(back_head, dtype=bool))
        samples = sample_uv_grid(head.uv_coords, head.uv_faces, cfg.gaussian_grid, face_mask=keep)
        assert samples.num_samples > 0, "no UV samples: check the head's UV layout and back_head"
        self.register_buffer("sample_x_uv", samples.x_uv, persistent=False)
        self.register_buffer("sample_face_idx", samples.face_idx, persistent=False)
        self.register_buffer("sample_bary", samples.bary, persistent=False)
        raster = build_uv_raster(head.uv_coords, head.uv_faces, cfg.uv_resolution, face_mask=keep)
        self.register_buffer("raster_face_idx", raster.face_idx, persistent=False)
        self.register_buffer("raster_bary", raster.bary, persistent=False)
        mask = facial_sample_mask(head, samples) if cfg.residual_mask == "facial" else None
        self.register_buffer("residual_mask", mask, persistent=False)

    def _build_tables_from_head(self, head: HeadModel) -> None:
        """The tables a model file carries (`head.uv_grid`, …; the authors' release), used as given:
        Gaussians at the file's UV grid, anchored by sampling the posed mesh baked to UV."""
        cfg = self.config
        if not getattr(head, "has_uv_tables", False):
            raise AgoraError(f"uv_anchor 'position_map' needs a head that carries UV tables (an imported model's "
                             f"head); head '{head.model_id}' has none")
        r = head.uv_raster_vertices.shape[0]
        if r != cfg.uv_resolution:
            raise AgoraError(f"the head's UV raster is {r}², the generator's planes {cfg.uv_resolution}²")
        grid = head.uv_grid.float()
        x_uv = torch.stack([(grid[:, 0] + 1) / 2, (1 - grid[:, 1]) / 2], dim=1)
        face_idx, bary = locate_uv_points(head.uv_coords.cpu(), head.uv_faces.cpu(), x_uv.cpu())
        self.register_buffer("sample_x_uv", x_uv, persistent=False)
        self.register_buffer("sample_face_idx", face_idx, persistent=False)
        self.register_buffer("sample_bary", bary, persistent=False)
        self.register_buffer("raster_face_idx", None, persistent=False)
        self.register_buffer("raster_bary", None, persistent=False)
        self.register_buffer("residual_mask", None, persistent=False)

    def uv_position_map(self, vertices: Tensor) -> Tensor:
        """vertices [B,V,3] baked to UV [B,3,R,R]: the head's own raster (position-map anchors), else ours."""
        if self.config.uv_anchor == "position_map":
            return bake_vertex_raster(vertices, self.head.uv_raster_vertices, self.head.uv_raster_bary)
        return self.shape_raster.bake(vertices, self.head.faces)

    def mesh_points(self, vertices: Tensor) -> Tensor:
        """Interpolate(M, x_uv) of eq. (5): [B,V,3] -> [B,M,3] anchors of the Gaussians.

        "barycentric": exact interpolation in each sample's face; "position_map" (the authors'):
        the mesh baked to UV at uv_resolution, sampled bilinearly (border padding) at x_uv."""
        if self.config.uv_anchor == "position_map":
            return sample_uv_attributes(self.uv_position_map(vertices), self.samples, padding_mode="border")
        return interpolate(vertices, self.head.faces, self.samples)

    # --- views --------------------------------------------------------------------------------------
    @property
    def samples(self) -> UVSamples:
        """The M UV sample points x_uv (eq. 4), on this module's device."""
        return UVSamples(self.sample_x_uv, self.sample_face_idx, self.sample_bary)

    @property
    def shape_raster(self) -> UVRasterMap:
        return UVRasterMap(self.raster_face_idx, self.raster_bary)

    @property
    def num_gaussians(self) -> int:
        return self.sample_x_uv.shape[0]

    @property
    def num_ws(self) -> int:
        return self.synthesis.num_ws

    def parameter_counts(self) -> dict[str, int]:
        """{"mapping", "identity_branch" (mapping + identity synthesis), "deformation_branch", "total"}."""
        mapping = count_parameters(self.mapping_network)
        identity = mapping + count_parameters(self.synthesis)
        identity += count_parameters(self.position_head) if self.position_head is not None else 0
        deform = count_parameters(self.deformation_branch) if self.deformation_branch is not None else 0
        return {"mapping": mapping, "identity_branch": identity, "deformation_branch": deform,
                "total": count_parameters(self)}

    # --- eq. 3 --------------------------------------------------------------------------------------
    def mapping(self, z: Tensor, c: Tensor, truncation_psi: float = 1.0, shape: Tensor | None = None) -> Tensor:
        """ws = M(z, π) (eq. 3); with shape_conditioning "mapping" (Table 2) the label is [π, β].

        Args:
            z: [B, z_dim]; c: [B, c_dim] camera label; shape: [B, S'] β (needed for "mapping" only).
        Returns:
            [B, num_ws, w_dim].
        """
        if self.config.shape_conditioning == "mapping":
            assert shape is not None, 'shape_conditioning "mapping" needs the shape β'
            c = torch.cat([c, fit_coefficients(shape.to(c.dtype), self.shape_dim)], dim=1)
        return self.mapping_network(z, c, truncation_psi)

    # --- identity branch ----------------------------------------------------------------------------
    def identity(self, z: Tensor | None, c: Tensor | None, shape: Tensor, truncation_psi: float = 1.0,
                 ws: Tensor | None = None, *, noise_mode: NoiseMode = "random") -> IdentityCache:
        """Identity branch, once per avatar: ws, F_uv = G(w, β) and A_M (eq. 3-4, 6).

        Args:
            z [B, z_dim], c [B, c_dim]: latent and camera label (ignored when `ws` is given).
            shape: [B, S'] FLAME shape β.
            ws: [B, num_ws, w_dim] given styles (inversion / PTI) instead of mapping z.
        """
        if ws is None:
            ws = self.mapping(z, c, truncation_psi, shape)
        assert ws.ndim == 3 and ws.shape[1:] == (self.num_ws, self.config.w_dim), ws.shape
        assert shape.ndim == 2 and shape.shape[0] == ws.shape[0], (shape.shape, ws.shape)
        cond = None
        if self.config.shape_conditioning == "spatial":  # eq. 6, baked with the raster of the UV anchors
            cond = self.uv_position_map(shape_displacement(self.head, shape)).to(ws.dtype)
        tap = self.synthesis.forward_with_tap(ws, cond, noise_mode)
        planes = tap.image
        if self.position_head is not None:
            planes = torch.cat([self.position_head(planes[:, :3]), planes[:, 3:]], dim=1)
        raw_main = sample_uv_attributes(planes, self.samples, padding_mode=self._attribute_padding)
        return IdentityCache(ws, planes, tap.features, tap.skip_image, shape, raw_main)

    # --- per frame ----------------------------------------------------------------------------------
    def animate(self, cache: IdentityCache, flame: FlameParams, *, noise_mode: NoiseMode = "random", deform_dtype: torch.dtype | None = None) -> GeneratorOutput:
        """Posed Gaussians of cached identities (eq. 5, 7, sec. 3.4-3.5); no identity-branch work.

        Inside `torch.inference_mode()` the synthesis layers take their inference formulation
        (models/stylegan2_inference.py: same values up to float32 rounding).

        Args:
            cache: from `identity()`; a single avatar is broadcast to the batch of `flame`.
            flame: B frames' expression, jaw, neck, eyes, eyelids; its shape is not read (the
                identity's β is the cache's); global rotation is zero.
            deform_dtype: dtype of the deformation branch's convolutions, None = the cache's;
                torch.bfloat16 (inference mode only) where `devices.inference_dtype` says the CPU
                has bf16 units; the residual planes come back in the cache's dtype.
        """
        b = flame.batch_size
        static = cache.static_attributes(self.config) if torch.is_inference_mode_enabled() else None
        if cache.batch_size != b:
            cache = cache.expand(b)
            static = None if static is None else static.map(lambda t: t.expand(b, *t.shape[1:]))
        mesh = self.head(flame.replace(shape=cache.shape))
        points = self.mesh_points(mesh).to(cache.raw_main.dtype)
        deform = None
        if self.deformation_branch is not None:
            e = expression_condition(flame, self.config.expr_cond_dim).to(cache.ws.dtype)
            features, skip = cache.tap_features, cache.tap_skip_image
            if deform_dtype is not None and deform_dtype != features.dtype:
                assert torch.is_inference_mode_enabled(), "a deform_dtype other than the cache's is inference only"
                features, skip = features.to(deform_dtype), skip.to(deform_dtype)
            deform = self.deformation_attributes(features, cache.ws, e, skip, noise_mode)
        gaussians, regs = lift_gaussians(cache.raw_main, points, deform, self.residual_mask, self.config, static)
        return GeneratorOutput(gaussians, regs)

    def deformation_attributes(self, tap_features: Tensor, ws: Tensor, e: Tensor, tap_skip_image: Tensor | None,
                               noise_mode: NoiseMode = "random") -> Tensor:
        """A_D = GridSample(G_d(w, e; f), x_uv) (eq. 4, 7): [B, M, C] deformation attributes at the samples.

        tap_features [B, C_tap, T, T], ws [B, num_ws, w_dim], e [B, expr_cond_dim + 5]; tap_skip_image
        [B, C, T, T] is used by the authors' layout only (their G_d starts from the identity's skip image).
        """
        if self.config.attribute_layout == "authors":
            planes = self.deformation_branch(tap_features, ws, e, noise_mode, skip_image=tap_skip_image,
                                             plane_mask=self._plane_mask())
        else:
            planes = self.deformation_branch(tap_features, ws, e, noise_mode)
        return sample_uv_attributes(planes, self.samples, padding_mode=self._attribute_padding)

    @property
    def _attribute_padding(self) -> str:
        """grid_sample padding of the attribute planes: border (ours), zeros (the authors')."""
        return "zeros" if self.config.attribute_layout == "authors" else "border"

    def _plane_mask(self) -> Tensor:
        """[R,R] facial mask of the residual planes (the authors' layout): the head's, else all ones."""
        if getattr(self.head, "has_uv_tables", False):
            return self.head.uv_residual_mask
        r = self.config.uv_resolution
        return self.sample_x_uv.new_ones(r, r)

    def forward(self, z: Tensor, c: Tensor, flame: FlameParams, truncation_psi: float = 1.0, *,
                noise_mode: NoiseMode = "random") -> GeneratorOutput:
        """identity() with flame.shape, then animate() with the rest of `flame`."""
        cache = self.identity(z, c, flame.shape, truncation_psi, noise_mode=noise_mode)
        return self.animate(cache, flame, noise_mode=noise_mode)


def _drop_head_from_state_dict(module: AgoraGenerator, state_dict, prefix: str, local_metadata) -> None:
    for key in [k for k in state_dict if k.startswith(prefix + "head.")]:
        del state_dict[key]


def _ignore_missing_head_keys(module: AgoraGenerator, incompatible_keys) -> None:
    head_keys = {"head." + name for name, _ in module.head.named_buffers()}
    missing = incompatible_keys.missing_keys
    missing[:] = [k for k in missing if not any(k == h or k.endswith("." + h) for h in head_keys)]
