"""The static AGORA-M web bundle: an avatar's neutral Gaussians, the blendshape basis, the coefficient
MLP and a WebGL2 viewer (no build step) that animates and splats them on the GPU (paper 0.B.2.2).

Layout of `site/` (see docs: "Web bundle"; all binaries little-endian, texel t of a W × H texture
at (t mod W, t div W), padding texels zero). Texels hold the Gaussians in *viewer order*: the A
"active" Gaussians (some stored blendshape value non-zero) first, then the ones that never move, each
part in model order (`neutral.splat` keeps model order). The blend pass then runs on the first
ceil(A / W) rows only.
  avatar.json          manifest (format agora-web-avatar, format_version 4): counts (num_gaussians,
                       active_gaussians), texture size, file names, the attribute space, the MLP's
                       layer widths and tensor offsets, per-component basis amplitudes, camera,
                       re-sort settings, etc.
  neutral.bin          float32 [3, H, W, 4]: (xyz, opacity), (scale xyz, active), (quaternion wxyz), in
                       the basis's attribute space ("attribute_space"): "paper" = log-scale and unit
                       quaternions (`mobile.residuals`), "authors" = linear scale and the authors'
                       column-normalised quaternions (a basis in their spaces; the viewer then
                       finishes the blend as their viewer does: `BlendshapeAvatar(finish="viewer")`)
  sh.bin               float32 [S, H, W, 4]: SH coefficient s (rgb, 0), S = 1 or 4 (3DGS convention)
  basis.i32            int16 [L·R, 8T]: row t holds Gaussian t's 11·K blendshape values, component-major,
                       [xyz 3 | scale 3 | rotation 4 | opacity 1] of round(32767 · U_g,k / a_g,k) per
                       component k, then zeros up to 8T (T = ceil(11K / 8)); a_g,k = max |U_g,k| per
                       group and component (avatar.json "basis_amplitude"). Read as int32 [L·R, T, 4],
                       it is an RGBA32I texture array (avatar.json "basis_texture": width T, height R =
                       min(W·H, 2048), L layers): Gaussian t's texel m at (m, t mod R, t div R) holds
                       values 8m..8m+7, value 2j + h in half h of channel j (lo | hi << 16), rows past
                       W·H zero. Fixed point: absolute error ≤ a_g,k / 65534 (fp16 near a_g,k:
                       a_g,k / 4096), integer texels cost a software rasterizer no half-float decoding,
                       and dense int16 pairs cost the blend 11/8 fetches and 22 bytes per component
                       (3 RGBA16I texels: 3 and 24), read as one contiguous run per Gaussian
  mlp.bin              float32 tensors of mlp.safetensors (any number of hidden layers, widths in
                       avatar.json "mlp.hidden") + the avatar's w, offsets in avatar.json
  driving_sequence.json  {num_frames, params_dim: 55, fps, frames: [[50 expr, 3 jaw, 2 eyelids]]}
  neutral.splat        the neutral Gaussians for standard 3DGS viewers (antimatter15 format)
  index.html, ui.js, viewer.js, ...   the viewer (VIEWER_FILES, no build step)
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from agora_core.errors import AgoraError
from agora_core.gaussians import GaussianSet, write_splat
from agora_core.mobile.basis_file import GaussianBasis
from agora_core.mobile.coefficient_mlp import NEGATIVE_SLOPE, CoefficientMLP
from agora_core.mobile.fixed_point_basis import FIXED_POINT, FixedPointBasis
from agora_core.mobile.residuals import RESIDUAL_GROUPS, attribute_groups
from agora_core.render import EG3D_FOCAL, FLAME_CAMERA_RADIUS

FORMAT = "agora-web-avatar"
FORMAT_VERSION = 4  # the one version viewer.js reads (docs/architecture.md "Web bundle")
MAX_TEXTURE_WIDTH = 2048  # WebGL2 guarantees textures of 2048² (and 256 array layers)
VIEWER_FILES = ("index.html", "ui.js", "viewer.js", "passes.js", "depth_sort.js", "webgl.js", "shaders.js",
                "sort_worker.js")
WEB_DIR = Path(__file__).resolve().parent / "web"
RESORT_DISPLACEMENT_M = 0.001  # re-sort when some Gaussian may have moved 1 mm (depth_sort.js `displacementBound`)
BASIS_VALUES = sum(RESIDUAL_GROUPS.values())  # 11 int16 values per Gaussian and component
PARAM_DIMS = {"expression": 50, "jaw": 3, "eyelids": 2}  # the authors' web-demo parameter vector
NUM_PARAMS = sum(PARAM_DIMS.values())  # 55
MAX_COMPONENTS = 256  # the blend's coefficient uniform block: 256 vec4 = WebGL2's guaranteed 16 KiB
MAX_LAYERS = 256  # WebGL2's guaranteed texture-array depth
VIEWER_RADIUS_FACTOR = 1.25  # default viewer distance, × FLAME_CAMERA_RADIUS


def texture_shape(n: int) -> tuple[int, int]:
    """(width, height) of the per-Gaussian textures: one texel per Gaussian, about square (width the power
    of two ≥ √n, at most 2048). Square-ish passes keep a software rasterizer's 2×2 quads and its threads
    (which split a pass by rows) busy; one 2048-wide row would run on one thread with half its lanes idle."""
    width = min(MAX_TEXTURE_WIDTH, 1 << max(0, math.ceil(math.log2(max(math.sqrt(n), 1)))))
    return width, math.ceil(n / width)


def _plane(values: Tensor, width: int, height: int, fill: tuple[float, ...] | None = None) -> np.ndarray:
    """[N, C] -> [height, width, C] float32 (row-major texels), padding with `fill` (zeros)."""
    n, c = values.shape
    out = np.zeros((height * width, c), dtype=np.float32)
    if fill is not None:
        out[:] = fill
    out[:n] = values.detach().cpu().numpy()
    return out.reshape(height, width, c)


def _rgba(values: Tensor) -> Tensor:
    return torch.cat([values, values.new_zeros(values.shape[0], 4 - values.shape[1])], dim=1)


def default_camera(neutral: GaussianSet) -> dict:
    """Orbit camera (`orbit_cameras` conventions) around the opacity-weighted centre, a little farther than
    the FFHQ-crop framing (FLAME_CAMERA_RADIUS) so the whole head fits in a wide window."""
    weights = neutral.opacities[0].clamp_min(1e-6)[:, None]
    target = ((neutral.means[0] * weights).sum(0) / weights.sum()).tolist()
    return {"target": target, "radius": VIEWER_RADIUS_FACTOR * FLAME_CAMERA_RADIUS, "yaw": 0.0, "pitch": 0.0,
            "focal": EG3D_FOCAL}


def demo_driving_sequence(num_frames: int = 150, fps: float = 25.0) -> dict:
    """A synthetic 6 s driving sequence (mouth opening, two expression modes, blinks) in the web-demo format."""
    frames = []
    for i in range(num_frames):
        t = i / fps
        p = [0.0] * NUM_PARAMS
        p[0] = 1.5 * math.sin(2 * math.pi * t / 3.0)
        p[1] = 1.0 * math.sin(2 * math.pi * t / 2.0 + 1.0)
        p[2] = 0.8 * math.sin(2 * math.pi * t / 5.0)
        p[50] = 0.15 * (1 - math.cos(2 * math.pi * t / 2.5))  # jaw opening (rad)
        blink = max(0.0, 1 - abs((t % 3.0) - 1.5) / 0.12)
        p[53] = p[54] = blink
        frames.append([round(x, 5) for x in p])
    return {"num_frames": num_frames, "params_dim": NUM_PARAMS, "fps": fps, "frames": frames}


def check_driving_sequence(seq: dict, where: str) -> dict:
    """Validate the web-demo format {num_frames, params_dim: 55, fps, frames: [[55]]}."""
    ok = isinstance(seq, dict) and seq.get("params_dim") == NUM_PARAMS and isinstance(seq.get("frames"), list)
    ok = ok and len(seq["frames"]) > 0 and all(isinstance(f, list) and len(f) == NUM_PARAMS for f in seq["frames"])
    if not ok or not float(seq.get("fps", 0)) > 0:
        raise AgoraError(f"{where}: expected a driving sequence {{num_frames, params_dim: 55, fps, frames: [[55 numbers]]}}")
    return {**seq, "num_frames": len(seq["frames"])}


def check_compatible(basis: GaussianBasis, mlp: CoefficientMLP, num_gaussians: int, w_dim: int, where: str) -> None:
    """The basis, the MLP and the avatar must agree on K, M and w_dim (one line naming what differs)."""
    if basis.k != mlp.k:
        raise AgoraError(f"--basis has K={basis.k} components but --mlp predicts K={mlp.k}; use files "
                         f"from the same extract-basis / fit-mlp run")
    if basis.num_gaussians != num_gaussians:
        raise AgoraError(f"--basis is for {basis.num_gaussians} Gaussians but {where} has {num_gaussians}; "
                         f"extract the basis from the same checkpoint")
    if mlp.w_dim != w_dim:
        raise AgoraError(f"--mlp expects w of size {mlp.w_dim} but {where} has w of size {w_dim}")
    if basis.attribute_space not in ("paper", "authors"):
        raise AgoraError(f"--basis: unknown attribute_space {basis.attribute_space!r} (expected paper or authors)")
    if mlp.expr_dim > PARAM_DIMS["expression"]:
        raise AgoraError(f"--mlp takes {mlp.expr_dim} expression coefficients; the viewer drives at most "
                         f"{PARAM_DIMS['expression']}")


def _write_mlp(path: Path, mlp: CoefficientMLP, w: Tensor) -> dict:
    tensors = {**mlp.state_dict(), "w": w}
    entries, offset = {}, 0
    with open(path, "wb") as f:
        for name, t in tensors.items():
            data = t.detach().cpu().float().contiguous().numpy().astype("<f4")
            f.write(data.tobytes())
            entries[name] = {"offset": offset, "size": int(data.size), "shape": list(data.shape)}
            offset += data.nbytes
    return {"hidden": list(mlp.hidden_sizes), "input_dim": mlp.in_features, "w_dim": mlp.w_dim,
            "expr_dim": mlp.expr_dim, "k": mlp.k, "negative_slope": NEGATIVE_SLOPE, "tensors": entries}


def basis_texture_shape(texels: int, k: int) -> tuple[int, int, int]:
    """(width T, rows R, layers L) of the basis texture array (module docstring): one row per Gaussian,
    8 int16 values per RGBA32I texel, as many rows per layer as a texture's height allows."""
    rows = min(texels, MAX_TEXTURE_WIDTH)
    return math.ceil(BASIS_VALUES * k / 8), rows, math.ceil(texels / rows)


