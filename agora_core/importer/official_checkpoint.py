"""The authors' released checkpoints (`checkpoint-*.pkl`) as our generator and head.

`read_official_checkpoint` reads the file inertly (`inert_pickle`), takes `G_ema` (else `G`, with a
warning), flattens its modules into named tensors and its `_config` into plain values.
`official_generator_config` turns their config into a `GeneratorConfig` with the options that
reproduce their forward (`attribute_layout="authors"`, …); `convert_official_state` maps their
tensor names onto ours; `official_head_assets` builds the FLAME-with-mouth head and UV tables the
file carries. Anything unexpected is one `AgoraError` line naming the file and what was expected.
"""

from __future__ import annotations

import hashlib
import math
import warnings
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from agora_core.errors import AgoraError, AgoraWarning, check_finite, file_error
from agora_core.head.assets import FLAME_PARENTS, RELEASE_HEAD_PREFIX, FlameAssets, UVTables
from agora_core.importer.inert_pickle import InertRecord, PersistentRecord, load_inert_pickle
from agora_core.models.generator_config import GeneratorConfig

RELEASE_HINT = "the authors' release (their README links checkpoint-6500.pkl / checkpoint-20500.pkl)"
LEGACY_STYLE_SLOT = 55  # zero-filled FLAME slot of every identity-branch style input (dropped here)
FLAME_PREFIX = "flame_lbs_model."


@dataclass
class OfficialCheckpoint:
    """Named tensors and config of the generator inside an authors' checkpoint."""

    path: Path
    state: dict[str, Tensor]  # their names, e.g. "backbone.synthesis.b4.conv1.weight"
    config: dict  # their GGHeadConfig as plain values (nested dicts, enums as names)
    attributes: dict  # other plain attributes of the generator (n_shape, n_exp, …)
    source: str  # "G_ema" or "G"


def _plain(value, depth: int = 0):
    """Records -> dicts of their attributes, enums -> names, tuples -> lists; tensors kept."""
    if depth > 20:
        return None
    if isinstance(value, (InertRecord, PersistentRecord)):
        attrs = value.attributes
        if not attrs and isinstance(value, InertRecord) and value.args:  # e.g. an Enum member by value
            return _plain(value.args[0], depth + 1)
        return {str(k): _plain(v, depth + 1) for k, v in attrs.items()}
    if isinstance(value, Enum):
        return value.name
    if isinstance(value, dict):
        return {str(k): _plain(v, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v, depth + 1) for v in value]
    if isinstance(value, (str, int, float, bool, type(None), Tensor)):
        return value
    if isinstance(value, np.generic):
        return value.item()
    return repr(value)


def _flatten_module(record, prefix: str, out: dict[str, Tensor], path: Path, depth: int = 0) -> None:
    if depth > 40:
        raise file_error(path, "module nesting deeper than 40 levels; not an AGORA checkpoint")
    attrs = record.attributes if isinstance(record, (InertRecord, PersistentRecord)) else {}
    for group in ("_parameters", "_buffers"):
        for name, value in (attrs.get(group) or {}).items():
            if value is None:
                continue
            if not isinstance(value, Tensor):
                raise file_error(path, f"'{prefix}{name}' is a {type(value).__name__}, expected a tensor")
            out[prefix + name] = value
    for name, child in (attrs.get("_modules") or {}).items():
        if child is not None:
            _flatten_module(child, f"{prefix}{name}.", out, path, depth + 1)


