"""`agora report`: one page (OUT/index.html) showing everything `make demo` made."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from agora_cli.common import console, user_errors


@user_errors
def report(
    out: Annotated[Path, typer.Argument(help="The folder make demo wrote (default out/).")] = Path("out"),
    model: Annotated[Optional[Path], typer.Option("--model", help="The model the demo ran on (its model.json and training log are shown).")] = None,
) -> None:
    """Build OUT/index.html: dataset, samples, inversion, reenactment videos, timings, AGORA-M basis, SWD curve, eval, viewer link."""
    from agora_core.report import build_report

    console.print(f"wrote {build_report(out, model)} (open it in a browser)")
