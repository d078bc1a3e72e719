"""Cached-identity reenactment benchmark: AGORA vs AGORA-M in one run (paper Tables 1, 7).

The identity branch runs once (both methods cache the avatar); then, per frame of a driving
sequence, each path does all its work, rendering included:

    agora          animate (FLAME, deformation branch, lifting, composition) + rasterize; the per-frame
                   path in torch or ONNX Runtime (`--executor`, export/onnx_executor.py), torch's in
                   float32 or bfloat16 (`--precision`)
    agora_m        f_mlp + blend (eq. 10-11) + rasterize
    render         rasterize of the cached neutral alone
    agora_animate  / agora_m_blend: the same paths without the rasterizer (breakdown)

at batch 1 (latency) and batch 8 (throughput), with warm-up, synchronisation and per-call
statistics (`timing`); the paths are interleaved call by call, so load on a shared machine hits
them alike. The AGORA-M / AGORA speed-up is the ratio of the two medians measured in this one run
on this one device.
"""

from __future__ import annotations

import math
import platform
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from torch import Tensor

from agora_core.bench.timing import PathMemory, Timing, time_interleaved
from agora_core.export.onnx_executor import OnnxAnimator
from agora_core.gaussians import GaussianSet
from agora_core.head import FlameParams
from agora_core.models.agora_generator import AgoraGenerator, IdentityCache
from agora_core.mobile.blendshape_avatar import BlendshapeAvatar
from agora_core.render import Camera, rasterize

PATHS = ("agora", "agora_m", "render", "agora_animate", "agora_m_blend")
MIN_BATCHED_CALLS = 25  # batched paths: at least this many timed calls
DRIVING_FRAMES = 256  # distinct frames of the driving sequence (reused cyclically)


@dataclass(frozen=True)
class BenchConfig:
    frames: int = 200  # timed batch-1 calls (batched paths: frames / batch, at least 25)
    warmup: int = 10  # untimed calls before each timed run
    batch_sizes: tuple[int, ...] = (1, 8)  # latency, throughput
    resolution: int | None = None  # square render side in pixels (None: the model's training resolution)
    seed: int = 0  # seeds the identity and the driving sequence
    truncation_psi: float = 0.7  # identity truncation
    breakdown: bool = True  # also time the paths without rendering


@dataclass
class BenchRow:
    path: str  # one of PATHS
    batch: int  # frames per call
    calls: int  # timed calls
    median_ms: float  # per call
    p90_ms: float  # per call
    mean_ms: float  # per call
    fps: float  # frames per second = batch · 1000 / median_ms
    peak_mb: float  # peak memory during this path's calls (CUDA allocator, or process RSS on CPU)
    working_mb: float  # peak minus memory in use when the timed calls began
    state_mb: float  # tensors this path keeps resident (weights, cache, basis…)


@dataclass
class BenchResult:
    device: str
    rows: list[BenchRow]
    speedup: dict[str, float]  # "batch<b>": agora / agora_m median; "batch<b>_no_render": the same without raster
    model: dict  # source, random_init, gaussians, uv grid, resolution, k, …
    config: dict  # the BenchConfig
    notes: list[str] = field(default_factory=list)

    def row(self, path: str, batch: int) -> BenchRow:
        return next(r for r in self.rows if r.path == path and r.batch == batch)

    def to_dict(self) -> dict:
        return {"device": self.device, "torch": torch.__version__, "threads": torch.get_num_threads(),
                "machine": platform.processor() or platform.machine(), "model": self.model, "config": self.config,
                "results": [asdict(r) for r in self.rows], "speedup": self.speedup, "notes": self.notes}


def _mb(nbytes: float) -> float:
    return nbytes / 2**20


def _nbytes(tensors) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


def driving_sequence(num_expr: int, n: int, seed: int, device: torch.device) -> FlameParams:
    """n frames of expression [n, E], jaw and eyelids as the synthetic data samples them (neck and eyes zero)."""
    from agora_core.data.synthetic import sample_flame

    s = sample_flame(np.random.default_rng([seed, 7]), n, 1, num_expr)
    return FlameParams(expression=s.expression, jaw=s.jaw, eyelids=s.eyelids).to(device)


