"""The coefficient regressor f_mlp(w, ψ, θ) → (c_1 … c_K per group) (paper sec. 3.7, eq. 10).

Two linear layers with a LeakyReLU(0.2) between them ("a shallow MLP with two linear layers"),
on standardised inputs x = [w (w_dim), ψ (expr_dim), jaw (3), eyelids (2)]; the output is
[xyz K | scale K | rotation K | opacity K] raw coefficients, in the order of `RESIDUAL_GROUPS`.
Conditioning on w makes deformations appearance-aware (sec. 3.7).

`mlp.safetensors` (docs/architecture.md "AGORA-M files"): `layers.0.weight [H, I]`,
`layers.0.bias [H]`, `layers.1.weight [4K, H]`, `layers.1.bias [4K]`, `input_mean [I]`,
`input_std [I]`; metadata `format=agora-mlp`, `format_version=1`, `k`, `hidden`, `w_dim`,
`train_mse`, `val_mse`.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from agora_core.errors import file_error
from agora_core.mobile.files import load_tensors, metadata_int, save_tensors
from agora_core.mobile.residuals import RESIDUAL_GROUPS

FORMAT_NAME = "agora-mlp"
FORMAT_VERSION = 1
WRITER = "agora fit-mlp"
NEGATIVE_SLOPE = 0.2
ANIMATION_DIM = 5  # jaw 3 + eyelids 2 after the expression coefficients


class CoefficientMLP(nn.Module):
    """f_mlp (eq. 10): x [B, I] -> coefficients [B, 4K].

    Args:
        w_dim: size of w; I = w_dim + expr_dim + 5.
        expr_dim: expression coefficients in the input (the generator's expr_cond_dim).
        k: components per group.
        hidden: H, or the widths of several hidden layers (the authors' regressor: (256, 512)).
    """

    def __init__(self, w_dim: int, expr_dim: int, k: int, hidden: int | tuple[int, ...] = 256):
        super().__init__()
        self.hidden_sizes = (int(hidden),) if isinstance(hidden, int) else tuple(int(h) for h in hidden)
        assert self.hidden_sizes and min(self.hidden_sizes) > 0, hidden
        self.w_dim, self.expr_dim, self.k, self.hidden = w_dim, expr_dim, k, self.hidden_sizes[0]
        self.in_features = w_dim + expr_dim + ANIMATION_DIM
        widths = [self.in_features, *self.hidden_sizes, len(RESIDUAL_GROUPS) * k]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(widths[:-1], widths[1:]))
        self.register_buffer("input_mean", torch.zeros(self.in_features))
        self.register_buffer("input_std", torch.ones(self.in_features))

    def forward(self, x: Tensor) -> Tensor:
        assert x.ndim == 2 and x.shape[1] == self.in_features, (x.shape, self.in_features)
        h = (x - self.input_mean) / self.input_std
        for layer in self.layers[:-1]:
            h = F.leaky_relu(layer(h), NEGATIVE_SLOPE)
        return self.layers[-1](h)

    def coefficients(self, x: Tensor) -> dict[str, Tensor]:
        """{group: [B, K]} (eq. 10) from regressor inputs x [B, I]."""
        return split_groups(self(x), self.k)

    def set_input_normalisation(self, inputs: Tensor) -> None:
        """Standardise with the mean/std of training inputs [N, I] (constant features: std 1)."""
        std = inputs.std(dim=0)
        self.input_mean.copy_(inputs.mean(dim=0))
        self.input_std.copy_(torch.where(std > 1e-6, std, torch.ones_like(std)))

    @torch.no_grad()
    def fold_output_scale(self, scale: Tensor) -> None:
        """Make a net trained on targets / scale [4K] predict raw targets (last layer rescaled)."""
        self.layers[-1].weight.mul_(scale[:, None])
        self.layers[-1].bias.mul_(scale)

    # --- file ---------------------------------------------------------------------------------------
    def save(self, path: str | Path, train_mse: float, val_mse: float, extra: dict | None = None) -> Path:
        tensors = {k: v for k, v in self.state_dict().items()}
        metadata = {**(extra or {}), "format": FORMAT_NAME, "format_version": FORMAT_VERSION, "k": self.k,
                    "hidden": ",".join(map(str, self.hidden_sizes)), "w_dim": self.w_dim, "expr_dim": self.expr_dim,
                    "train_mse": repr(float(train_mse)), "val_mse": repr(float(val_mse))}
        return save_tensors(path, tensors, metadata)

    @staticmethod
    def load(path: str | Path) -> tuple["CoefficientMLP", dict[str, str]]:
        """Read and check an `mlp.safetensors`; returns (model in eval mode, metadata)."""
        keys = ["layers.0.weight", "layers.0.bias", "layers.1.weight", "layers.1.bias", "input_mean", "input_std"]
        tensors, meta = load_tensors(path, FORMAT_NAME, FORMAT_VERSION, keys, WRITER)
        k, w_dim = (metadata_int(path, meta, key) for key in ("k", "w_dim"))
        try:  # "256", or "256,512" for several hidden layers
            hidden = tuple(int(h) for h in str(meta.get("hidden", "")).split(","))
        except ValueError:
            raise file_error(path, f"metadata field 'hidden' is not a list of integers ({meta.get('hidden')!r})") from None
        if not hidden or min(hidden) < 1 or len(hidden) > 8:
            raise file_error(path, f"metadata field 'hidden' is not a list of positive layer widths ({meta.get('hidden')!r})")
        missing = [f"layers.{i}.{p}" for i in range(len(hidden) + 1) for p in ("weight", "bias")
                   if f"layers.{i}.{p}" not in tensors]
        if missing:
            raise file_error(path, f"missing tensors {missing} for hidden layers {list(hidden)}; the file is damaged")
        in_features = tensors["layers.0.weight"].shape[1] if tensors["layers.0.weight"].ndim == 2 else -1
        expr_dim = in_features - w_dim - ANIMATION_DIM
        if expr_dim < 0:
            raise file_error(path, f"layers.0.weight has {in_features} inputs, fewer than w_dim + 5 = {w_dim + 5}")
        model = CoefficientMLP(w_dim, expr_dim, k, hidden)
        expected = {name: tuple(t.shape) for name, t in model.state_dict().items()}
        for name, shape in expected.items():
            if tuple(tensors[name].shape) != shape:
                raise file_error(path, f"{name} has shape {tuple(tensors[name].shape)}, expected {shape} "
                                       f"for k={k}, hidden={list(hidden)}, w_dim={w_dim}; the file is damaged")
        model.load_state_dict({name: tensors[name].float() for name in expected})
        return model.eval(), meta


def split_groups(flat: Tensor, k: int) -> dict[str, Tensor]:
    """[B, 4K] -> {group: [B, K]} in `RESIDUAL_GROUPS` order."""
    assert flat.shape[-1] == len(RESIDUAL_GROUPS) * k, (flat.shape, k)
    return {g: flat[..., i * k:(i + 1) * k] for i, g in enumerate(RESIDUAL_GROUPS)}


def join_groups(coefficients: dict[str, Tensor]) -> Tensor:
    """{group: [B, K]} -> [B, 4K]."""
    return torch.cat([coefficients[g] for g in RESIDUAL_GROUPS], dim=-1)
