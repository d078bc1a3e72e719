"""`agora extract-basis`: AGORA-M's Gaussian blendshapes from a checkpoint (paper sec. 3.7, eq. 9)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from agora_cli.common import console, setup_runtime, user_errors
from agora_core.devices import resolve_device
from agora_core.errors import AgoraError

CkptArg = Annotated[Optional[Path], typer.Argument(metavar="[CKPT]", help="Training checkpoint (or run folder: its newest), model folder or imported run. Omit to use a randomly initialised model of --config.", show_default=False)]


@user_errors
def extract_basis(
    ckpt: CkptArg = None,
    out: Annotated[Path, typer.Option("--out", help="basis.safetensors to write (a .json report is written beside it).")] = Path("basis.safetensors"),
    n: Annotated[int, typer.Option("--n", min=1, help="Sampled tuples N (paper 10000).")] = 10_000,
    k: Annotated[int, typer.Option("--k", min=1, help="Blendshapes per attribute group K (paper 64).")] = 64,
    memory_budget: Annotated[int, typer.Option("--memory-budget", min=16, metavar="MB", help="Memory for SVD accumulators and residual chunks, in MB.")] = 4096,
    method: Annotated[str, typer.Option("--method", help="auto | randomized (memory flat in N) | gram (exact, N² memory).")] = "auto",
    passes: Annotated[int, typer.Option("--passes", min=1, help="randomized: passes over the tuples (power iterations).")] = 6,
    oversample: Annotated[int, typer.Option("--oversample", min=0, help="randomized: extra subspace columns.")] = 24,
    expressions_per_identity: Annotated[int, typer.Option("--expressions-per-identity", min=1, help="Tuples sharing one identity (identity branch runs once per identity).")] = 10,
    truncation: Annotated[float, typer.Option("--truncation", help="Truncation ψ of the mapping network (authors 0.7).")] = 0.7,
    heldout: Annotated[int, typer.Option("--heldout", min=0, help="Held-out tuples for the reconstruction MSE.")] = 256,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the tuples and the SVD.")] = 0,
    dataset: Annotated[Optional[Path], typer.Option("--dataset", help="Dataset folder whose (camera, FLAME) rows condition the tuples (default: the checkpoint's priors).")] = None,
    config: Annotated[Optional[Path], typer.Option("--config", help="Model config YAML when no CKPT is given.")] = None,
    device: Annotated[Optional[str], typer.Option("--device", help="Torch device (default: cuda if available, else cpu).")] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Tuples per generator call.")] = 16,
    threads: Annotated[Optional[int], typer.Option("--threads", min=1, help="Torch CPU threads.")] = None,
) -> None:
    """Sample N tuples, stream their posed-minus-neutral residuals and keep the top-K right singular vectors of xyz, scale, rotation and opacity.

    The residual matrix N × (M·D) is never built: chunks are regenerated from the seed on every pass, sized to --memory-budget.
    """
    from agora_core.mobile import ExtractConfig, load_agora_model, write_extract_report
    from agora_core.mobile import extract_basis as run_extract


    if method not in ("auto", "randomized", "gram"):
        raise AgoraError(f"--method {method!r}: choose auto, randomized or gram")
    if ckpt is None and config is None:
        raise AgoraError("extract-basis needs CKPT (a training checkpoint), or --config for a randomly initialised model")
    from agora_core.gaussians.files import check_output_path

    check_output_path(out, "--out")
    setup_runtime(threads)
    device = resolve_device(device)
    model = load_agora_model(ckpt, config, device=device, dataset=dataset, seed=seed)
    if model.random_init:
        console.print(f"[yellow]no checkpoint: extracting from a randomly initialised model ({model.source})[/]")
    settings = ExtractConfig(n=n, k=k, seed=seed, expressions_per_identity=expressions_per_identity,
                             truncation_psi=truncation, method=method, memory_budget_mb=memory_budget, passes=passes,
                             oversample=oversample, heldout=heldout, batch_size=batch_size)
    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn()]
    with Progress(*columns, console=console) as bar:
        task = bar.add_task("extract-basis", total=None)

        def on_plan(plan) -> None:
            console.print(f"{model.generator.num_gaussians} Gaussians, N = {n}, K = {k}: {plan.describe()}")
            bar.update(task, total=plan.passes * n + heldout)

        basis, report = run_extract(model.generator, settings, pool=model.pool, prior=model.prior,
                                    source_checkpoint=model.source, progress=lambda rows: bar.advance(task, rows),
                                    on_plan=on_plan)
    basis.save(out)
    report_path = write_extract_report(out.with_suffix(".json"), settings, report, model.source)
    console.print(_report_table(report, n))
    console.print(f"basis: {out} (K = {basis.k}, {basis.num_gaussians} Gaussians); report: {report_path}; "
                  f"{report.seconds:.0f} s")


def _report_table(report, n: int) -> Table:
    table = Table(title=f"Gaussian blendshapes, N = {n} (explained variance as Table 5, averaged over the animated "
                        f"groups; held-out reconstruction)")
    for name, justify in [("K", "right"), ("group", "left"), ("expl. var. %", "right"), ("held-out expl. %", "right"),
                          ("held-out MSE", "right")]:
        table.add_column(name, justify=justify)
    last_k = None
    for row in report.rows:
        if last_k is not None and row["k"] != last_k:
            table.add_row(str(last_k), "[bold]average[/]", f"{100 * report.average_explained[last_k]:.1f}", "", "",
                          end_section=True)
        last_k = row["k"]
        if row["energy"] == 0:  # e.g. opacity: the deformation branch predicts no opacity residual
            table.add_row(str(row["k"]), row["group"], "no residual", "", "")
            continue
        table.add_row(str(row["k"]), row["group"], f"{100 * row['explained_variance']:.1f}",
                      f"{100 * row['heldout_explained']:.1f}", f"{row['heldout_mse']:.3e}")
    table.add_row(str(last_k), "[bold]average[/]", f"{100 * report.average_explained[last_k]:.1f}", "", "")
    return table