def _packed_basis(basis: GaussianBasis, n: int, gaussians: int, width: int) -> tuple[np.ndarray, dict[str, list[float]]]:
    """basis.i32 contents int32 [gaussians, width, 4] in model order and the per-group amplitudes a_g,k."""
    amplitudes = {g: [] for g in RESIDUAL_GROUPS}
    values = np.zeros((gaussians, 8 * width), dtype="<i2")
    for k in range(basis.k):  # one component at a time: peak memory ~ the packed output
        parts = []
        for g in RESIDUAL_GROUPS:
            fixed = FixedPointBasis.quantize(basis.blendshapes(g)[k].reshape(1, -1), "int16")  # one run: a_g,k
            parts.append(fixed.codes.reshape(n, -1))
            amplitudes[g].append(float(fixed.amplitudes[0, 0]))
        values[:n, BASIS_VALUES * k:BASIS_VALUES * (k + 1)] = torch.cat(parts, dim=1).numpy()  # [n, 11]
    # little-endian: int16 values (2j, 2j + 1) are the int32 channel j = lo | hi << 16 (the shader shifts them apart)
    return values.view("<i4").reshape(gaussians, width, 4), amplitudes


def viewer_order(active: np.ndarray) -> np.ndarray:
    """[M] bool -> [M] model indices in viewer order: active Gaussians first, both parts in model order."""
    return np.concatenate([np.flatnonzero(active), np.flatnonzero(~active)])


