"""`agora import`: the authors' released checkpoint as an agora run folder."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from agora_cli.common import console, setup_runtime, user_errors
from agora_core.errors import AgoraError


@user_errors
def import_model(
    files: Annotated[list[Path], typer.Argument(help="checkpoint-*.pkl (with --out), or svd_basis.pt mlp_regressor.pt (with --run).")],
    out: Annotated[Optional[Path], typer.Option("--out", help="Run folder to create from a checkpoint (must not exist or be empty).")] = None,
    run: Annotated[Optional[Path], typer.Option("--run", help="Imported run that receives the AGORA-M pair.")] = None,
) -> None:
    """Convert the authors' released AGORA checkpoint into a run folder (without running any code it
    holds), or their AGORA-M pair into RUN/basis.safetensors + RUN/mlp.safetensors."""
    setup_runtime()
    if len(files) == 2:
        if run is None or out is not None:
            raise AgoraError("agora import svd_basis.pt mlp_regressor.pt: pass --run RUN (an imported run), not --out")
        from agora_core.importer import import_official_agora_m

        basis, mlp = import_official_agora_m(files[0], files[1], run)
        console.print(f"imported AGORA-M -> {basis} and {mlp}")
        return
    if len(files) != 1 or out is None or run is not None:
        raise AgoraError("agora import: pass one checkpoint-*.pkl with --out RUN, or svd_basis.pt mlp_regressor.pt "
                         "with --run RUN")
    checkpoint = files[0]
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
