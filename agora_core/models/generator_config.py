"""Configs of the AGORA generator and discriminator (paper sec. 3, appendix 0.B.1; Tables 2-3).

Frozen dataclasses; the defaults are the paper's stage-1 architecture (UV planes 256², 64² tap,
channel_base 32768 / max 512). Presets (paper, stage 2, CPU demo) are built by the training config,
not here. Values a user can get wrong (from a YAML file) raise `AgoraError` naming the field.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from agora_core.errors import AgoraError

ShapeConditioning = Literal["spatial", "mapping", "none"]
ResidualMask = Literal["facial", "none"]
Cue = Literal["none", "projection", "uv", "displacement"]
AttributeLayout = Literal["paper", "authors"]
UVAnchor = Literal["barycentric", "position_map"]
QuaternionNorm = Literal["per_gaussian", "authors_columns"]

# e = [expression (expr_cond_dim), jaw axis-angle (3), eyelids (2)]: the authors' 55-d vector.
JAW_DIM, EYELID_DIM = 3, 2


def _power_of_two(x: int) -> bool:
    return x >= 4 and x & (x - 1) == 0


def _check(ok: bool, config: str, message: str) -> None:
    if not ok:
        raise AgoraError(f"{config}: {message}")


@dataclass(frozen=True)
class GeneratorConfig:
    """Architecture of `AgoraGenerator` (identity branch + deformation branch + lifting)."""

    z_dim: int = 512  # latent code z size (eq. 3)
    w_dim: int = 512  # intermediate latent w size
    c_dim: int = 25  # camera label size fed to the mapping network: the EG3D 25-float label
    mapping_layers: int = 2  # depth of the mapping MLP (the authors use 2, StyleGAN2 8)
    uv_resolution: int = 256  # resolution R of the identity / deformation UV planes (paper 256)
    gaussian_grid: int = 256  # UV sample grid N: 256 -> ~65K FLAME Gaussians (stage 1), 512 -> ~262K
    tap_resolution: int = 64  # identity-branch resolution the deformation branch starts from (< R)
    channel_base: int = 32768  # StyleGAN2 channel rule ch(r) = min(channel_base // r, channel_max)
    channel_max: int = 512  # ...
    sh_degree: int = 1  # spherical-harmonics degree of the colours, 0 or 1 (authors: 1)
    use_noise: bool = True  # StyleGAN2 per-layer noise inputs (both branches)
    shape_conditioning: ShapeConditioning = "spatial"  # Table 2: "spatial" = sec. 3.3 (ours),
    #   "mapping" = β concatenated to the mapping network's label, "none" = β drives only the mesh
    deformation_branch: bool = True  # Table 2: dual (True) vs single branch (False: the mesh alone
    #   animates the Gaussians, no residuals)
    expr_cond_dim: int = 50  # expression coefficients fed to the deformation branch (+3 jaw +2 eyelids)
    expr_embed_dim: int = 512  # output of the expression MLP; styles of G_d are [w, MLP(e)]
    gamma_pos: float = 0.25  # γ_pos: max offset of a Gaussian from its mesh anchor, metres (sec. 3.5)
    s_max: float = -3.0  # upper bound of the log-scale (scale ≤ e^s_max ≈ 5 cm), sec. 3.5
    s_offset: float = -5.0  # shift of the log-scale activation (initial scale ≈ e^-5.13 ≈ 6 mm)
    deform_position_scale: float = 0.025  # bound of the residual offset Δμ, metres (0.1·γ_pos, authors)
    residual_mask: ResidualMask = "facial"  # where residuals are allowed: facial UV mask or everywhere
    position_zero_init: bool = True  # zero-initialised 1×1 conv on the identity position channels
    #   (authors' "zero conv"): Gaussians start exactly on the mesh instead of up to γ_pos away
    deform_output_gain: float = 0.1  # initial scale of G_d's output layers: residuals start near 0
    #   while every layer still gets gradients (a zero init would stall the tail at step 0)
    # --- options that reproduce the authors' released model (`agora import`); defaults: the paper --
    attribute_layout: AttributeLayout = "paper"  # "paper": quaternion rotation channels, 9 residual
    #   channels, zero-centred residuals (models.lifting); "authors": their code's 22-channel planes
    #   (axis-angle rotation through π·tanh), a 22-channel deformation branch started from the
    #   tap's skip image, its own 1×1 position conv, colour residual dropped, opacity residual kept,
    #   residual log-scale through the main activation, rotation q_main ⊗ q_def, a plane-level mask
    cond_var_eps: float = 1e-16  # ε in x / sqrt(var + ε) of the shape condition (authors: 1e-8)
    activation_overshoot: float = 0.0  # colour and opacity reach [-o, 1 + o] (authors: 0.001)
    uv_anchor: UVAnchor = "barycentric"  # mesh point of a UV sample: exact barycentric
    #   interpolation, or "position_map": bilinear sampling of the posed mesh baked to UV at
    #   uv_resolution (the authors'; needs a head carrying their UV tables)
    quaternion_norm: QuaternionNorm = "per_gaussian"  # "authors_columns": each quaternion component
    #   divided by its norm over all Gaussians (their renderer's F.normalize over dim 1, which the
    #   released model was trained through); the rasteriser normalises each quaternion after that

    def __post_init__(self) -> None:
        name = "GeneratorConfig"
        for field in ("uv_resolution", "tap_resolution", "gaussian_grid"):
            value = getattr(self, field)
            _check(isinstance(value, int) and value >= 4, name, f"{field} must be an int >= 4, got {value!r}")
        _check(_power_of_two(self.uv_resolution), name,
               f"uv_resolution must be a power of two, got {self.uv_resolution}")
        _check(_power_of_two(self.tap_resolution) and self.tap_resolution < self.uv_resolution, name,
               f"tap_resolution must be a power of two below uv_resolution ({self.uv_resolution}), "
               f"got {self.tap_resolution}")
        _check(self.sh_degree in (0, 1), name, f"sh_degree must be 0 or 1, got {self.sh_degree!r}")
        _check(self.shape_conditioning in ("spatial", "mapping", "none"), name,
               f"shape_conditioning must be spatial, mapping or none, got {self.shape_conditioning!r}")
        _check(self.residual_mask in ("facial", "none"), name,
               f"residual_mask must be facial or none, got {self.residual_mask!r}")
        for field in ("z_dim", "w_dim", "mapping_layers", "channel_base", "channel_max", "expr_embed_dim"):
            _check(getattr(self, field) > 0, name, f"{field} must be positive, got {getattr(self, field)!r}")
        _check(self.c_dim >= 0 and self.expr_cond_dim >= 0, name, "c_dim and expr_cond_dim must be >= 0")
        _check(self.gamma_pos > 0 and self.deform_position_scale > 0, name,
               "gamma_pos and deform_position_scale must be positive")
        _check(self.s_max > self.s_offset, name, f"s_max ({self.s_max}) must exceed s_offset ({self.s_offset})")
        _check(self.deform_output_gain >= 0, name, "deform_output_gain must be >= 0")
        _check(self.attribute_layout in ("paper", "authors"), name,
               f"attribute_layout must be paper or authors, got {self.attribute_layout!r}")
        _check(self.uv_anchor in ("barycentric", "position_map"), name,
               f"uv_anchor must be barycentric or position_map, got {self.uv_anchor!r}")
        _check(self.quaternion_norm in ("per_gaussian", "authors_columns"), name,
               f"quaternion_norm must be per_gaussian or authors_columns, got {self.quaternion_norm!r}")
        _check(self.cond_var_eps > 0 and 0 <= self.activation_overshoot < 0.5, name,
               "cond_var_eps must be > 0 and activation_overshoot in [0, 0.5)")

    @property
    def colour_channels(self) -> int:
        """3·(deg+1)² raw SH colour channels."""
        return 3 * (self.sh_degree + 1) ** 2

    @property
    def rotation_channels(self) -> int:
        """4 (quaternion, paper layout) or 3 (axis-angle, the authors' layout)."""
        return 3 if self.attribute_layout == "authors" else 4

    @property
    def main_channels(self) -> int:
        """Identity plane channels: position 3, log-scale 3, rotation 4 (3), colour 3·(deg+1)², opacity 1."""
        return 3 + 3 + self.rotation_channels + self.colour_channels + 1

    @property
    def expression_dim(self) -> int:
        """Size of the expression condition e (55 for the paper: 50 + jaw 3 + eyelids 2)."""
        return self.expr_cond_dim + JAW_DIM + EYELID_DIM


@dataclass(frozen=True)
class DiscriminatorConfig:
    """Architecture of `AgoraDiscriminator` and its dual-discrimination cue (sec. 3.6, Table 3)."""

    channel_base: int = 32768  # StyleGAN2 channel rule, as the generator
    channel_max: int = 512  # ...
    mbstd_group: int = 4  # minibatch-std group size
    mapping_layers: int = 8  # depth of D's label mapping (projection conditioning, StyleGAN2-ADA)
    c_dim: int = 25  # camera label size (EG3D 25 floats)
    cue: Cue = "displacement"  # Table 3: "none" (RGB only), "projection" (cGAN: e appended to D's
    #   label), "uv" (Next3D-style UV-coloured mesh render), "displacement" (ours, eq. 8)
    cue_displacement_scale: float = 0.01  # metres of |ΔV| that map to full colour in the cue
    cue_include_jaw: bool = True  # pose the cue's mesh with the jaw (eq. 8 literally: False)
    expr_cond_dim: int = 50  # expression coefficients in e for "projection" (+3 jaw +2 eyelids)

    def __post_init__(self) -> None:
        name = "DiscriminatorConfig"
        _check(self.cue in ("none", "projection", "uv", "displacement"), name,
               f"cue must be none, projection, uv or displacement, got {self.cue!r}")
        _check(self.cue_displacement_scale > 0, name, "cue_displacement_scale must be positive")
        for field in ("channel_base", "channel_max", "mbstd_group", "mapping_layers"):
            _check(getattr(self, field) > 0, name, f"{field} must be positive, got {getattr(self, field)!r}")
        _check(self.c_dim >= 0 and self.expr_cond_dim >= 0, name, "c_dim and expr_cond_dim must be >= 0")

    @property
    def image_channels(self) -> int:
        """D's input channels: RGB, plus the 3-channel cue for "uv"/"displacement"."""
        return 6 if self.cue in ("uv", "displacement") else 3

    @property
    def label_dim(self) -> int:
        """D's label: the camera, plus e for "projection"."""
        return self.c_dim + (self.expr_cond_dim + JAW_DIM + EYELID_DIM if self.cue == "projection" else 0)
