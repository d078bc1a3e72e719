"""Readers (and, for tests and demos, writers) of the AGORA-M files, plus a reference blend (eq. 9-11).

Formats (docs/architecture.md, "AGORA-M files"):
- `basis.safetensors`: per group g in {xyz, scale, rotation, opacity}: `g.basis [K, M·D_g]` (rows
  orthonormal), `g.singular_values [K]`, `g.explained_variance [K]`; metadata `format=agora-basis`,
  `format_version=1`, `n`, `k`, `num_gaussians`, `source_checkpoint`, `seed`.
- `mlp.safetensors`: `layers.0.weight [H, I]`, `layers.0.bias [H]`, `layers.1.weight [4K, H]`,
  `layers.1.bias [4K]`, `input_mean [I]`, `input_std [I]`; LeakyReLU(0.2) between; input
  [w, expression 50, jaw 3, eyelids 2]; output [xyz K | scale K | rotation K | opacity K];
  metadata `format=agora-mlp`, `format_version=1`, `k`, `hidden`, `w_dim`, `train_mse`, `val_mse`.

Residual spaces: xyz metres, scale = log-scale, rotation = wxyz quaternion renormalised after
blending, opacity post-sigmoid clamped to [0, 1] after blending. Colour is not animated.

The export stage reads the files itself (stages meet through files, docs/architecture.md); the runtime
reference of eq. 11 is `agora_core.models.blendshape_avatar.BlendshapeAvatar`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from torch import Tensor

from agora_core.errors import AgoraError, check_finite
from agora_core.mobile.files import save_tensors

GROUPS = ("xyz", "scale", "rotation", "opacity")
GROUP_DIMS = {"xyz": 3, "scale": 3, "rotation": 4, "opacity": 1}
PARAM_DIMS = {"expression": 50, "jaw": 3, "eyelids": 2}
NUM_PARAMS = sum(PARAM_DIMS.values())  # 55: the authors' web-demo parameter vector
FORMAT_VERSION = "1"


@dataclass
class Basis:
    """Per-group blendshape bases: `bases[g]` [K, M, D_g] (rows orthonormal over M·D_g)."""

    bases: dict[str, Tensor]
    singular_values: dict[str, Tensor]
    metadata: dict[str, str]

    @property
    def k(self) -> int:
        return self.bases["xyz"].shape[0]

    @property
    def num_gaussians(self) -> int:
        return self.bases["xyz"].shape[1]


@dataclass
class CoefficientMlp:
    """f_mlp (eq. 10): c = W1 · leaky(W0 · (x − mean) / std + b0) + b1, x = [w, ψ[:expr_dim], jaw, eyelids]."""

    weight0: Tensor  # [H, I]
    bias0: Tensor  # [H]
    weight1: Tensor  # [4K, H]
    bias1: Tensor  # [4K]
    input_mean: Tensor  # [I]
    input_std: Tensor  # [I]
    metadata: dict[str, str]
    w_dim: int  # I = w_dim + expr_dim + 5

    @property
    def k(self) -> int:
        return self.weight1.shape[0] // 4

    @property
    def hidden(self) -> int:
        return self.weight0.shape[0]

    @property
    def expr_dim(self) -> int:
        """Expression coefficients in the input (the generator's expr_cond_dim, 50 for the paper)."""
        return self.weight0.shape[1] - self.w_dim - 5


def _metadata(path: Path, expected_format: str) -> dict[str, str]:
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except (SafetensorError, OSError, ValueError, RuntimeError) as err:  # truncated, empty, not safetensors
        raise AgoraError(f"{path}: not a readable safetensors file ({err})") from None
    if meta.get("format") != expected_format:
        raise AgoraError(f"{path}: not an {expected_format} file (metadata format={meta.get('format')!r})")
    if meta.get("format_version") != FORMAT_VERSION:
        raise AgoraError(f"{path}: {expected_format} format_version {meta.get('format_version')!r} not "
                         f"supported (this agora reads {FORMAT_VERSION})")
    return meta


def _tensors(path: Path) -> dict[str, Tensor]:
    try:
        with safe_open(str(path), framework="pt") as f:
            tensors = {k: f.get_tensor(k).float() for k in f.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as err:
        raise AgoraError(f"{path}: not a readable safetensors file ({err})") from None
    check_finite(tensors, path, "tensor")
    return tensors


def _readable(path: str | Path, flag: str) -> Path:
    path = Path(path)
    if not path.is_file():
        raise AgoraError(f"{flag} {path}: file not found")
    return path


def read_basis(path: str | Path) -> Basis:
    """Load `basis.safetensors` (checks every group's shape against the metadata)."""
    path = _readable(path, "--basis")
    meta = _metadata(path, "agora-basis")
    t = _tensors(path)
    bases, svals = {}, {}
    for g in GROUPS:
        if f"{g}.basis" not in t:
            raise AgoraError(f"{path}: missing tensor {g}.basis")
        b = t[f"{g}.basis"]
        d = GROUP_DIMS[g]
        if b.ndim != 2 or b.shape[1] % d:
            raise AgoraError(f"{path}: {g}.basis has shape {tuple(b.shape)}, expected [K, M·{d}]")
        bases[g] = b.reshape(b.shape[0], -1, d)
        svals[g] = t.get(f"{g}.singular_values", torch.ones(b.shape[0]))
    shapes = {g: tuple(b.shape[:2]) for g, b in bases.items()}
    if len(set(shapes.values())) != 1:
        raise AgoraError(f"{path}: groups disagree on [K, M]: {shapes}")
    if meta.get("attribute_space", "paper") != "paper":
        raise AgoraError(f"{path}: a basis in the authors' attribute spaces (imported); the web viewer blends "
                         "log-scales and unit quaternions, so it cannot show it yet")
    return Basis(bases, svals, meta)


def read_mlp(path: str | Path) -> CoefficientMlp:
    """Load `mlp.safetensors`."""
    path = _readable(path, "--mlp")
    meta = _metadata(path, "agora-mlp")
    t = _tensors(path)
    names = ("layers.0.weight", "layers.0.bias", "layers.1.weight", "layers.1.bias", "input_mean", "input_std")
    missing = [n for n in names if n not in t]
    if missing:
        raise AgoraError(f"{path}: missing tensors {missing}")
    if "layers.2.weight" in t:
        raise AgoraError(f"{path}: a regressor with several hidden layers (e.g. imported from the authors' "
                         "release); the web viewer runs one hidden layer, so it cannot use it yet")
    try:
        w_dim = int(meta["w_dim"])
    except (KeyError, ValueError):
        raise AgoraError(f"{path}: metadata w_dim missing or not an integer; re-create it with `agora fit-mlp`") from None
    mlp = CoefficientMlp(*(t[n] for n in names), metadata=meta, w_dim=w_dim)
    if mlp.weight1.shape[0] % 4 or mlp.weight1.shape[1] != mlp.hidden or mlp.expr_dim < 0 or mlp.expr_dim > 50:
        raise AgoraError(f"{path}: layer shapes {tuple(mlp.weight0.shape)}, {tuple(mlp.weight1.shape)} "
                         f"do not form [w ({w_dim}) + ψ (≤ 50) + 5] -> H -> 4K")
    return mlp


def check_compatible(basis: Basis, mlp: CoefficientMlp, num_gaussians: int, w_dim: int, where: str) -> None:
    """The basis, the MLP and the avatar must agree on K, M and w_dim (one line naming what differs)."""
    if basis.k != mlp.k:
        raise AgoraError(f"--basis has K={basis.k} components but --mlp predicts K={mlp.k}; use files "
                         f"from the same extract-basis / fit-mlp run")
    if basis.num_gaussians != num_gaussians:
        raise AgoraError(f"--basis is for {basis.num_gaussians} Gaussians but {where} has {num_gaussians}; "
                         f"extract the basis from the same checkpoint")
    if mlp.w_dim != w_dim:
        raise AgoraError(f"--mlp expects w of size {mlp.w_dim} but {where} has w of size {w_dim}")


def write_basis(path: str | Path, bases: dict[str, Tensor], metadata: dict[str, str] | None = None) -> Path:
    """Write `bases[g]` [K, M, D_g] in the `basis.safetensors` layout (tests, demos)."""
    k, m = bases["xyz"].shape[:2]
    tensors = {}
    for g in GROUPS:
        flat = bases[g].reshape(k, -1).float().contiguous()
        tensors[f"{g}.basis"] = flat
        tensors[f"{g}.singular_values"] = torch.ones(k)
        tensors[f"{g}.explained_variance"] = torch.linspace(1.0 / k, 1.0, k)
    meta = {"format": "agora-basis", "format_version": FORMAT_VERSION, "n": "0", "k": str(k),
            "num_gaussians": str(m), "source_checkpoint": "", "seed": "0", **(metadata or {})}
    return save_tensors(path, tensors, meta)


def write_mlp(path: str | Path, mlp: CoefficientMlp) -> Path:
    """Write a `CoefficientMlp` in the `mlp.safetensors` layout (tests, demos)."""
    tensors = {"layers.0.weight": mlp.weight0, "layers.0.bias": mlp.bias0, "layers.1.weight": mlp.weight1,
               "layers.1.bias": mlp.bias1, "input_mean": mlp.input_mean, "input_std": mlp.input_std}
    meta = {"format": "agora-mlp", "format_version": FORMAT_VERSION, "k": str(mlp.k), "hidden": str(mlp.hidden),
            "w_dim": str(mlp.w_dim), "expr_dim": str(mlp.expr_dim), "train_mse": "0", "val_mse": "0", **mlp.metadata}
    return save_tensors(path, {k: v.float() for k, v in tensors.items()}, meta)
