"""`agora import`: the authors' released checkpoint as an agora run folder."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from agora_cli.common import console, setup_runtime, user_errors


@user_errors
def import_model(
    checkpoint: Annotated[Path, typer.Argument(help="The authors' checkpoint-*.pkl (e.g. checkpoint-20500.pkl).")],
    out: Annotated[Path, typer.Option("--out", help="Run folder to create (must not exist or be empty).")],
) -> None:
    """Convert the authors' released AGORA checkpoint into a run folder, without running any code it holds."""
    setup_runtime()
    from rich.progress import Progress

    from agora_core.importer import import_official_checkpoint

    steps = ["read", "convert", "verify", "write"]
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task(f"importing {checkpoint.name}", total=len(steps))

        def step(name: str) -> None:
            progress.update(task, completed=steps.index(name), description=f"{name} {checkpoint.name}")

        folder = import_official_checkpoint(checkpoint, out, progress=step)
        progress.update(task, completed=len(steps))
    console.print(f"imported {checkpoint} -> {folder}")
