"""`agora sample`: random avatars of a training run or an imported run, as a PNG grid and 3DGS .ply files."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Optional

import typer

from agora_cli.common import console, setup_runtime, user_errors
from agora_cli.options import ThreadsOpt
from agora_core.errors import AgoraError


@user_errors
def sample(
    checkpoint: Annotated[Path, typer.Argument(help="A checkpoint (RUN/checkpoints/kimg*.pt), a run folder (its newest) or an imported run (agora import).")],
    out: Annotated[Path, typer.Option("--out", help="Grid PNG to write.")] = Path("samples.png"),
    n: Annotated[int, typer.Option("--n", help="Number of avatars.")] = 16,
    ply: Annotated[Optional[Path], typer.Option("--ply", help="Also write each avatar (neutral) as a 3DGS .ply into this folder.")] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of z and the sampled FLAME shapes.")] = 0,
    truncation: Annotated[float, typer.Option("--truncation", help="Truncation ψ of w (1 = none).")] = 0.7,
    resolution: Annotated[Optional[int], typer.Option("--resolution", help="Render size (default: the training resolution).")] = None,
    size: Annotated[int, typer.Option("--size", help="Pixels per avatar in the grid: the render enlarged (bicubic) to this size.")] = 256,
    threads: ThreadsOpt = 0,
) -> None:
    """Write `n` random avatars (G_ema, neutral expression, frontal camera) as a grid and .ply files.

    Each avatar is rendered at the model's resolution (or --resolution) and shown at --size pixels."""
    if n < 1:
        raise AgoraError(f"--n {n}: must be at least 1")
    if size < 8:
        raise AgoraError(f"--size {size}: must be at least 8 pixels")
    if not 0.0 <= truncation <= 1.0:
        raise AgoraError(f"--truncation {truncation}: expected a value in [0, 1]")
    from agora_core.gaussians.files import check_output_path

    check_output_path(out, "--out")
    if ply is not None:
        check_output_path(ply, "--ply", folder=True)
    setup_runtime(threads or None)
    from agora_core.inference import load_model
    from agora_core.render.images import enlarge
    from agora_core.train.sample import sample_avatars, write_avatars

    model = load_model(checkpoint)
    res = resolution or model.resolution
    images, gaussians = sample_avatars(model, n, seed, truncation, res)
    images = enlarge(images, size)
    grid_path, ply_paths = write_avatars(images, gaussians, out, ply, cols=math.ceil(math.sqrt(n)))
    console.print(f"wrote {grid_path}" + (f" and {len(ply_paths)} .ply files in {ply}" if ply else ""))
