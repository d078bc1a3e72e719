"""`agora train-tracker`: train SMIRK's encoder as a FLAME tracker for the demo head (offline AED/APD)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from agora_cli.common import console, setup_runtime, user_errors
from agora_cli.options import ThreadsOpt


@user_errors
def train_tracker(
    data: Annotated[Path, typer.Argument(help="Synthetic dataset folder (agora prep-data --synthetic N OUT): images with exact labels.")],
    out: Annotated[Path, typer.Option("--out", help="Tracker checkpoint to write (SMIRK encoder layout); its settings go to <out>.json.")] = Path("tracker.pt"),
    steps: Annotated[int, typer.Option("--steps", min=1, help="Optimiser steps.")] = 1500,
    batch: Annotated[int, typer.Option("--batch", min=1, help="Images per step.")] = 32,
    input_size: Annotated[int, typer.Option("--input-size", min=0, help="Crop side fed to the encoder (0 = from the images: 64 for 64² data; SMIRK uses 224).")] = 0,
    lr: Annotated[float, typer.Option("--lr", help="Adam learning rate (cosine-decayed).")] = 1e-3,
    shape: Annotated[bool, typer.Option("--shape/--no-shape", help="Also train the shape backbone (ASD); --no-shape saves ~45 % of the compute.")] = True,
    holdout: Annotated[float, typer.Option("--holdout", help="Fraction of images held out for the reported RMSE.")] = 0.1,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the split, batches and weights.")] = 0,
    threads: ThreadsOpt = 0,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="Show the progress bar.")] = True,
) -> None:
    """Train a FLAME tracker (SMIRK's encoder, from scratch) on synthetic demo-head images; report held-out RMSE per group."""
    from agora_core.gaussians.files import check_output_path
    from agora_core.metrics.tracker_training import TrackerTrainConfig, train_tracker as run_training

    check_output_path(out, "--out")
    setup_runtime(threads or None)
    config = TrackerTrainConfig(steps=steps, batch=batch, input_size=input_size, lr=lr, holdout=holdout, seed=seed,
                                shape=shape)
    report = run_training(data, out, config, progress=progress)

    table = Table(title=f"held-out RMSE ({report.heldout_images} images, input {report.input_size}²)")
    table.add_column("group")
    table.add_column("tracker", justify="right")
    table.add_column("predict the mean", justify="right")
    for group, value in report.rmse.items():
        table.add_row(group, f"{value:.4f}", f"{report.baseline_rmse[group]:.4f}")
    if report.rmse:
        console.print(table)
    console.print(f"wrote {report.path} (+ {report.path.with_suffix('.json').name}) in {report.seconds:.0f} s")


if __name__ == "__main__":
    typer.run(train_tracker)
