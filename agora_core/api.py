"""Scripting agora from Python: the functions `agora`'s commands call, under short names.

Nothing here is a second implementation: each function is the one a command runs
(`agora export` -> `load_avatar` + `export`, `agora invert` -> `invert`, `agora reenact` -> `reenact`,
whose frame loop animates with `animate` and draws with `render`). README, "Driving and
exporting", shows them together (examples/api_example.py, run by tests/test_api.py).

    avatar = load_avatar("runs/demo", seed=4)          # or an avatar.pt of `agora invert`
    gaussians = animate(avatar, load_driving("talk.npz").flame())
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Literal

import torch
from torch import Tensor

from agora_core.export.exporters import write_gaussians
from agora_core.export.sources import AvatarSource as Avatar
from agora_core.export.sources import load_avatar_source
from agora_core.gaussians import GaussianSet
from agora_core.head import FlameParams
from agora_core.invert.from_inputs import PTISettings, invert_from_inputs
from agora_core.invert.run import InvertResult
from agora_core.reenact.driving import DrivingSequence
from agora_core.reenact.run import FullAvatar, ReenactResult
from agora_core.reenact.run import reenact as _reenact
from agora_core.render import Camera, rasterize

__all__ = ["Avatar", "DrivingSequence", "PTISettings", "load_avatar", "invert", "load_driving", "demo_driving",
           "demo_views", "animate", "render", "export", "reenact"]


def load_avatar(source: str | Path, seed: int | None = None, truncation: float = 0.7) -> Avatar:
    """An avatar: an `agora invert` avatar.pt, or a run / checkpoint / imported run with `seed`
    (the identity `agora sample --seed N --n 1` draws). Its `.neutral` is what `agora export` writes."""
    return load_avatar_source(source, seed, truncation)


def invert(run: str | Path, out: str | Path, inputs: list[str] | tuple[str, ...] = (), **options) -> InvertResult:
    """`agora invert`: photos / one video (`inputs`) or `dataset=..., index=[...]` views -> `out` (avatar.pt).
    Options as `invert_from_inputs` (settings=PTISettings(...), perceptual_weights=..., ply=..., ...)."""
    return invert_from_inputs(run, out, list(inputs), **options)


def load_driving(path: str | Path, smooth: tuple[int, int] | None = None) -> DrivingSequence:
    """FLAME parameters per frame from a file `agora reenact --params` reads; `smooth` = (window, order)
    of the Savitzky–Golay filter (`--smooth`), None to keep them as they are."""
    sequence = DrivingSequence.load(path)
    return sequence.smoothed(*smooth) if smooth is not None else sequence


def demo_driving(num_frames: int = 48, fps: float = 24.0, seed: int = 0) -> DrivingSequence:
    """The demo's synthetic talking sequence (`agora reenact-demo-params`)."""
    from agora_core.reenact.demo_sequence import make_demo_sequence

    return make_demo_sequence(num_frames, fps, seed)


def demo_views(folder: str | Path, resolution: int, seed: int = 0) -> Path:
    """Views of one synthetic demo-head person to invert (`agora invert-demo-data`): indices 0–2, 3 held out."""
    from agora_core.invert.demo_data import make_demo_identity_dataset

    return make_demo_identity_dataset(folder, resolution=resolution, seed=seed)


def animate(avatar: Avatar, flame: FlameParams | Mapping[str, Tensor], executor: str = "torch",
            precision: str = "float32") -> GaussianSet:
    """The avatar's Gaussians for T frames of FLAME parameters (`DrivingSequence.flame()`), or a dict
    with their keys (expression [T, E], jaw [T, 3], optional eyelids [T, 2], neck [T, 3], eyes [T, 6]):
    batch T, as `agora reenact` animates; a shape there is not used (the avatar's is). `executor` as
    `agora reenact --executor` (torch, onnxruntime, auto), `precision` as `--precision` (float32,
    bfloat16, auto); to animate many batches with ONNX Runtime, build
    `reenact.run.FullAvatar(avatar.generator, avatar.cache, "onnxruntime")` once: each call here
    exports the graph again."""
    if not isinstance(flame, FlameParams):
        flame = FlameParams.from_dict(flame)
    dev = avatar.generator.sample_x_uv.device
    return FullAvatar(avatar.generator, avatar.cache, executor, dev, precision).animate(flame.to(dev))


def render(gaussians: GaussianSet, cameras: Camera, resolution: int) -> Tensor:
    """Images [B, 3, R, R] in [0, 1] on white, as `agora reenact` draws its frames."""
    rgb, _ = rasterize(gaussians, cameras.to(gaussians.device), resolution, resolution, background=1.0)
    return rgb.clamp(0, 1)


def export(gaussians: GaussianSet, out: str | Path, kind: Literal["ply", "splat", "spz"] | None = None,
           sh_degree: int | None = None, frame: int = 0) -> Path:
    """One set of Gaussians (frame `frame` of a batch) as .ply / .splat / .spz (`kind`: from the suffix),
    as `agora export ply|splat|spz` writes them; `sh_degree=3` gives the 62-float INRIA layout."""
    kind = kind or Path(out).suffix.lstrip(".")
    if kind not in ("ply", "splat", "spz"):
        raise ValueError(f"{out}: kind must be ply, splat or spz, got {kind!r}")
    with torch.no_grad():
        return write_gaussians(out, gaussians.select(frame), kind, sh_degree)


def reenact(avatar_file: str | Path, driving: DrivingSequence, out: str | Path, **options) -> ReenactResult:
    """`agora reenact avatar.pt --params ...`: an mp4 of the avatar driven by `driving`
    (options as `reenact.run.reenact`: resolution, mobile=(basis, mlp), batch, device, progress, executor,
    precision)."""
    return _reenact(avatar_file, driving, out, **options)
