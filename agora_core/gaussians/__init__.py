"""3D Gaussian sets, their activations (paper sec. 3.5), residual composition (sec. 3.4) and files."""

from agora_core.gaussians.activations import (
    colour_sh,
    log_scale,
    log_scale_at_zero,
    log_scale_residual,
    normalize_quat_columns,
    opacity,
    opacity_logit,
    position_offset,
    position_residual,
    rotation,
    rotation_axis_angle,
    rotation_residual,
)
from agora_core.gaussians.composition import compose_residuals, compose_residuals_reference
from agora_core.gaussians.gaussian_set import SH_C0, SH_C1, GaussianSet, eval_sh, rgb_to_sh0, sh0_to_rgb
from agora_core.gaussians.io_ply import inria_property_names, read_ply, write_ply
from agora_core.gaussians.io_splat import SPLAT_DTYPE, read_splat, splat_importance, write_splat
from agora_core.gaussians.quaternions import (
    axis_angle_to_quat,
    normalize_quat,
    quat_multiply,
    quat_to_rotmat,
    rotmat_to_quat,
)

__all__ = [
    "GaussianSet", "SH_C0", "SH_C1", "eval_sh", "rgb_to_sh0", "sh0_to_rgb",
    # activations, sec. 3.5 (main branch) and sec. 3.4 (zero-centred residuals)
    "position_offset", "log_scale", "log_scale_at_zero", "opacity", "opacity_logit", "rotation", "colour_sh",
    "position_residual", "log_scale_residual", "rotation_residual",
    # the authors' variants (imported models)
    "rotation_axis_angle", "normalize_quat_columns",
    # quaternions (w, x, y, z)
    "normalize_quat", "quat_multiply", "axis_angle_to_quat", "quat_to_rotmat", "rotmat_to_quat",
    # composition, sec. 3.4
    "compose_residuals", "compose_residuals_reference",
    # files
    "write_ply", "read_ply", "inria_property_names", "write_splat", "read_splat", "splat_importance",
    "SPLAT_DTYPE",
]  # fmt: skip