def state_bytes(generator: AgoraGenerator, cache: IdentityCache, avatar: BlendshapeAvatar) -> dict[str, int]:
    """Resident tensors per path: what a deployment of that path alone would hold."""
    agora = _nbytes(generator.deformation_branch.state_dict().values()) if generator.deformation_branch else 0
    agora += _nbytes(generator.head.buffers()) + _nbytes(b for _, b in generator.named_buffers(recurse=False))
    agora += _nbytes([cache.ws, cache.tap_features, cache.raw_main, cache.shape])
    neutral = _nbytes([avatar.neutral.means, avatar.neutral.log_scales, avatar.neutral.quats, avatar.neutral.sh,
                       avatar.neutral.opacities])
    agora_m = neutral + avatar.basis_bytes + _nbytes(avatar.w.reshape(-1) for _ in [0])
    agora_m += _nbytes(avatar.mlp.state_dict().values()) if avatar.mlp is not None else 0
    return {"agora": agora, "agora_animate": agora, "agora_m": agora_m, "agora_m_blend": agora_m, "render": neutral}


def benchmark_reenactment(generator: AgoraGenerator, cache: IdentityCache, avatar: BlendshapeAvatar, camera: Camera,
                          config: BenchConfig, device: torch.device, model_info: dict | None = None,
                          onnx: OnnxAnimator | None = None, deform_dtype: torch.dtype | None = None) -> BenchResult:
    """Time the paths of the module docstring for every batch size (identity `cache`, batch 1).

    onnx: AGORA's per-frame path in ONNX Runtime (`--executor`), else `generator.animate` with
    `deform_dtype` (`--precision`; the timed calls run inside torch.inference_mode, bench/timing.py)."""
    assert cache.batch_size == 1, cache.batch_size
    assert config.resolution is not None, "resolve BenchConfig.resolution first (run_bench does)"
    res = config.resolution
    camera = camera.to(device)
    driving = driving_sequence(generator.head.num_expr, DRIVING_FRAMES, config.seed, device)

    def render(g: GaussianSet) -> Tensor:
        return rasterize(g, camera, res, res, background=1.0)[0]

    def agora(f: FlameParams) -> GaussianSet:
        if onnx is not None:
            return onnx.animate(f)
        return generator.animate(cache, f, noise_mode="const", deform_dtype=deform_dtype).gaussians

    paths = {
        "agora": lambda f: render(agora(f)),
        "agora_m": lambda f: render(avatar.animate(f)),
        "render": None,  # filled per batch size: the neutral, expanded
        "agora_animate": lambda f: agora(f).means,
        "agora_m_blend": lambda f: avatar.animate(f).means,
    }
    if not config.breakdown:
        paths = {k: v for k, v in paths.items() if k in ("agora", "agora_m", "render")}
    state = state_bytes(generator, cache, avatar)
    rows = []
    for b in config.batch_sizes:
        calls = config.frames if b == 1 else max(math.ceil(config.frames / b), MIN_BATCHED_CALLS)
        batches = []
        for i in range(config.warmup + calls):
            idx = (torch.arange(b, device=device) + i * b) % DRIVING_FRAMES
            batches.append(driving[idx])
        neutral_b = avatar.neutral.map(lambda t: t.expand(b, *t.shape[1:]))
        steps = {name: (lambda i: render(neutral_b)) if name == "render" else (lambda i, fn=fn: fn(batches[i]))
                 for name, fn in paths.items()}
        for name, (timing, memory) in time_interleaved(steps, calls, config.warmup, device, b).items():
            rows.append(_row(name, timing, memory, state[name]))
    speedup = {}
    median = {(r.path, r.batch): r.median_ms for r in rows}
    for b in config.batch_sizes:
        speedup[f"batch{b}"] = median["agora", b] / median["agora_m", b]
        if config.breakdown:
            speedup[f"batch{b}_no_render"] = median["agora_animate", b] / median["agora_m_blend", b]
    dev_name = str(device) + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else "")
    return BenchResult(dev_name, rows, speedup, model_info or {}, asdict(config))


def _row(name: str, timing: Timing, memory: PathMemory, state: int) -> BenchRow:
    return BenchRow(name, timing.batch, len(timing.times_ms), timing.median_ms, timing.p90_ms, timing.mean_ms,
                    timing.fps, _mb(memory.peak), _mb(memory.working), _mb(state))
