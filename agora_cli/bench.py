"""`agora bench`: cached-identity reenactment speed of AGORA vs AGORA-M (paper Tables 1, 7), and the
AGORA-M web viewer's frame time in headless Chromium (`--device browser`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich import box
from rich.table import Table

from agora_cli.common import console, setup_runtime, user_errors
from agora_cli.options import BasisFormatOpt, ExecutorOpt, PrecisionOpt
from agora_core.errors import AgoraError

DEFAULT_CONFIG = Path("configs/demo.yaml")
DEVICES = ("cpu", "cuda", "browser")
BROWSER_SIZE = 512  # default canvas side of --device browser


@user_errors
def bench(
    device: Annotated[str, typer.Option("--device", help="cpu, cuda, or browser (the web viewer in headless Chromium).")] = "cpu",
    bundle: Annotated[Optional[Path], typer.Option("--bundle", help="--device browser: a site written by agora export web (default: a temporary bundle of --ckpt / --config).")] = None,
    ckpt: Annotated[Optional[Path], typer.Option("--ckpt", help="Training checkpoint, or an imported run (agora import; AGORA-M from its imported pair) (default: a randomly initialised model of --config).")] = None,
    config: Annotated[Optional[Path], typer.Option("--config", help="Model config YAML used without --ckpt.")] = None,
    resolution: Annotated[Optional[int], typer.Option("--resolution", min=8, help="Render side in pixels (default: the model's training resolution; browser: 512).")] = None,
    gaussians: Annotated[Optional[int], typer.Option("--gaussians", min=16, help="Pick the UV grid giving about this many Gaussians (default: the model's grid).")] = None,
    frames: Annotated[int, typer.Option("--frames", min=1, help="Timed batch-1 frames (batch 8: frames/8 calls, at least 25; browser: animated/static pairs).")] = 200,
    warmup: Annotated[int, typer.Option("--warmup", min=0, help="Untimed calls before each timed run.")] = 10,
    basis: Annotated[Optional[Path], typer.Option("--basis", help="basis.safetensors (default: random blendshapes, same cost).")] = None,
    mlp: Annotated[Optional[Path], typer.Option("--mlp", help="mlp.safetensors (default: a random regressor, same cost).")] = None,
    k: Annotated[int, typer.Option("--k", min=1, help="K of the random basis when no --basis is given.")] = 64,
    batch: Annotated[str, typer.Option("--batch", help="Comma-separated batch sizes.")] = "1,8",
    breakdown: Annotated[bool, typer.Option("--breakdown/--no-breakdown", help="Also time both paths without rendering.")] = True,
    json_out: Annotated[Optional[Path], typer.Option("--json", help="Write the results as JSON here.")] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the identity, the driving frames and a random init.")] = 0,
    threads: Annotated[Optional[int], typer.Option("--threads", min=1, help="Torch CPU threads.")] = None,
    executor: ExecutorOpt = "torch",
    precision: PrecisionOpt = "float32",
    basis_format: BasisFormatOpt = "float32",
) -> None:
    """Time cached-identity reenactment: AGORA (deformation branch + lifting + raster) vs AGORA-M (MLP + blend + raster) vs the render alone.

    Median and p90 per call after warm-up, synchronised, rendering included; batch 1 latency and batch 8 throughput; the speed-up is measured in this run.
    With --device browser: the web viewer's animated vs static frame time (same splats) in headless Chromium.
    """
    from agora_core.bench import BenchConfig, run_bench

    if device not in DEVICES:
        raise AgoraError(f"--device {device!r}: choose one of {', '.join(DEVICES)}")
    from agora_core.export.onnx_executor import check_executor, check_precision

    if check_executor(executor) != "torch" and device == "browser":
        raise AgoraError(f"--executor {executor} runs AGORA's per-frame path; the browser runs AGORA-M only: drop it")
    if check_precision(precision, executor) != "float32" and device == "browser":
        raise AgoraError(f"--precision {precision} applies to AGORA's per-frame path; the browser runs AGORA-M only: "
                         "drop it")
    if basis_format != "float32" and device == "browser":
        raise AgoraError(f"--basis-format {basis_format} is AGORA-M's CPU blend; the browser reads the bundle's own "
                         "int16 basis: drop it")
    if bundle is not None and device != "browser":
        raise AgoraError("--bundle is a web bundle for --device browser; drop it or add --device browser")
    given = [flag for flag, value in (("--ckpt", ckpt), ("--config", config), ("--basis", basis), ("--mlp", mlp),
                                      ("--gaussians", gaussians)) if value is not None]
    if bundle is not None and given:
        raise AgoraError(f"--bundle already holds the avatar and its AGORA-M files; drop {', '.join(given)}")
    try:
        batch_sizes = tuple(int(b) for b in batch.split(","))
    except ValueError:
        raise AgoraError(f"--batch {batch!r}: expected comma-separated integers such as 1,8") from None
    if not batch_sizes or min(batch_sizes) < 1:
        raise AgoraError(f"--batch {batch!r}: batch sizes must be at least 1")
    if json_out is not None:
        from agora_core.gaussians.files import check_output_path

        check_output_path(json_out, "--json")
    if ckpt is None and config is None and bundle is None:
        config = DEFAULT_CONFIG
        if not config.is_file():
            raise AgoraError(f"{config}: default config not found; pass --config or --ckpt")
    setup_runtime(threads)
    if device == "browser":
        _bench_browser(bundle, ckpt, config, resolution or BROWSER_SIZE, frames, warmup, gaussians, basis, mlp, k, seed,
                       json_out)
        return
    settings = BenchConfig(frames=frames, warmup=warmup, batch_sizes=batch_sizes, resolution=resolution, seed=seed,
                           breakdown=breakdown)
    result = run_bench(ckpt, config, device, settings, gaussians=gaussians, basis_path=basis, mlp_path=mlp, k=k,
                       executor=executor, precision=precision, basis_format=basis_format)
    for note in result.notes:
        console.print(f"[yellow]{note}[/]")
    console.print(bench_table(result))
    speed = ", ".join(f"batch {b[5:].replace('_no_render', ' without rendering')}: {v:.2f}×"
                      for b, v in result.speedup.items())
    console.print(f"AGORA-M / AGORA speed-up (medians, this run, {result.device}): {speed}")
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(result.to_dict(), indent=2))
        console.print(f"results: {json_out}")


def _bench_browser(bundle, ckpt, config, size, frames, warmup, gaussians, basis, mlp, k, seed, json_out) -> None:
    from agora_core.export.browser_bench import bench_browser

    run = bench_browser(bundle, ckpt, config, frames=frames, size=size, warmup=warmup, gaussians=gaussians,
                        basis_path=basis, mlp_path=mlp, k=k, seed=seed)
    for note in run.notes:
        console.print(f"[yellow]{note}[/]")
    r = run.result
    console.print(browser_table(r))
    console.print(f"animated = MLP + blend + projection + draw, static = draw only; {r['sorts']} re-sorts in "
                  f"{r['frames']} animated frames", highlight=False)
    console.print(f"WebGL: {r['renderer']}", highlight=False, soft_wrap=True)
    console.print(f"bundle: {run.bundle}", highlight=False, soft_wrap=True)
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(run.to_dict(), indent=2))
        console.print(f"results: {json_out}")


def browser_table(result: dict) -> Table:
    """Animated vs static frame time of the web viewer: median, p90, mean, FPS, and their ratio."""
    r = result
    table = Table(title=f"web viewer, {r['gaussians']} Gaussians ({r['active_gaussians']} moving), K = {r['k']}, "
                        f"{r['width']}×{r['height']}", box=box.SIMPLE_HEAD)
    for name in ("frame", "median ms", "p90 ms", "mean ms", "FPS"):
        table.add_column(name, justify="left" if name == "frame" else "right", no_wrap=True)
    for kind in ("animated", "static"):
        s = r[kind]
        table.add_row(kind, f"{s['median_ms']:.2f}", f"{s['p90_ms']:.2f}", f"{s['mean_ms']:.2f}", f"{s['fps']:.1f}")
    table.add_section()
    table.add_row("animated / static", f"{r['ratio']:.2f}×", "", "", "")
    return table


LABELS = {"agora": "AGORA", "agora_m": "AGORA-M", "render": "render only", "agora_animate": "AGORA −render",
          "agora_m_blend": "AGORA-M −render"}


def bench_table(result) -> Table:
    """Median / p90 per call, FPS, peak and resident memory per path and batch size."""
    m = result.model
    table = Table(title=f"reenactment, {m['gaussians']} Gaussians (UV grid {m['uv_grid']}), {m['resolution']}², "
                        f"K = {m['k']} ({m.get('basis_format', 'float32')} basis), {result.device}, AGORA in "
                        f"{m.get('executor', 'torch')} ({m.get('precision', 'float32')})", box=box.SIMPLE_HEAD)
    for name in ("path", "B", "median ms", "p90 ms", "FPS", "peak MB", "state MB"):
        table.add_column(name, justify="left" if name == "path" else "right", no_wrap=True)
    last = None
    for r in result.rows:
        if last is not None and r.batch != last:
            table.add_section()
        last = r.batch
        table.add_row(LABELS.get(r.path, r.path), str(r.batch), f"{r.median_ms:.2f}", f"{r.p90_ms:.2f}",
                      f"{r.fps:.1f}", f"{r.peak_mb:.0f}", f"{r.state_mb:.2f}")
    return table