def read_official_checkpoint(path: str | Path) -> OfficialCheckpoint:
    """The generator of an authors' checkpoint, read without executing anything (see module doc)."""
    path = Path(path)
    top = load_inert_pickle(path, "AGORA checkpoint (pickle)")
    if not isinstance(top, dict) or not ({"G_ema", "G"} & set(top)):
        keys = sorted(map(str, top)) if isinstance(top, dict) else type(top).__name__
        raise file_error(path, f"expected the authors' checkpoint dict with 'G_ema' (and G, D, …), found {keys}")
    source = "G_ema" if top.get("G_ema") is not None else "G"
    if source == "G":
        warnings.warn(f"{path}: no G_ema in the checkpoint; importing G (the non-averaged weights)",
                      AgoraWarning, stacklevel=2)
    generator = top[source]
    if not isinstance(generator, (InertRecord, PersistentRecord)) or "_modules" not in generator.attributes:
        raise file_error(path, f"'{source}' is not a pickled generator module")
    state: dict[str, Tensor] = {}
    _flatten_module(generator, "", state, path)
    attrs = generator.attributes
    config = _plain(attrs.get("_config"))
    if not isinstance(config, dict):
        raise file_error(path, f"'{source}' has no _config (GGHeadConfig); not an AGORA checkpoint")
    plain_attrs = {k: v for k, v in attrs.items() if isinstance(v, (int, float, str, bool)) and not k.startswith("_")}
    return OfficialCheckpoint(path, state, config, plain_attrs, source)


# --- config -------------------------------------------------------------------------------------------
# Their flags whose value must be as in the released configs: anything else is a model we do not
# reproduce, refused by name instead of mis-mapped.
_REQUIRED_FLAGS = {
    "use_flame_template_with_mouth": True, "use_deformation_branch": True, "use_concat": True,
    "condition_nc": 3, "zero_out_color_residuals": True, "zero_out_opacity_residuals": False,
    "use_deform_mask": True, "use_mouth_branch": False, "use_gaussian_hierarchy": False,
    "use_zero_conv_position": True, "use_zero_conv_scale": False, "n_shells": 1,
    "use_position_activation": True, "use_color_activation": True, "use_scale_activation": True,
    "center_scale_activation": True, "use_rotation_activation": True,
    "use_periodic_rotation_activation": False, "use_softplus_scale_activation": False,
    "no_exp_scale_activation": False, "clamp_opacity": False, "use_background_plane": False,
    "use_background_cnn": False, "double_condition": False, "gfc_double_modulation": False,
    "gfc_additive_condition": False, "use_spade": False, "disable_deformation_branch": False,
    "use_initial_scales": False, "use_align_corners": False, "interpolation_mode": "bilinear",
    "use_gaussian_blendshape": False, "n_gaussians_per_texel": 1,
}


def official_generator_config(ckpt: OfficialCheckpoint) -> GeneratorConfig:
    """`GeneratorConfig` reproducing their forward for the checkpoint's config."""
    cfg, path = ckpt.config, ckpt.path
    for flag, expected in _REQUIRED_FLAGS.items():
        if flag in cfg and cfg[flag] != expected:
            raise file_error(path, f"config flag {flag}={cfg[flag]!r} is not supported (the released "
                                   f"models use {expected!r})")
    syn = cfg.get("synthesis_network_config") or {}
    mapping = cfg.get("mapping_network_config") or {}
    attrs = cfg.get("gaussian_attribute_config") or {}
    names = [a.get("name", a) if isinstance(a, dict) else a for a in cfg.get("uv_attributes") or []]
    if syn.get("architecture", "skip") != "skip" or attrs.get("use_rodriguez_rotation", True) is not True:
        raise file_error(path, "only the 'skip' synthesis with axis-angle rotation channels is supported")
    if float(cfg.get("position_attenuation", 1)) != 1 or float(cfg.get("scale_attenuation", 1)) != 1:
        raise file_error(path, "position/scale attenuation other than 1 is not supported")
    if names and [str(n).upper() for n in names] != ["POSITION", "SCALE", "ROTATION", "COLOR", "OPACITY"]:
        raise file_error(path, f"uv_attributes {names} are not POSITION, SCALE, ROTATION, COLOR, OPACITY")
    overshoot = float(cfg.get("color_overshoot", 0.001))
    if float(cfg.get("opacity_overshoot", overshoot)) != overshoot:
        raise file_error(path, "colour and opacity overshoots differ; not supported")
    try:
        w_dim = int(cfg.get("w_dim", 512))
        embed_w = ckpt.state["backbone.mapping.embed.weight"]
        plane = int(cfg.get("plane_resolution", 256))
        return GeneratorConfig(
            z_dim=int(cfg.get("z_dim", 512)), w_dim=w_dim, c_dim=int(embed_w.shape[1]),
            mapping_layers=int(mapping.get("num_layers", 2)), uv_resolution=plane,
            gaussian_grid=int(cfg.get("n_uniform_flame_vertices", 512)),
            tap_resolution=int(cfg.get("deformation_start_resolution", 64)),
            channel_base=int(syn.get("channel_base", 32768)), channel_max=int(syn.get("channel_max", 512)),
            sh_degree=int(attrs.get("sh_degree", 1)), use_noise=bool(syn.get("use_noise", True)),
            shape_conditioning="spatial", deformation_branch=True,
            expr_cond_dim=int(ckpt.state["deformation_generator.flame_mlp.0.weight"].shape[1]) - 5,
            expr_embed_dim=int(ckpt.state["deformation_generator.flame_mlp.2.weight"].shape[0]),
            gamma_pos=float(cfg.get("position_range", 0.25)), s_max=float(cfg.get("max_scale", -3.0)),
            s_offset=float(cfg.get("scale_offset", -3.5)) + float(cfg.get("additional_scale_offset", 0)),
            deform_position_scale=0.1 * float(cfg.get("position_range", 0.25)),
            residual_mask="none", position_zero_init=True, deform_output_gain=0.0,
            attribute_layout="authors", cond_var_eps=1e-8, activation_overshoot=overshoot,
            uv_anchor="position_map", quaternion_norm="authors_columns")
    except KeyError as err:
        raise file_error(path, f"missing tensor {err.args[0]!r}; not an AGORA checkpoint") from None


