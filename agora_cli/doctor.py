"""`agora doctor`: runtime, GPU/gsplat, real assets, and the head contact sheet."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from agora_cli.common import console, err_console, user_errors
from agora_cli.options import FlameEyelidsOpt, FlameOpt, FlameUvOpt, ModnetOpt, SmirkOpt


@user_errors
def doctor(
    flame: FlameOpt = None,
    flame_uv: FlameUvOpt = None,
    flame_eyelids: FlameEyelidsOpt = None,
    smirk: SmirkOpt = None,
    modnet: ModnetOpt = None,
    perceptual_weights: Annotated[Optional[str], typer.Option("--perceptual-weights", help="LPIPS backbone (torchvision AlexNet or VGG16 state dict; else $AGORA_PERCEPTUAL_WEIGHTS or assets.yaml).")] = None,
    head_sheet: Annotated[
        Optional[Path],
        typer.Option("--head-sheet", help="Also render the head model's contact sheet (neutral, jaw, expressions, shapes) to this PNG."),
    ] = None,
    run: Annotated[
        Optional[Path],
        typer.Option("--run", help="Also load this model (training checkpoint or run folder, or an imported run) and say what it is."),
    ] = None,
) -> None:
    """Report what this installation can do and which real assets are present.

    Every asset that is found is also loaded the way the stages load it. Exit 0 when the demo can
    run and every found asset loads; 2 when a found asset is broken; 1 when the demo cannot run.
    """
    from agora_core.doctor import collect_report

    report = collect_report({"flame_pkl": flame, "flame_uv_obj": flame_uv, "flame_eyelids": flame_eyelids,
                             "smirk_ckpt": smirk, "modnet_onnx": modnet,
                             "perceptual_weights": perceptual_weights})

    runtime = Table(title="runtime", show_lines=False)
    runtime.add_column("check")
    runtime.add_column("ok")
    runtime.add_column("detail", overflow="fold")
    for check in report.runtime:
        runtime.add_row(check.name, "[green]yes[/]" if check.ok else "[yellow]no[/]", check.detail)
    console.print(runtime)

    assets = Table(title="real assets (never downloaded; the demo head works without them)", show_lines=True)
    assets.add_column("asset")
    assets.add_column("found")
    assets.add_column("path (source)", overflow="fold")
    assets.add_column("where to get it", overflow="fold")
    for res in report.assets:
        where = f"{res.path} ({res.source})" if res.path else f"set {res.spec.flag} / {res.spec.env} / assets.yaml"
        found = "[green]yes[/]" if res.found else ("[dim]no (optional)[/]" if res.spec.optional else "[yellow]no[/]")
        if res.spec.key in report.asset_problems:
            found = "[red]invalid[/]"
        assets.add_row(res.spec.title, found, where, res.spec.obtain)
    console.print(assets)
    for problem in report.asset_problems.values():
        err_console.print(f"[bold red]error:[/] {problem}", highlight=False, soft_wrap=True)

    status = "[green]ready[/]" if report.demo_ready else "[red]not ready[/]"
    console.print(f"demo: {status} — {report.demo_detail}")

    if run is not None:
        from agora_core.inference import describe_model, load_model

        table = Table(title=f"model {run}", show_header=False)
        table.add_column("field")
        table.add_column("value", overflow="fold")
        for field, value in describe_model(load_model(run)):
            table.add_row(field, value)
        console.print(table)

    if head_sheet is not None:
        from agora_core.head.demo_head import demo_head_assets
        from agora_core.head.head_sheet import render_head_sheet

        render_head_sheet(demo_head_assets(), head_sheet)
        console.print(f"head contact sheet written to {head_sheet}")

    if not report.demo_ready:
        raise typer.Exit(1)
    if report.asset_problems:  # a file was given but the stages could not load it
        raise typer.Exit(2)
