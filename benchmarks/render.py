"""CPU rasterizer speed and memory: ms per frame (forward, forward+backward) and peak memory.

    python benchmarks/render.py            # the full table, one subprocess per configuration
    python benchmarks/render.py --quick    # a few small configurations
    python benchmarks/render.py --tiled    # serial vs tiled (parallel) kernels, 1 and 2 threads

`--tiled` (`compare_tiled`): the compositing step (`composite_numba`: depth sort, kernels and
tensor conversions; the projection is done once, outside the timings) with the serial kernels vs
the tiled parallel ones, at 32², 64², 256² and 512², on splats sampled on the demo head's surface at the
paper configs' density (the generator's UV grid with the back of the head excluded: grid 48 for
the 32² demo config, 128 for the shipped 64² demo model (batch 8, its training step), 256 and 512
for ffhq256 / ffhq512, i.e. ~1.9K, ~13K, ~53K, ~211K Gaussians; flat
splats of 0.6 texel, `demo_avatar.surface_gaussians`), seen from the front at the FLAME camera
radius. Forward is timed without autograd; backward is the backward pass alone, after an untimed
forward. Each round runs every variant once, interleaved (serial and tiled at 1 thread, then at 2
threads); ratios are taken within a round and the median over rounds is printed, so load from
other processes hits both sides of a ratio alike.

Scene: a head-like blob -- N Gaussians on the surface of a FLAME-sized ellipsoid (semi-axes
7.5 x 12 x 10 cm, centred at the origin), log-scales ~ N(-4.5, 0.2), opacities ~0.8, degree-1 SH,
seen by EG3D cameras (radius 2.7, focal 4.2647: the head fills ~40 % of the image height). Peak
memory is the growth of the process's max RSS over its state after building the scene, measured
in a fresh subprocess per configuration (torch's allocator is invisible to tracemalloc).
Torch threads are left at their default.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

SIZES = (32, 64, 128, 256)
COUNTS = (1024, 4096, 16384, 65536)
EXTRA = ((8, 32, 2048), (8, 64, 4096))  # (batch, size, Gaussians): GAN-training-like batches
TIMEOUT_S = 60  # a configuration taking longer is reported as skipped
MAX_MEASURE_S = 3.0  # repeat timings until this much time is spent (at least 3, at most 10 runs)


def head_like_gaussians(batch: int, n: int, seed: int = 0):
    """N Gaussians spread over a FLAME-sized ellipsoid surface (metres, +y up, +z front)."""
    import torch

    from agora_core.gaussians import GaussianSet

    g = torch.Generator().manual_seed(seed)
    d = torch.nn.functional.normalize(torch.randn(batch, n, 3, generator=g), dim=-1)
    return GaussianSet(
        means=d * torch.tensor([0.075, 0.12, 0.10]),
        log_scales=-4.5 + 0.2 * torch.randn(batch, n, 3, generator=g),
        quats=torch.randn(batch, n, 4, generator=g),
        sh=0.3 * torch.randn(batch, n, 4, 3, generator=g),
        opacities=(0.8 + 0.05 * torch.randn(batch, n, generator=g)).clamp(0.05, 0.99),
    )


def _max_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _repeat(fn) -> float:
    """Median seconds of ``fn`` over 3..10 runs (after one warm-up run)."""
    fn()
    times, spent = [], 0.0
    while len(times) < 3 or (spent < MAX_MEASURE_S and len(times) < 10):
        times.append(_timed(fn))
        spent += times[-1]
    return statistics.median(times)


def measure_one(batch: int, size: int, n: int) -> dict:
    """Run in a fresh process: timings and memory of one configuration."""
    import torch

    from agora_core.render import rasterize, sample_ffhq_like_cameras
    from agora_core.render.pairs import visible_pairs
    from agora_core.render.rasterizer_torch import screen_space

    gaussians = head_like_gaussians(batch, n)
    cams = sample_ffhq_like_cameras(batch, generator=torch.Generator().manual_seed(1))
    leaves = gaussians.map(lambda t: t.clone().requires_grad_())
    baseline = _max_rss_mb()

    def forward():
        with torch.no_grad():
            rasterize(gaussians, cams, size, size)

    def forward_backward():
        rgb, alpha = rasterize(leaves, cams, size, size)
        (rgb.mean() + alpha.mean()).backward()

    fwd_bwd = _repeat(forward_backward)
    peak = _max_rss_mb() - baseline
    fwd = _repeat(forward)
    with torch.no_grad():
        proj, _ = screen_space(gaussians, cams, size, size)
        pairs = len(visible_pairs(proj, gaussians.opacities, size, size)[0])
    return {
        "fwd_ms": 1e3 * fwd / batch,
        "fwd_bwd_ms": 1e3 * fwd_bwd / batch,
        "batch_ms": 1e3 * fwd_bwd,
        "peak_mb": peak,
        "pairs": pairs / batch,
        "threads": torch.get_num_threads(),
    }


# (batch, size, UV grid); 8 × 64² with grid 128 is a training step of the shipped demo model (configs/demo_model.yaml)
TILED_CONFIGS = ((1, 32, 48), (8, 32, 48), (8, 64, 128), (1, 256, 256), (1, 512, 512))


def demo_head_splats(grid: int, batch: int):
    """The demo head's neutral surface splats at the generator's N×N UV grid (back of the head
    excluded, as `AgoraGenerator` samples it), repeated `batch` times."""
    import torch

    from agora_core.export.demo_avatar import surface_gaussians
    from agora_core.head import back_head_faces, demo_head_model, sample_uv_grid
    from agora_core.models.agora_generator import head_assets_view

    head = demo_head_model().eval()
    keep = ~torch.as_tensor(back_head_faces(head_assets_view(head)))
    samples = sample_uv_grid(head.uv_coords, head.uv_faces, grid, face_mask=keep)
    return surface_gaussians(head, samples, grid).map(lambda t: t.expand(batch, *t.shape[1:]).contiguous())


def compare_tiled(configs, rounds: int, threads: tuple[int, ...] = (1, 2)) -> None:
    """Serial vs tiled compositing kernels, interleaved (module docstring)."""
    import numba
    import torch

    from agora_core.render import FLAME_CAMERA_RADIUS, orbit_cameras
    from agora_core.render.projection import Projection
    from agora_core.render.rasterizer_numba import composite_numba
    from agora_core.render.rasterizer_torch import screen_space

    threads = tuple(t for t in threads if t <= numba.config.NUMBA_NUM_THREADS)
    print(f"cores: {os.cpu_count()}, numba threading layer pool: {numba.config.NUMBA_NUM_THREADS} threads; "
          f"{rounds} rounds; load average before: {os.getloadavg()[0]:.1f}")
    header = f"{'batch':>5} {'size':>5} {'gaussians':>9} {'thr':>3} | {'fwd serial':>10} {'fwd tiled':>9} " \
             f"{'ratio':>6} | {'bwd serial':>10} {'bwd tiled':>9} {'ratio':>6} | {'load':>4}"  # fmt: skip
    print(header + "\n" + "-" * len(header))
    scaling = []
    for batch, size, grid in configs:
        gaussians = demo_head_splats(grid, batch)
        yaw = torch.linspace(-0.3, 0.3, batch) if batch > 1 else torch.zeros(1)
        cams = orbit_cameras(yaw, torch.zeros(batch), radius=FLAME_CAMERA_RADIUS)
        with torch.no_grad():
            proj, colors = screen_space(gaussians, cams, size, size)
        bg = torch.ones(batch, 3)
        leaves = [t.clone().requires_grad_() for t in (proj.means2d, proj.conics, gaussians.opacities, colors)]
        gen = torch.Generator().manual_seed(0)
        g_rgb, g_alpha = torch.randn(batch, 3, size, size, generator=gen), torch.randn(batch, 1, size, size, generator=gen)

        def forward(parallel):
            with torch.no_grad():
                composite_numba(proj, gaussians.opacities, colors, size, size, bg, parallel=parallel)

        def backward(parallel):
            m, c, o, col = leaves
            out = composite_numba(Projection(m, c, proj.depths, proj.radii), o, col, size, size, bg, parallel=parallel)
            return _timed(lambda: torch.autograd.grad(out, leaves, (g_rgb, g_alpha)))

        times = {(k, par, step): [] for k in threads for par in (False, True) for step in ("fwd", "bwd")}
        for rnd in range(rounds + 1):  # round 0 compiles and warms up, untimed
            for k in threads:
                torch.set_num_threads(k)  # the tiled kernels follow torch's thread count
                for par in (False, True):
                    fwd = _timed(lambda: forward(par))
                    bwd = backward(par)
                    if rnd:
                        times[k, par, "fwd"].append(fwd)
                        times[k, par, "bwd"].append(bwd)
        label = f"{batch:>5} {size:>4}² {gaussians.num_gaussians:>9}"
        for k in threads:
            row = []
            for step in ("fwd", "bwd"):
                serial, tiled = times[k, False, step], times[k, True, step]
                ratio = statistics.median(s / t for s, t in zip(serial, tiled))
                row.append(f"{1e3 * statistics.median(serial):>10.1f} {1e3 * statistics.median(tiled):>9.1f} "
                           f"{ratio:>5.2f}×")
            print(f"{label} {k:>3} | {row[0]} | {row[1]} | {os.getloadavg()[0]:>4.1f}", flush=True)
        if len(threads) > 1:
            lo, hi = threads[0], threads[-1]
            scaling.append((label, *(statistics.median(a / b for a, b in zip(times[lo, True, step], times[hi, True, step]))
                                     for step in ("fwd", "bwd"))))
    if scaling:
        print(f"\ntiled kernels, {threads[0]} → {threads[-1]} threads (median ratio over rounds):")
        for label, fwd, bwd in scaling:
            print(f"{label}  forward {fwd:.2f}×  backward {bwd:.2f}×")
    print("ms are medians per batch; ratio = serial / tiled within a round, median over rounds; "
          "load = 1-min load average after the row")


def run_table(configs: list[tuple[int, int, int]]) -> None:
    repo = Path(__file__).resolve().parents[1]
    header = f"{'batch':>5} {'size':>5} {'gaussians':>9} {'pairs/frame':>11} {'fwd ms/frame':>12} " \
             f"{'fwd+bwd ms/frame':>16} {'fwd+bwd ms/batch':>16} {'peak MB':>8} {'load':>5}"  # fmt: skip
    print(header)
    print("-" * len(header))
    threads = None
    for batch, size, n in configs:
        cmd = [sys.executable, __file__, "--one", str(batch), str(size), str(n)]
        label = f"{batch:>5} {size:>4}² {n:>9}"
        try:
            proc = subprocess.run(cmd, cwd=repo, capture_output=True, text=True, timeout=TIMEOUT_S)
        except subprocess.TimeoutExpired:
            print(f"{label}  skipped: over {TIMEOUT_S} s")
            continue
        if proc.returncode != 0:
            print(f"{label}  failed: {proc.stderr.strip().splitlines()[-1:]}")
            continue
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        threads = r["threads"]
        print(
            f"{label} {r['pairs']:>11.0f} {r['fwd_ms']:>12.1f} {r['fwd_bwd_ms']:>16.1f} "
            f"{r['batch_ms']:>16.1f} {r['peak_mb']:>8.0f} {os.getloadavg()[0]:>5.1f}",
            flush=True,
        )
    print(f"\ntorch threads: {threads}; pairs = contributing (pixel, Gaussian) pairs after culling;")
    print("times are medians; load = 1-min load average after the row (other processes skew times)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small configurations only")
    parser.add_argument("--tiled", action="store_true", help="serial vs tiled (parallel) kernels, threads 1 and 2")
    parser.add_argument("--rounds", type=int, default=7, help="--tiled: interleaved rounds (default 7)")
    parser.add_argument("--one", nargs=3, type=int, metavar=("BATCH", "SIZE", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
        print(json.dumps(measure_one(*args.one)))
        return
    if args.tiled:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
        compare_tiled(TILED_CONFIGS, args.rounds)
        return
    if args.quick:
        configs = [(1, 32, 1024), (1, 64, 4096), (8, 32, 2048)]
    else:
        configs = [(1, s, n) for s in SIZES for n in COUNTS] + list(EXTRA)
    run_table(configs)


if __name__ == "__main__":
    main()