# --- weights ------------------------------------------------------------------------------------------
def _synthesis_layer_names(theirs: str, ours: str, is_first: bool) -> list[tuple[str, str, bool]]:
    """(their name, our name, is a style affine) for one synthesis block."""
    pairs = [] if not is_first else [(f"{theirs}const", f"{ours}const", False)]
    for conv in (["conv1"] if is_first else ["conv0", "conv1"]):
        t, o = f"{theirs}{conv}.", f"{ours}{conv}."
        pairs += [(t + "weight", o + "conv.weight", False), (t + "affine.weight", o + "conv.affine.weight", True),
                  (t + "affine.bias", o + "conv.affine.bias", False), (t + "bias", o + "bias", False),
                  (t + "noise_strength", o + "noise.strength", False), (t + "noise_const", o + "noise.noise_const", False)]
    t, o = f"{theirs}torgb.", f"{ours}to_output."
    pairs += [(t + "weight", o + "conv.weight", False), (t + "affine.weight", o + "conv.affine.weight", True),
              (t + "affine.bias", o + "conv.affine.bias", False), (t + "bias", o + "bias", False)]
    return pairs


def convert_official_state(ckpt: OfficialCheckpoint, generator) -> dict[str, Tensor]:
    """Their tensors under our names, checked against `generator.state_dict()` shapes.

    Identity-branch style affines take [w, 55 zeros]: the zero columns are dropped and the
    remaining weight scaled by sqrt(w_dim / (w_dim + 55)), which keeps their equalised-LR gain
    1/sqrt(w_dim + 55) exactly (up to float rounding) under ours, 1/sqrt(w_dim).
    """
    state, path = ckpt.state, ckpt.path
    ours = generator.state_dict()
    w_dim = generator.config.w_dim
    pairs: list[tuple[str, str, bool]] = [
        ("backbone.mapping.embed.weight", "mapping_network.embed.weight", False),
        ("backbone.mapping.embed.bias", "mapping_network.embed.bias", False),
        ("backbone.mapping.w_avg", "mapping_network.w_avg", False),
        ("_zero_conv_position.weight", "position_head.weight", False),
        ("_zero_conv_position.bias", "position_head.bias", False),
        ("_deformation_zero_conv_position.weight", "deformation_branch.position_head.weight", False),
        ("_deformation_zero_conv_position.bias", "deformation_branch.position_head.bias", False),
    ]
    for i in range(generator.config.mapping_layers):
        pairs += [(f"backbone.mapping.fc{i}.weight", f"mapping_network.layers.{i}.weight", False),
                  (f"backbone.mapping.fc{i}.bias", f"mapping_network.layers.{i}.bias", False)]
    for key in generator.synthesis.blocks:
        r = int(key[1:])
        pairs += _synthesis_layer_names(f"backbone.synthesis.b{r}.", f"synthesis.blocks.{key}.", r == 4)
    for i, key in enumerate(generator.deformation_branch.tail.blocks):
        pairs += [(t, o, False) for t, o, _ in
                  _synthesis_layer_names(f"deformation_generator.synthesis.blocks.{i}.",
                                         f"deformation_branch.tail.blocks.{key}.", False)]
    for j in (0, 2):
        for part in ("weight", "bias"):
            pairs.append((f"deformation_generator.flame_mlp.{j}.{part}",
                          f"deformation_branch.embedding.net.{j}.{part}", False))
    out: dict[str, Tensor] = {}
    for theirs, mine, legacy_affine in pairs:
        if mine not in ours:
            raise AgoraError(f"internal: no tensor {mine} in the generator built for {path}")
        value = state.get(theirs)
        if value is None and mine.endswith("noise.noise_const"):
            value = ours[mine].new_zeros(ours[mine].shape)  # their tail layers keep no constant noise
            if float(state.get(theirs.replace("noise_const", "noise_strength"), torch.zeros(())).abs()) != 0:
                raise file_error(path, f"'{theirs}' is missing but its noise strength is not zero")
        if value is None:
            raise file_error(path, f"missing tensor '{theirs}' (expected for {mine}); not a supported AGORA checkpoint")
        value = value.detach().to(torch.float32)
        if legacy_affine:
            if value.ndim != 2 or value.shape[1] != w_dim + LEGACY_STYLE_SLOT:
                raise file_error(path, f"'{theirs}' has shape {tuple(value.shape)}, expected [*, {w_dim + LEGACY_STYLE_SLOT}]")
            value = value[:, :w_dim] * math.sqrt(w_dim / (w_dim + LEGACY_STYLE_SLOT))
        if tuple(value.shape) != tuple(ours[mine].shape):
            raise file_error(path, f"'{theirs}' has shape {tuple(value.shape)}, expected {tuple(ours[mine].shape)} "
                                   "for the architecture its config describes")
        check_finite(value, path, f"tensor '{theirs}'")
        out[mine] = value.contiguous().clone()
    missing = sorted(set(ours) - set(out))
    if missing:
        raise AgoraError(f"internal: {path} left generator tensors unset: {missing[:5]}")
    return out


