"""The authors' AGORA-M files (`svd_basis.pt`, `mlp_regressor.pt`) as our basis and regressor.

Both are plain dicts read with `torch.load(weights_only=True)`:
- `svd_basis.pt`: `K`, `G`, and per group a in (xyz, scale, rotation, opacity) `U_a` [K, G·C]
  (right singular vectors, flattened g·C + c, C = 3, 3, 4, 1), `S_a` [K], `c_a` [N, K];
  residuals in their spaces: xyz metres, *linear* scale, their column-normalised quaternions,
  opacity after the activation, no mean-centring.
- `mlp_regressor.pt`: `state_dict` of Linear(567, 256)–LeakyReLU(0.2)–Linear(256, 512)–
  LeakyReLU(0.2)–Linear(512, 4K) (`net.0/2/4`), input [w 512, e 55] without normalisation, output
  [xyz K | scale K | rotation K | opacity K].
They become a `GaussianBasis` whose `extra["attribute_space"]` is "authors" (so
`BlendshapeAvatar` blends in their spaces and applies their constraints) and a `CoefficientMLP`
with hidden layers (256, 512) and identity input normalisation.
"""

from __future__ import annotations

from pathlib import Path

import torch

from agora_core.errors import AgoraError, check_finite, file_error
from agora_core.mobile.basis_file import GaussianBasis
from agora_core.mobile.coefficient_mlp import ANIMATION_DIM, CoefficientMLP
from agora_core.mobile.residuals import RESIDUAL_GROUPS
from agora_core.torch_files import read_torch_file


def _read_dict(path: Path, what: str) -> dict:
    if not path.is_file():
        raise AgoraError(f"{path}: no such file ({what})")
    obj = read_torch_file(path, what, "pass the file from the authors' release")
    if not isinstance(obj, dict):
        raise file_error(path, f"expected the authors' {what} (a dict), found {type(obj).__name__}")
    return obj


def _tensor(path: Path, d: dict, key: str, shape: tuple[int, ...]) -> torch.Tensor:
    value = d.get(key)
    if not isinstance(value, torch.Tensor):
        raise file_error(path, f"missing tensor '{key}'")
    if tuple(value.shape) != shape:
        raise file_error(path, f"'{key}' has shape {tuple(value.shape)}, expected {shape}")
    check_finite(value, path, f"tensor '{key}'")
    return value.float().contiguous()


def read_official_basis(path: str | Path, num_gaussians: int) -> GaussianBasis:
    """`svd_basis.pt` as a `GaussianBasis` for a model of `num_gaussians` Gaussians."""
    path = Path(path)
    d = _read_dict(path, "AGORA-M svd_basis.pt")
    try:
        k, g = int(d["K"]), int(d["G"])
    except (KeyError, TypeError, ValueError):
        raise file_error(path, "missing the integer fields K and G; not an AGORA-M svd_basis.pt") from None
    if g != num_gaussians:
        raise file_error(path, f"a basis for {g} Gaussians, but the imported model has {num_gaussians}")
    basis, singular, explained = {}, {}, {}
    for group, dims in RESIDUAL_GROUPS.items():
        basis[group] = _tensor(path, d, f"U_{group}", (k, g * dims))
        singular[group] = _tensor(path, d, f"S_{group}", (k,))
        energy = singular[group].double().square()
        explained[group] = (energy.cumsum(0) / energy.sum().clamp_min(1e-30)).float()
    n = int(d.get("N_total", 0) or 0)
    extra = {"attribute_space": "authors", "imported_from": str(path.resolve()),
             "explained_variance_of": "the top-K energy (the file holds no total)"}
    return GaussianBasis(basis, singular, explained, g, n=n, seed=int(d.get("id_seed_start", 0) or 0),
                         source_checkpoint=f"{d.get('run_name', '?')} checkpoint {d.get('checkpoint', '?')}",
                         extra=extra)


def read_official_mlp(path: str | Path, w_dim: int, k: int) -> tuple[CoefficientMLP, float]:
    """`mlp_regressor.pt` as a `CoefficientMLP` (hidden layers from the file, no input normalisation),
    and the validation loss the file records (NaN when absent)."""
    path = Path(path)
    d = _read_dict(path, "AGORA-M mlp_regressor.pt")
    state = d.get("state_dict")
    if not isinstance(state, dict):
        raise file_error(path, "missing 'state_dict'; not an AGORA-M mlp_regressor.pt")
    names = sorted({int(key.split(".")[1]) for key in state if key.startswith("net.") and key.endswith(".weight")})
    if len(names) < 2:
        raise file_error(path, f"expected linear layers net.0, net.2, …; found {sorted(state)[:6]}")
    weights = [state[f"net.{i}.weight"] for i in names]
    in_dim, out_dim = int(weights[0].shape[1]), int(weights[-1].shape[0])
    if out_dim != 4 * k:
        raise file_error(path, f"the regressor predicts {out_dim} coefficients, the basis needs 4·K = {4 * k}")
    expr_dim = in_dim - w_dim - ANIMATION_DIM
    if expr_dim < 0:
        raise file_error(path, f"the regressor takes {in_dim} inputs, fewer than w_dim + 5 = {w_dim + 5}")
    hidden = tuple(int(w.shape[0]) for w in weights[:-1])
    mlp = CoefficientMLP(w_dim, expr_dim, k, hidden)
    ours = {}
    for j, i in enumerate(names):
        ours[f"layers.{j}.weight"] = _tensor(path, state, f"net.{i}.weight", tuple(mlp.layers[j].weight.shape))
        ours[f"layers.{j}.bias"] = _tensor(path, state, f"net.{i}.bias", tuple(mlp.layers[j].bias.shape))
    ours["input_mean"], ours["input_std"] = mlp.input_mean.clone(), mlp.input_std.clone()
    mlp.load_state_dict(ours)
    try:
        val_loss = float(d.get("val_loss", float("nan")))
    except (TypeError, ValueError):
        val_loss = float("nan")
    return mlp.eval(), val_loss
