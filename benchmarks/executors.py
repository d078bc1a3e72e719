"""AGORA's per-frame path in torch vs ONNX Runtime (`--executor`), ratios taken in one run.

Both variants do the whole of `animate` (FLAME, deformation branch, UV sampling, lifting; no
rasterisation) for one cached identity with a fresh random expression per call:
  torch  `AgoraGenerator.animate` under torch.inference_mode (models/stylegan2_inference.py)
  onnx   `export.onnx_executor.OnnxAnimator`: FLAME in torch, the rest in ONNX Runtime, row by row
Models: `--demo` the shipped models/demo (64² UV planes, 3,334 Gaussians), `--full` configs/ffhq512.yaml's
generator on the demo head (256² planes, 210,812 Gaussians, random initialisation; the cost of a
frame does not depend on the weights; `cpu_full_size.build`). Each thread count gets its own
ONNX Runtime session (threads = torch's). Calls are interleaved, one each per round; medians over
rounds, the per-round torch/onnx ratio's median and range, and the load average around each table.

    PYTHONPATH=$PWD .venv/bin/python benchmarks/executors.py --demo --full [--rounds 9] [--full-rounds 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch

from agora_core.head import FlameParams

sys.path.insert(0, str(Path(__file__).resolve().parent))


def demo_model():
    from agora_core.bench.bench_setup import bench_identity
    from agora_core.mobile import load_agora_model

    model = load_agora_model(Path(__file__).resolve().parents[1] / "models" / "demo")
    cache, _ = bench_identity(model, 0, 0.7)
    return model.generator.eval().requires_grad_(False), cache


def full_model():
    from cpu_full_size import build

    g, cache, *_ = build()
    return g, cache


def frames(g, n: int, batch: int, seed: int = 1):
    gen = torch.Generator().manual_seed(seed)
    return [FlameParams(expression=0.5 * torch.randn(batch, g.head.num_expr, generator=gen),
                        jaw=0.1 * torch.rand(batch, 3, generator=gen), eyelids=0.3 * torch.rand(batch, 2, generator=gen))
            for _ in range(n)]


def compare(name: str, g, cache, rounds: int, threads: list[int], batches: list[int]) -> None:
    from agora_core.export.onnx_executor import OnnxAnimator

    for t in threads:
        torch.set_num_threads(t)
        start = time.perf_counter()
        onnx = OnnxAnimator(g, cache)
        print(f"{name}, {t} thread(s): export + session {time.perf_counter() - start:.1f} s", flush=True)

        def run_torch(flame):
            with torch.inference_mode():
                return g.animate(cache, flame, noise_mode="const").gaussians.means

        def run_onnx(flame):
            return onnx.animate(flame).means

        for b in batches:
            inputs = frames(g, rounds + 1, b)
            a, o = run_torch(inputs[0]), run_onnx(inputs[0])  # warm-up, and the agreement
            times = {"torch": [], "onnx": []}
            load = os.getloadavg()[0]
            for r in range(1, rounds + 1):
                for key, fn in (("torch", run_torch), ("onnx", run_onnx)):
                    s = time.perf_counter()
                    fn(inputs[r])
                    times[key].append(time.perf_counter() - s)
            ratios = [x / y for x, y in zip(times["torch"], times["onnx"])]
            ms = {k: statistics.median(v) * 1000 / b for k, v in times.items()}
            print(f"  batch {b}: torch {ms['torch']:9.2f} ms/frame  onnx {ms['onnx']:9.2f} ms/frame  "
                  f"torch/onnx {statistics.median(ratios):.2f}× (range {min(ratios):.2f}-{max(ratios):.2f})  "
                  f"max |Δ means| {float((a - o).abs().max()):.1e} m  load {load:.1f} -> {os.getloadavg()[0]:.1f}",
                  flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--demo", action="store_true", help="the shipped models/demo")
    ap.add_argument("--full", action="store_true", help="configs/ffhq512.yaml's generator on the demo head")
    ap.add_argument("--rounds", type=int, default=9, help="rounds at demo scale")
    ap.add_argument("--full-rounds", type=int, default=3, help="rounds at full size")
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    args = ap.parse_args()
    print(f"load average {os.getloadavg()}; cores {os.cpu_count()}; torch {torch.__version__}", flush=True)
    if args.demo:
        compare("demo", *demo_model(), args.rounds, args.threads, [1, 8])
    if args.full:
        compare("full size", *full_model(), args.full_rounds, args.threads, [1])


if __name__ == "__main__":
    main()