def official_uv_grid(raster_bary: Tensor, n: int) -> Tensor:
    """Their Gaussians' UV grid for `n_uniform_flame_vertices` = n: linspace(−1, 1, n) on both axes
    (meshgrid "ij", i-major), as grid_sample (x, y) = (j value, i value), kept where the bilinearly
    sampled UV validity (texels with any barycentric weight) exceeds 0.99. Returns [G, 2]."""
    valid = (raster_bary.sum(-1) > 0).to(torch.float32)[None, None]
    axis = torch.linspace(-1, 1, n)
    gi, gj = torch.meshgrid(axis, axis, indexing="ij")
    points = torch.stack([gj.reshape(-1), gi.reshape(-1)], dim=-1)
    v = torch.nn.functional.grid_sample(valid, points[None, :, None], mode="bilinear", align_corners=False)
    return points[v[0, 0, :, 0] > 0.99]


# --- head ---------------------------------------------------------------------------------------------
def _array(ckpt: OfficialCheckpoint, name: str, ndim: int, dtype) -> np.ndarray:
    value = ckpt.state.get(name)
    if value is None:
        raise file_error(ckpt.path, f"missing '{name}' (the FLAME-with-mouth head the checkpoint should carry)")
    if value.ndim != ndim:
        raise file_error(ckpt.path, f"'{name}' has shape {tuple(value.shape)}, expected {ndim} dimensions")
    arr = value.detach().cpu().numpy().astype(dtype)
    check_finite(arr, ckpt.path, f"tensor '{name}'")
    return arr


