"""`agora fit-mlp`: the AGORA-M coefficient regressor f_mlp (paper sec. 3.7, eq. 10; Table 6)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from agora_cli.common import console, setup_runtime, user_errors
from agora_cli.extract_basis import CkptArg
from agora_core.devices import resolve_device
from agora_core.errors import AgoraError


@user_errors
def fit_mlp(
    ckpt: CkptArg = None,
    basis_path: Annotated[Optional[Path], typer.Argument(metavar="BASIS", help="basis.safetensors from `agora extract-basis`.", show_default=False)] = None,
    out: Annotated[Path, typer.Option("--out", help="mlp.safetensors to write (fit state and data cache are kept beside it).")] = Path("mlp.safetensors"),
    n: Annotated[int, typer.Option("--n", min=2, help="Fresh tuples projected on the basis.")] = 10_000,
    epochs: Annotated[int, typer.Option("--epochs", min=1, help="Training epochs (a rerun with more epochs continues).")] = 300,
    hidden: Annotated[int, typer.Option("--hidden", min=1, help="Hidden width of the two-layer MLP.")] = 256,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Minibatch size.")] = 256,
    lr: Annotated[float, typer.Option("--lr", help="Adam learning rate (cosine-annealed to 1e-5).")] = 1e-3,
    val_fraction: Annotated[float, typer.Option("--val-fraction", help="Share of tuples held out for the val MSE.")] = 0.1,
    expressions_per_identity: Annotated[int, typer.Option("--expressions-per-identity", min=1, help="Tuples sharing one identity.")] = 10,
    truncation: Annotated[float, typer.Option("--truncation", help="Truncation ψ of the mapping network (as in extract-basis).")] = 0.7,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the fresh tuples, the split and the weights.")] = 1,
    dataset: Annotated[Optional[Path], typer.Option("--dataset", help="Dataset folder whose (camera, FLAME) rows condition the tuples.")] = None,
    config: Annotated[Optional[Path], typer.Option("--config", help="Model config YAML when no CKPT is given (random init, seed 0 as extract-basis).")] = None,
    device: Annotated[Optional[str], typer.Option("--device", help="Torch device for generating tuples (default: cuda if available).")] = None,
    threads: Annotated[Optional[int], typer.Option("--threads", min=1, help="Torch CPU threads.")] = None,
) -> None:
    """Train f_mlp(w, ψ, θ) -> blendshape coefficients on fresh tuples projected onto BASIS; report train/val MSE (Table 6).

    Resumable: rerun the same command after an interruption; it continues from the last finished epoch.
    """
    from agora_core.mobile import FitConfig, GaussianBasis, load_agora_model
    from agora_core.mobile import fit_mlp as run_fit
    from agora_core.mobile.regressor_fit import write_fit_report


    if basis_path is None:  # `fit-mlp BASIS --config ...`: the one positional is the basis
        basis_path, ckpt = ckpt, None
    if basis_path is None:
        raise AgoraError("fit-mlp needs CKPT BASIS (or BASIS with --config)")
    if ckpt is None and config is None:
        raise AgoraError("fit-mlp needs CKPT (a training checkpoint), or --config for a randomly initialised model")
    if not 0 <= val_fraction < 1:
        raise AgoraError(f"--val-fraction {val_fraction}: must be in [0, 1)")
    from agora_core.gaussians.files import check_output_path

    check_output_path(out, "--out")
    setup_runtime(threads)
    basis = GaussianBasis.load(basis_path)
    model = load_agora_model(ckpt, config, device=resolve_device(device),
                             dataset=dataset, seed=basis.seed)
    if model.random_init:
        console.print(f"[yellow]no checkpoint: fitting to a randomly initialised model ({model.source})[/]")
    if basis.num_gaussians != model.generator.num_gaussians:
        raise AgoraError(f"{basis_path}: basis of {basis.num_gaussians} Gaussians, but {model.source} has "
                         f"{model.generator.num_gaussians}; extract the basis from this checkpoint")
    settings = FitConfig(n=n, expressions_per_identity=expressions_per_identity, seed=seed, truncation_psi=truncation,
                         hidden=hidden, epochs=epochs, batch_size=batch_size, lr=lr, val_fraction=val_fraction)
    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
               TimeElapsedColumn(), TimeRemainingColumn()]
    with Progress(*columns, console=console) as bar:
        data_task = bar.add_task("tuples", total=n, info="")
        fit_task = bar.add_task("epochs", total=epochs, info="")

        def on_epoch(report) -> None:
            last = report.history[-1]
            bar.update(fit_task, completed=report.epoch,
                       info=f"train {last['train_mse']:.3e}  val {last['val_mse']:.3e}")

        mlp, report = run_fit(model.generator, basis, settings, out, pool=model.pool, prior=model.prior,
                              source=model.source, data_progress=lambda rows: bar.advance(data_task, rows),
                              on_epoch=on_epoch)
        bar.update(fit_task, completed=report.epoch)
    if report.resumed_from:
        console.print(f"resumed after epoch {report.resumed_from}")
    table = Table(title=f"coefficient regressor, K = {basis.k}, N = {n} (as Table 6; MSE of raw coefficients)")
    for name in ("", "train MSE", "val MSE"):
        table.add_column(name, justify="right" if name else "left")
    table.add_row(f"best epoch {report.best_epoch}/{report.epoch}", f"{report.train_mse:.4e}", f"{report.val_mse:.4e}")
    for g, v in report.val_mse_groups.items():
        table.add_row(f"  {g}", "", f"{v:.4e}")
    console.print(table)
    report_path = write_fit_report(out.with_suffix(".json"), settings, report, model.source, str(basis_path))
    console.print(f"mlp: {out}; report: {report_path}")
