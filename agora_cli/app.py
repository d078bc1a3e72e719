"""The `agora` Typer app: wiring only. Each command lives in its own module.

A stage's command is registered here when the stage works end to end; no command only raises.
"""

from __future__ import annotations

import typer

from agora_cli import bench as bench_cmd
from agora_cli import doctor as doctor_cmd
from agora_cli import eval as eval_cmd
from agora_cli import export as export_cmd
from agora_cli import extract_basis as extract_basis_cmd
from agora_cli import fit_mlp as fit_mlp_cmd
from agora_cli import import_cmd
from agora_cli import invert as invert_cmd
from agora_cli import prep_data as prep_data_cmd
from agora_cli import reenact as reenact_cmd
from agora_cli import report as report_cmd
from agora_cli import sample as sample_cmd
from agora_cli import train as train_cmd
from agora_cli import train_tracker as train_tracker_cmd

app = typer.Typer(
    name="agora",
    help="AGORA: animatable 3D Gaussian head avatars — data, training, AGORA-M, inversion, reenactment, export.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)


def _version(value: bool) -> None:
    if value:
        from agora_core import __version__

        typer.echo(f"agora {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version and exit."),
) -> None:
    """AGORA: animatable 3D Gaussian head avatars — data, training, AGORA-M, inversion, reenactment, export."""


app.command("prep-data")(prep_data_cmd.prep_data)
app.command("train")(train_cmd.train)
app.command("import")(import_cmd.import_model)
app.command("sample")(sample_cmd.sample)
app.command("extract-basis")(extract_basis_cmd.extract_basis)
app.command("fit-mlp")(fit_mlp_cmd.fit_mlp)
app.command("bench")(bench_cmd.bench)
app.command("invert")(invert_cmd.invert)
app.command("invert-demo-data")(invert_cmd.demo_data)
app.command("reenact")(reenact_cmd.reenact)
app.command("reenact-demo-params")(reenact_cmd.demo_params)
app.add_typer(export_cmd.export_app, name="export")
app.command("eval")(eval_cmd.evaluate)
app.command("train-tracker")(train_tracker_cmd.train_tracker)
app.command("doctor")(doctor_cmd.doctor)
app.command("report")(report_cmd.report)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