def official_head_assets(ckpt: OfficialCheckpoint) -> FlameAssets:
    """The FLAME-with-mouth head and UV tables inside the checkpoint (no FLAME file needed).

    FLAME arrays come from `flame_lbs_model.*` (shapedirs = n_shape shape + n_exp expression
    directions), the UV layout from `template_uv_coords` / `template_uv_faces`, faces in FLAME
    vertex ids through `_tidx_to_idx`; eyelid offsets are added after skinning, as their FLAME does.
    """
    p, path = FLAME_PREFIX, ckpt.path
    v_template = _array(ckpt, p + "v_template", 2, np.float32)
    v = v_template.shape[0]
    shapedirs = _array(ckpt, p + "shapedirs", 3, np.float32)
    n_shape = int(ckpt.attributes.get("n_shape", 300))
    n_exp = int(ckpt.attributes.get("n_exp", shapedirs.shape[2] - n_shape))
    if shapedirs.shape[:2] != (v, 3) or shapedirs.shape[2] != n_shape + n_exp:
        raise file_error(path, f"'{p}shapedirs' has shape {shapedirs.shape}, expected [{v}, 3, {n_shape}+{n_exp}]")
    posedirs = _array(ckpt, p + "posedirs", 2, np.float32)
    if posedirs.shape != (36, 3 * v):
        raise file_error(path, f"'{p}posedirs' has shape {posedirs.shape}, expected [36, {3 * v}]")
    parents = _array(ckpt, p + "parents", 1, np.int64)
    if parents.shape != (5,) or not np.array_equal(parents[1:], FLAME_PARENTS[1:]):
        raise file_error(path, f"'{p}parents' is {parents.tolist()}, expected FLAME's {FLAME_PARENTS.tolist()}")
    t2i = _array(ckpt, "_tidx_to_idx", 1, np.int64)
    t_faces = _array(ckpt, "template_faces", 2, np.int64)
    uv_faces = _array(ckpt, "template_uv_faces", 2, np.int64)
    uv_coords = _array(ckpt, "template_uv_coords", 2, np.float64)
    if t2i.min() < 0 or t2i.max() >= v or t_faces.max() >= len(t2i) or uv_faces.max() >= len(uv_coords):
        raise file_error(path, "template indices out of range (_tidx_to_idx, template_faces, template_uv_faces)")
    idxim = _array(ckpt, "_idxim", 3, np.int64)
    barim = _array(ckpt, "_barim", 3, np.float32)
    grid = _array(ckpt, "_uv_grid", 4, np.float32)
    mask = _array(ckpt, "_deform_mask", 4, np.float32)
    if idxim.max() >= len(t2i) or idxim.min() < 0:
        raise file_error(path, "'_idxim' indexes outside the UV template")
    eyelids = [ckpt.state.get(p + k) for k in ("l_eyelid", "r_eyelid")]
    eyelid_dirs = None
    if all(e is not None for e in eyelids):
        eyelid_dirs = np.stack([_array(ckpt, p + k, 3, np.float32)[0] for k in ("l_eyelid", "r_eyelid")], axis=2)
    digest = hashlib.sha1()
    for arr in (v_template, shapedirs, t_faces, uv_coords):
        digest.update(np.ascontiguousarray(arr).tobytes())
    kintree = np.stack([np.where(parents < 0, 4294967295, parents), np.arange(5)]).astype(np.int64)
    return FlameAssets(
        v_template=v_template, faces=t2i[t_faces], shapedirs=shapedirs[:, :, :n_shape],
        exprdirs=shapedirs[:, :, n_shape:], posedirs=posedirs.T.reshape(v, 3, 36),
        J_regressor=_array(ckpt, p + "J_regressor", 2, np.float32),
        weights=_array(ckpt, p + "lbs_weights", 2, np.float32), kintree_table=kintree,
        uv_coords=uv_coords.astype(np.float32), uv_faces=uv_faces, eyelid_dirs=eyelid_dirs,
        model_id=f"{RELEASE_HEAD_PREFIX}{digest.hexdigest()[:12]}", eyelids_after_skinning=True,
        uv_tables=UVTables(grid=grid.reshape(-1, 2), raster_vertices=t2i[idxim], raster_bary=barim,
                           residual_mask=(mask[0, 0] >= 0.5).astype(np.float32)))
