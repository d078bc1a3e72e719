"""AGORA and AGORA-M per frame on a CPU at full size (issue 16 items 2-3), ratios taken in one run.

Model: `configs/ffhq512.yaml`'s generator (256² UV planes, 64² tap, UV grid 512) on the demo head
with its mouth (210,812 Gaussians), random initialisation (the cost of a frame does not depend on
the weights); one identity, cached once; AGORA-M of that identity with K = 64 random blendshapes
and `agora bench`'s regressor shape (`bench.bench_setup`). Per frame a fresh random expression.

Part 1, rasterisation excluded (ms per frame, batch 1):
  previous   `animate` under torch.no_grad: the reference layers, i.e. the code before the inference path
  inference  `animate` under torch.inference_mode: models/stylegan2_inference.py (same values)
  onnx       FLAME in torch + the exported per-frame graph (export/onnx_export.py) in ONNX Runtime
  agora_m    regressor + blend (eq. 10-11)
  agora_m_int16, agora_m_int8  the same with the basis in fixed point (`BlendshapeAvatar(basis_format=...)`)
Part 2, end to end at 512² (animate + `rasterize`, numba backend, frontal FLAME camera), batch 1
latency and batch 8 throughput, AGORA (inference path) vs AGORA-M (each basis format). Random weights give splats of
random size and opacity, so the rendered splats are the demo head's surface splats
(`export.demo_avatar.surface_gaussians` at the same UV samples: flat, 0.6 texel, opaque) moved to the
means each path computed: both paths pay the rasteriser for a head's worth of realistic splats.
Part 3 (once, 1 thread): bfloat16 deformation branch vs float32, PSNR of the 512² render of the
generator's own Gaussians, and its time (bf16 runs emulated on CPUs without bf16 units).

Every variant runs once per round, interleaved, at 1 then 2 threads; medians over rounds and the
per-round ratio's median and range are printed, with the load average before and after.

    PYTHONPATH=$PWD .venv/bin/python benchmarks/cpu_full_size.py [--rounds 3] [--skip-onnx] [--skip-batch8]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))


def build(seed: int = 0):
    """Generator (ffhq512 architecture, demo head), its cached identity, AGORA-M avatars {basis format:
    avatar}, splats, camera."""
    from render import demo_head_splats

    from agora_core.bench.bench_setup import random_basis, random_regressor
    from agora_core.head import demo_head_model
    from agora_core.models import AgoraGenerator, GeneratorConfig
    from agora_core.mobile.blendshape_avatar import BlendshapeAvatar
    from agora_core.render import FLAME_CAMERA_RADIUS, orbit_cameras

    torch.manual_seed(seed)
    head = demo_head_model().eval()
    g = AgoraGenerator(GeneratorConfig(gaussian_grid=512), head).eval().requires_grad_(False)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        cache = g.identity(torch.randn(1, 512, generator=gen), torch.zeros(1, 25), 0.5 * torch.randn(1, head.num_shape,
                           generator=gen), noise_mode="const")
        basis = random_basis(g.num_gaussians, 64, seed)
        avatar = BlendshapeAvatar.from_generator(g, cache, basis,
                                                 random_regressor(g.config.w_dim, g.config.expr_cond_dim, 64, 256, seed))
        avatars = {"float32": avatar} | {fmt: BlendshapeAvatar(avatar.neutral, basis, avatar.mlp, avatar.w, basis_format=fmt)
                                         for fmt in ("int16", "int8")}
    splats = demo_head_splats(512, 1)
    assert splats.num_gaussians == g.num_gaussians, (splats.num_gaussians, g.num_gaussians)
    camera = orbit_cameras(torch.zeros(1), torch.zeros(1), radius=FLAME_CAMERA_RADIUS)
    return g, cache, avatars, splats, camera


def frames(g, n: int, batch: int, seed: int = 1):
    """n driving frames (expression, jaw, eyelids) of `batch` rows each."""
    gen = torch.Generator().manual_seed(seed)
    e = g.head.num_expr
    return [(0.5 * torch.randn(batch, e, generator=gen), 0.1 * torch.rand(batch, 3, generator=gen),
             0.3 * torch.rand(batch, 2, generator=gen)) for _ in range(n)]


def _frame(expression, jaw, eyelids):
    """One batch of driving frames as the generator and AGORA-M take them."""
    from agora_core.head import FlameParams

    return FlameParams(expression=expression, jaw=jaw, eyelids=eyelids)


def realistic(splats, means):
    """The surface splats (module docstring) at `means` [B, N, 3]."""
    b = means.shape[0]
    return dataclasses.replace(splats.map(lambda t: t.expand(b, *t.shape[1:])), means=means)


def onnx_runner(g, cache, threads: int, folder: Path):
    """FLAME + the exported per-frame graph in ONNX Runtime: frame -> means [1, N, 3]."""
    import onnxruntime as ort

    from agora_core.export.onnx_export import export_deformation_onnx, frame_inputs

    path = folder / "deform.onnx"
    if not path.exists():
        export_deformation_onnx(g, cache, path)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
    session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])

    def run(expression, jaw, eyelids):
        with torch.no_grad():
            inputs = frame_inputs(g, cache, _frame(expression, jaw, eyelids)).as_numpy()
        return torch.from_numpy(session.run(["means"], inputs)[0])

    return run


def interleaved(variants: dict, inputs: list, rounds: int) -> dict[str, list[float]]:
    """Seconds per call of each variant, one call each per round, in turn (inputs cycle per round)."""
    times = {name: [] for name in variants}
    for fn in variants.values():  # warm-up (compiles numba kernels, fills allocator caches)
        fn(*inputs[0])
    for r in range(rounds):
        for name, fn in variants.items():
            start = time.perf_counter()
            fn(*inputs[r % len(inputs)])
            times[name].append(time.perf_counter() - start)
    return times


def report(title: str, times: dict[str, list[float]], baseline: str, per: int = 1) -> None:
    print(f"  {title}")
    for name, ts in times.items():
        line = f"    {name:<22} {statistics.median(ts) * 1000 / per:9.1f} ms/frame"
        if name != baseline:
            ratios = [b / t for b, t in zip(times[baseline], ts)]
            line += f"   {baseline}/{name} {statistics.median(ratios):5.2f}× (range {min(ratios):.2f}-{max(ratios):.2f})"
        print(line, flush=True)


def part1(g, cache, avatars, rounds: int, threads: int, onnx_folder: Path | None) -> None:
    inputs = frames(g, rounds, 1)

    def previous(e, j, l):
        with torch.no_grad():
            return g.animate(cache, _frame(e, j, l), noise_mode="const").gaussians.means

    def inference(e, j, l):
        with torch.inference_mode():
            return g.animate(cache, _frame(e, j, l), noise_mode="const").gaussians.means

    def agora_m(e, j, l, avatar=avatars["float32"]):
        with torch.inference_mode():
            return avatar.animate(_frame(e, j, l)).means

    variants = {"previous": previous, "inference": inference}
    if onnx_folder is not None:
        variants["onnx"] = onnx_runner(g, cache, threads, onnx_folder)
    variants["agora_m"] = agora_m
    for fmt in ("int16", "int8"):
        variants[f"agora_m_{fmt}"] = lambda e, j, l, a=avatars[fmt]: agora_m(e, j, l, a)
    with torch.inference_mode():
        a, b = previous(*inputs[0]), inference(*inputs[0])
    print(f"  inference vs previous means: max |Δ| {float((a - b).abs().max()):.2e} m", flush=True)
    if onnx_folder is not None:
        print(f"  onnx vs previous means: max |Δ| {float((variants['onnx'](*inputs[0]) - a).abs().max()):.2e} m")
    report("rasterisation excluded, batch 1", interleaved(variants, inputs, rounds), "previous")


def part2(g, cache, avatars, splats, camera, rounds: int, batches: tuple[int, ...]) -> None:
    from agora_core.render import rasterize

    def agora(e, j, l):
        with torch.inference_mode():
            means = g.animate(cache, _frame(e, j, l), noise_mode="const").gaussians.means
            return rasterize(realistic(splats, means), camera, 512, 512, background=1.0)[0]

    def agora_m(e, j, l, avatar=avatars["float32"]):
        with torch.inference_mode():
            return rasterize(realistic(splats, avatar.animate(_frame(e, j, l)).means), camera, 512, 512, background=1.0)[0]

    for b in batches:
        variants = {"agora": agora, "agora_m": agora_m} | {
            f"agora_m_{fmt}": (lambda e, j, l, a=avatars[fmt]: agora_m(e, j, l, a)) for fmt in ("int16", "int8")}
        times = interleaved(variants, frames(g, rounds, b), rounds)
        report(f"end to end at 512², batch {b} (ms per frame = call / {b}; FPS = 1000 / that)", times, "agora", per=b)


def part3(g, cache, splats, camera) -> None:
    from agora_core.devices import cpu_has_bf16_units
    from agora_core.render import rasterize

    e, j, l = frames(g, 1, 1, seed=5)[0]
    out, spent = {}, {}
    for name, dtype in (("float32", None), ("bfloat16", torch.bfloat16)):
        with torch.inference_mode():
            start = time.perf_counter()
            gaussians = g.animate(cache, _frame(e, j, l), noise_mode="const", deform_dtype=dtype).gaussians
            spent[name] = time.perf_counter() - start
            out[name] = rasterize(gaussians, camera, 512, 512, background=1.0)[0]
    mse = float((out["float32"] - out["bfloat16"]).square().mean())
    psnr = float("inf") if mse == 0 else 10 * torch.log10(torch.tensor(1.0 / mse)).item()
    print(f"  bf16 units on this CPU: {cpu_has_bf16_units()} (torch capability {torch.backends.cpu.get_cpu_capability()})")
    print(f"  bfloat16 deformation branch: PSNR of the 512² render vs float32 {psnr:.1f} dB; "
          f"animate {spent['bfloat16'] * 1000:.0f} ms vs {spent['float32'] * 1000:.0f} ms float32 (one frame each)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--skip-onnx", action="store_true")
    ap.add_argument("--skip-batch8", action="store_true")
    ap.add_argument("--skip-bf16", action="store_true")
    args = ap.parse_args()
    print(f"load average before: {os.getloadavg()}; cores {os.cpu_count()}; torch {torch.__version__}, "
          f"capability {torch.backends.cpu.get_cpu_capability()}", flush=True)
    start = time.perf_counter()
    g, cache, avatars, splats, camera = build()
    print(f"built in {time.perf_counter() - start:.0f} s: {g.num_gaussians:,} Gaussians", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        for threads in args.threads:
            torch.set_num_threads(threads)
            print(f"threads {threads}", flush=True)
            part1(g, cache, avatars, args.rounds, threads, None if args.skip_onnx else Path(tmp))
            part2(g, cache, avatars, splats, camera, args.rounds, (1,) if args.skip_batch8 else (1, 8))
    if not args.skip_bf16:
        torch.set_num_threads(1)
        print("threads 1, bfloat16", flush=True)
        part3(g, cache, splats, camera)
    print(f"load average after: {os.getloadavg()}; total {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
