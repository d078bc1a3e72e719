"""Shared by the invert/reenact tests: a tiny untrained base checkpoint, a demo-identity dataset
and a quickly inverted avatar, each built once per test session (cached, in a temp folder)."""

from __future__ import annotations

import functools
import tempfile
from pathlib import Path

import torch

from agora_core.models import AgoraGenerator, GeneratorConfig

RES = 32  # render resolution of every invert/reenact test
# A tiny generator: UV planes 16², 64² … 8² tap, ≤ 32 channels, ~850 Gaussians on the demo head.
TINY = GeneratorConfig(z_dim=32, w_dim=32, mapping_layers=2, uv_resolution=16, gaussian_grid=32, tap_resolution=8,
                       channel_base=256, channel_max=32, sh_degree=0, expr_embed_dim=32)


@functools.lru_cache(maxsize=1)
def workdir() -> Path:
    return Path(tempfile.mkdtemp(prefix="agora-invert-tests-"))


def write_checkpoint(path: Path, generator: GeneratorConfig = TINY, head_model: str | None = None,
                     weights_of: GeneratorConfig | None = None, seed: int = 0) -> Path:
    """A training checkpoint (train.checkpoint format) of an untrained G on the demo head.

    `head_model` overrides the stored head id; `weights_of` stores weights of another architecture."""
    from agora_core.train.checkpoint import save_checkpoint
    from agora_core.head.config import HeadConfig
    from agora_core.run_config import TrainConfig, config_to_dict

    cfg = TrainConfig(generator=generator, resolution=RES, head=HeadConfig(source="demo"))
    head = _demo_head()
    torch.manual_seed(seed)
    G = AgoraGenerator(weights_of or generator, head)
    return save_checkpoint(path, {"G": G.state_dict(), "G_ema": G.state_dict(), "config": config_to_dict(cfg),
                                  "head_model": head_model or head.model_id})


@functools.lru_cache(maxsize=1)
def _demo_head():
    from agora_core.head.build import build_head
    from agora_core.head.config import HeadConfig

    return build_head(HeadConfig(source="demo"))


@functools.lru_cache(maxsize=1)
def tiny_checkpoint() -> Path:
    return write_checkpoint(workdir() / "base.pt")


@functools.lru_cache(maxsize=1)
def demo_dataset() -> Path:
    """Four 32² views of one held-out demo identity (0-2 to invert, 3 held out)."""
    from agora_core.invert.demo_data import make_demo_identity_dataset

    return make_demo_identity_dataset(workdir() / "demo_identity", resolution=RES, seed=11)


@functools.lru_cache(maxsize=1)
def quick_avatar() -> Path:
    """An avatar from a few PTI steps (for the reenact and file tests, not for quality)."""
    from agora_core.invert.checkpoint_io import load_base_generator
    from agora_core.invert.pti import PTIConfig
    from agora_core.invert.run import invert
    from agora_core.invert.targets import target_from_dataset

    base = load_base_generator(tiny_checkpoint())
    target = target_from_dataset(demo_dataset(), [0], base.generator.head, RES)
    out = workdir() / "quick" / "avatar.pt"
    invert(base, target, out, PTIConfig(w_steps=1, g_steps=1, w_avg_samples=64), progress=False)
    return out


def share_smirk(monkeypatch) -> None:
    """Let every `SmirkEstimator.from_asset(SMIRK_FIXTURE)` return one cached estimator (building
    three timm backbones per CLI call would dominate these tests; loading is tested in face/)."""
    from face_helpers import SMIRK_FIXTURE, smirk_estimator

    from agora_core.face.smirk import SmirkEstimator

    def from_asset(cls, explicit=None, device="cpu"):
        assert Path(explicit) == SMIRK_FIXTURE, explicit
        return smirk_estimator()

    monkeypatch.setattr(SmirkEstimator, "from_asset", classmethod(from_asset))
