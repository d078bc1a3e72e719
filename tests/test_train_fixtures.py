"""Shared pieces of the tests/test_train_*.py modules (no tests here): a tiny dataset, a tiny model
config, a cached demo head, and -- run as a script under torchrun -- the DDP worker of
test_train_loop.py::test_ddp_two_cpu_processes_keep_replicas_identical."""

from __future__ import annotations

import functools
import hashlib
import sys
from pathlib import Path

import cv2
import numpy as np
import torch

from agora_core.data.format import DatasetHeader, DatasetRecord, write_dataset_index
from agora_core.render import sample_ffhq_like_cameras
from agora_core.head.build import build_head as _real_build_head

DEMO_HEAD_ID = "demo-head-v1+mouth"

# A model small enough for a CPU step in ~0.1 s: 16² renders, ~500 Gaussians, 16-channel nets.
TINY_OVERRIDES = {
    "resolution": 16,
    "batch_size": 4,
    "generator.z_dim": 16, "generator.w_dim": 16, "generator.mapping_layers": 1,
    "generator.uv_resolution": 16, "generator.tap_resolution": 8, "generator.gaussian_grid": 24,
    "generator.channel_base": 128, "generator.channel_max": 16, "generator.expr_embed_dim": 16,
    "generator.expr_cond_dim": 10,
    "discriminator.channel_base": 128, "discriminator.channel_max": 16, "discriminator.mapping_layers": 1,
    "discriminator.expr_cond_dim": 10, "discriminator.mbstd_group": 2,
    "loss.start_dual_kimg": 0.004, "loss.r1_interval": 2,
    "num_workers": 0, "metric_kimg": 0.0, "metric_images": 8, "sample_identities": 2, "sample_expressions": 2,
    "sample_kimg": 1000.0, "checkpoint_kimg": 1000.0, "log_kimg": 0.004, "snapshot_steps": 1,
    "ema_kimg": 0.01, "threads": 1,
}


def tiny_config(**overrides):
    from agora_core.run_config import load_config

    return load_config(None, {**TINY_OVERRIDES, **overrides})


def write_tiny_dataset(root: Path, n: int = 8, resolution: int = 16, seed: int = 0, mirrored: bool = False) -> Path:
    """n random images with FFHQ-like cameras and random FLAME parameters of the demo head
    (`mirrored`: with FLAME estimates of the flipped images too, other random ones, for xflip)."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True, exist_ok=True)
    cams = sample_ffhq_like_cameras(n, generator=torch.Generator().manual_seed(seed), radius=1.3).to_label().numpy()

    def random_flame() -> dict[str, np.ndarray]:
        return {"shape": rng.normal(size=20) * 0.5, "expression": rng.normal(size=20) * 0.5,
                "jaw": np.array([abs(rng.normal()) * 0.1, 0, 0]), "neck": np.zeros(3), "eyes": np.zeros(6),
                "eyelids": rng.uniform(0, 0.2, size=2)}

    records = []
    for i in range(n):
        img = (rng.uniform(size=(resolution, resolution, 3)) * 255).astype(np.uint8)
        cv2.imwrite(str(root / "images" / f"{i:08d}.png"), img)
        records.append(DatasetRecord(file=f"images/{i:08d}.png", camera=cams[i], flame=random_flame(), source="test"))
    flips = [random_flame() for _ in range(n)] if mirrored else None
    write_dataset_index(root, DatasetHeader(DEMO_HEAD_ID, resolution, "synthetic"), records, mirrored_flame=flips)
    return root


@functools.lru_cache(maxsize=None)
def _demo_head():
    from agora_core.head.config import HeadConfig

    return _real_build_head(HeadConfig())


def cached_build_head(config):
    """build_head, with the demo head built once per process (it takes ~2 s); tests patch it in."""
    if config.source == "demo" and config.mouth_interior:
        return _demo_head()
    return _real_build_head(config)


def parameter_digest(module: torch.nn.Module) -> str:
    h = hashlib.sha256()
    for name, p in sorted(module.named_parameters()):
        h.update(name.encode())
        h.update(p.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def _ddp_worker(data: str, run: str, out: str) -> None:
    """Under torchrun: train a few steps with DDP (gloo), then write this rank's G/D digests."""
    import os

    import agora_core.train.loop as loop

    built = {}
    real_build = loop.build_models

    def capture(config, head):
        built["G"], built["D"] = real_build(config, head)
        return built["G"], built["D"]

    loop.build_models = capture
    loop.build_head = cached_build_head
    loop.train(tiny_config(total_kimg=0.016), data, run, progress=False, device="cpu")
    rank = os.environ["RANK"]
    Path(out, f"rank{rank}.txt").write_text(f"{parameter_digest(built['G'])} {parameter_digest(built['D'])}")


if __name__ == "__main__":
    _ddp_worker(*sys.argv[1:4])
