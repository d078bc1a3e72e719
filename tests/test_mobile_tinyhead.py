"""A tiny FLAME-format head and generator shared by the AGORA-M and bench tests.

The head is a curved face patch (a 13×13 vertex grid bulged into a cap, +z front) with smooth
shape / expression / eyelid blendshapes and a jaw on its lower half, so the real `AgoraGenerator`
runs on it in milliseconds on 2 CPU cores. Other test modules import the helpers from here
(`tests/` is on sys.path under pytest's default import mode); the one test below checks the head
itself.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from agora_core.head import FlameParams
from agora_core.head import FlameAssets, HeadModel
from agora_core.models.agora_generator import AgoraGenerator
from agora_core.models.generator_config import GeneratorConfig

R = 0.1  # cap radius, metres
TINY_CONFIG = GeneratorConfig(z_dim=8, w_dim=8, mapping_layers=1, uv_resolution=16, gaussian_grid=12,
                              tap_resolution=8, channel_base=128, channel_max=8, sh_degree=0,
                              expr_cond_dim=6, expr_embed_dim=8, residual_mask="none")


def tiny_head_assets(n: int = 13, num_shape: int = 4, num_expr: int = 6, seed: int = 0) -> FlameAssets:
    """[n²] vertices on a spherical cap; blendshapes are smooth low-frequency fields."""
    rng = np.random.default_rng(seed)
    s = np.linspace(-0.7, 0.7, n)
    x, y = np.meshgrid(s, s[::-1])  # row 0 at the top (y up)
    x, y = x.ravel() * R, y.ravel() * R
    z = np.sqrt(np.maximum(R**2 * 1.2 - x**2 - y**2, 0))
    v = np.stack([x, y, z], axis=1)
    idx = np.arange(n * n).reshape(n, n)
    quads = np.stack([idx[:-1, :-1], idx[1:, :-1], idx[1:, 1:], idx[:-1, 1:]], axis=-1).reshape(-1, 4)
    faces = np.concatenate([quads[:, [0, 1, 2]], quads[:, [0, 2, 3]]])  # counter-clockwise from +z
    uv = np.stack([(x / R + 0.7) / 1.4 * 0.96 + 0.02, (y / R + 0.7) / 1.4 * 0.96 + 0.02], axis=1)

    def fields(k: int, amp: float) -> np.ndarray:  # [V, 3, k] smooth random fields
        freq = rng.normal(size=(k, 2, 3)) * 20.0
        phase = rng.uniform(0, 2 * np.pi, size=(k, 3))
        arg = np.einsum("vd,kdc->vck", v[:, :2], freq) + phase.T[None]
        return amp * np.cos(arg)

    jaw = 1 / (1 + np.exp(y / (0.08 * R)))  # lower half follows the jaw
    weights = np.zeros((n * n, 5))
    weights[:, 0], weights[:, 1], weights[:, 2] = 0.1 * (1 - jaw), 0.9 * (1 - jaw), jaw
    j_reg = np.zeros((5, n * n))
    j_reg[0, idx[-1, n // 2]] = j_reg[1, idx[-1, n // 2]] = 1.0
    j_reg[2, idx[n // 2, n // 2]] = 1.0
    j_reg[3, idx[n // 4, n // 4]] = j_reg[4, idx[n // 4, 3 * n // 4]] = 1.0
    return FlameAssets(
        v_template=v, faces=faces, shapedirs=fields(num_shape, 0.004), exprdirs=fields(num_expr, 0.01),
        posedirs=0.0005 * rng.normal(size=(n * n, 3, 36)), J_regressor=j_reg, weights=weights,
        kintree_table=np.array([[4294967295, 0, 1, 1, 1], [0, 1, 2, 3, 4]]), uv_coords=uv, uv_faces=faces.copy(),
        eyelid_dirs=fields(2, 0.002), model_id="tiny-cap-test",
        extras={"back_head_faces": np.zeros(len(faces), dtype=bool)})


def tiny_head() -> HeadModel:
    return HeadModel(tiny_head_assets())


def tiny_generator(head: HeadModel | None = None, seed: int = 0, **changes) -> AgoraGenerator:
    """The real generator with `TINY_CONFIG` (weights from `seed`), in eval mode."""
    torch.manual_seed(seed)
    return AgoraGenerator(dataclasses.replace(TINY_CONFIG, **changes), head or tiny_head()).eval()


def test_tiny_head_drives_the_generator():
    g = tiny_generator()
    cache = g.identity(torch.randn(2, 8), torch.zeros(2, 25), torch.zeros(2, 4), noise_mode="const")
    frames = FlameParams(expression=torch.randn(2, 6), jaw=torch.tensor([[0.2, 0, 0]] * 2), eyelids=torch.zeros(2, 2))
    out = g.animate(cache, frames, noise_mode="const")
    assert out.gaussians.num_gaussians == g.num_gaussians > 50
    assert torch.isfinite(out.gaussians.means).all()


@pytest.fixture(autouse=True, scope="module")
def single_thread():
    """One intra-op thread: tiny convolutions on 2 shared cores are ~50× slower with two."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