def max_xyz_norm(basis: GaussianBasis) -> list[float]:
    """[K]: max over Gaussians of |U_xyz,k,i| (metres per unit coefficient). No Gaussian moves farther than
    Σ_k |Δc_k| · max_xyz_norm[k] when the coefficients change by Δc: the viewer's re-sort bound."""
    return basis.blendshapes("xyz").float().norm(dim=2).amax(dim=1).tolist()


def write_web_bundle(out_dir: str | Path, neutral: GaussianSet, w: Tensor, basis: GaussianBasis, mlp: CoefficientMLP,
                     sequence: dict | None = None, source: dict[str, str] | None = None,
                     background: tuple[float, float, float] = (1.0, 1.0, 1.0)) -> Path:
    """Write the static viewer bundle (module docstring) for one avatar; returns `out_dir`.

    Args:
        neutral: batch-1 neutral Gaussians (SH degree 0 or 1) of M Gaussians, model order.
        w: [w_dim] the avatar's w code (the MLP's identity input).
        basis, mlp: AGORA-M files (`GaussianBasis.load`, `CoefficientMLP.load`) built for this generator.
        sequence: a driving sequence (web-demo format); default `demo_driving_sequence()`.
    """
    assert neutral.batch_size == 1, neutral.batch_size
    w = w.reshape(-1)
    n = neutral.num_gaussians
    check_compatible(basis, mlp, n, w.shape[0], "the avatar")
    if basis.k > MAX_COMPONENTS:
        raise AgoraError(f"--basis has K={basis.k} components; the web viewer supports at most {MAX_COMPONENTS}")
    width, height = texture_shape(n)
    basis_width, rows, layers = basis_texture_shape(width * height, basis.k)
    if layers > MAX_LAYERS:  # the basis texture holds `rows` Gaussians per layer
        raise AgoraError(f"the avatar has {n} Gaussians; the web viewer holds at most "
                         f"{MAX_LAYERS * MAX_TEXTURE_WIDTH} (WebGL2's 2048-row, 256-layer texture arrays)")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    packed, amplitudes = _packed_basis(basis, n, layers * rows, basis_width)
    # A Gaussian whose stored blendshapes are all exactly 0 never moves in the viewer: it goes after the
    # moving ones (and keeps its flag in the log-scale layer, w), so the per-frame blend covers the first
    # rows only. Exact, and a real AGORA-M basis is zero wherever neither FLAME nor the (facial-masked)
    # residuals move the Gaussian.
    active = (packed[:n] != 0).any(axis=(1, 2))
    order = viewer_order(active)
    packed[:n] = packed[order]
    g = neutral.detach().to("cpu").map(lambda t: t.float())
    viewer = g.map(lambda t: t[:, torch.from_numpy(order)])
    flag = torch.from_numpy(active[order].astype(np.float32))[:, None]
    scales = attribute_groups(viewer, basis.attribute_space)["scale"].reshape(n, 3)  # what the basis blends
    neutral_planes = np.stack([
        _plane(torch.cat([viewer.means[0], viewer.opacities[0, :, None]], 1), width, height),
        _plane(torch.cat([scales, flag], 1), width, height),
        _plane(viewer.quats[0], width, height, fill=(1.0, 0.0, 0.0, 0.0)),
    ])  # fmt: skip
    neutral_planes.astype("<f4").tofile(out / "neutral.bin")
    sh = np.stack([_plane(_rgba(viewer.sh[0, :, j]), width, height) for j in range(g.sh.shape[2])])
    sh.astype("<f4").tofile(out / "sh.bin")
    files = {"neutral": "neutral.bin", "sh": "sh.bin", "mlp": "mlp.bin", "basis": "basis.i32"}
    packed.tofile(out / "basis.i32")
    mlp_entry = _write_mlp(out / "mlp.bin", mlp, w)
    seq = check_driving_sequence(sequence, "--sequence") if sequence is not None else demo_driving_sequence()
    (out / "driving_sequence.json").write_text(json.dumps(seq, separators=(",", ":")))
    write_splat(out / "neutral.splat", g)
    for name in VIEWER_FILES:
        shutil.copyfile(WEB_DIR / name, out / name)
    manifest = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "num_gaussians": n, "active_gaussians": int(active.sum()),
        "k": basis.k, "attribute_space": basis.attribute_space, "basis_fixed_point": FIXED_POINT,
        "basis_texture": {"width": basis_width, "height": rows, "layers": layers},
        "texture_width": width, "texture_height": height, "sh_coefficients": int(g.sh.shape[2]),
        "files": files, "basis_amplitude": amplitudes, "mlp": mlp_entry,
        "params": dict(PARAM_DIMS),
        "default_camera": default_camera(g), "background": list(background),
        "resort": {"displacement_m": RESORT_DISPLACEMENT_M, "max_xyz_norm": max_xyz_norm(basis)},
        "sequence": "driving_sequence.json", "splat": "neutral.splat", "source": dict(source or {}),
    }
    (out / "avatar.json").write_text(json.dumps(manifest, indent=1))
    return out
