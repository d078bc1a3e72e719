"""Shared pieces of the tests/test_export_*.py modules (no tests here): a tiny generator with
non-trivial residuals, its training checkpoint, and AGORA-M files that fit it."""

from __future__ import annotations

from pathlib import Path

import torch

from agora_core.mobile import CoefficientMLP, GaussianBasis
from agora_core.mobile.residuals import RESIDUAL_GROUPS
from agora_core.models.agora_generator import AgoraGenerator
from agora_core.render import orbit_cameras
from agora_core.train.checkpoint import save_checkpoint
from agora_core.run_config import config_to_dict
from test_train_fixtures import cached_build_head, tiny_config


def tiny_generator(seed: int = 0) -> tuple[AgoraGenerator, object]:
    """A tiny G (test_train_fixtures.TINY_OVERRIDES) whose deformation branch produces clearly non-zero
    residuals (not its near-zero initialisation), and its TrainConfig."""
    config = tiny_config()
    torch.manual_seed(seed)
    G = AgoraGenerator(config.generator, cached_build_head(config.head)).eval().requires_grad_(False)
    with torch.no_grad():
        for p in G.deformation_branch.parameters():
            p.add_(0.3 * torch.randn_like(p))
        for name, p in G.named_parameters():
            if name.endswith("noise.strength"):
                p.fill_(0.2)
    return G, config


def write_tiny_checkpoint(folder: Path, G: AgoraGenerator, config) -> Path:
    """A checkpoint in the training format (config dict, G_ema, the `sampling` entry `agora sample` reads)."""
    s = G.head.num_shape
    state = {"config": config_to_dict(config), "G": G.state_dict(), "G_ema": G.state_dict(), "head_model": G.head.model_id,
             "sampling": {"camera": orbit_cameras(torch.zeros(1), torch.zeros(1), 1.3).to_label()[0],
                          "shape_mean": torch.zeros(s), "shape_std": 0.5 * torch.ones(s)}}
    return save_checkpoint(Path(folder) / "kimg000001.pt", state)


def write_random_agora_m(folder: Path, num_gaussians: int, w_dim: int, expr_dim: int, k: int = 4,
                         hidden: int = 16, seed: int = 0) -> tuple[Path, Path]:
    """basis.safetensors (random orthonormal rows per group) and mlp.safetensors (random weights) in the
    documented layouts, for a generator of `num_gaussians` Gaussians and w of size `w_dim`."""
    g = torch.Generator().manual_seed(seed)
    bases = {}
    for grp, d in RESIDUAL_GROUPS.items():
        q, _ = torch.linalg.qr(torch.randn(num_gaussians * d, k, generator=g))
        bases[grp] = q.T.reshape(k, num_gaussians, d).contiguous()
    i = w_dim + expr_dim + 5
    r = lambda *shape: 0.1 * torch.randn(*shape, generator=g)  # noqa: E731
    mlp = CoefficientMLP(w_dim, expr_dim, k, hidden)
    mlp.load_state_dict({"layers.0.weight": r(hidden, i), "layers.0.bias": r(hidden), "layers.1.weight": r(4 * k, hidden),
                         "layers.1.bias": r(4 * k), "input_mean": r(i), "input_std": 1 + torch.rand(i, generator=g)})
    folder = Path(folder)
    return (GaussianBasis.from_blendshapes(bases).save(folder / "basis.safetensors"),
            mlp.save(folder / "mlp.safetensors", train_mse=0.0, val_mse=0.0))
