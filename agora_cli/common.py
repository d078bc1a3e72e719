"""Pieces every command shares: error handling, console, runtime setup."""

from __future__ import annotations

import functools
import warnings
from typing import Callable, TypeVar

import typer
from rich.console import Console

from agora_core.errors import AgoraError, AgoraWarning

console = Console()
err_console = Console(stderr=True)

F = TypeVar("F", bound=Callable)

EXIT_USER_ERROR = 2


def user_errors(fn: F) -> F:
    """Turn an `AgoraError` into one red line on stderr and exit status 2 (no traceback), and an
    `AgoraWarning` into one yellow "warning:" line (other warnings print as Python prints them)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            with warnings.catch_warnings():  # restores the previous warnings.showwarning on exit
                show_python_warning = warnings.showwarning

                def show(message, category, filename, lineno, file=None, line=None):
                    if issubclass(category, AgoraWarning):
                        err_console.print(f"[yellow]warning:[/] {message}", highlight=False, soft_wrap=True)
                    else:
                        show_python_warning(message, category, filename, lineno, file, line)

                warnings.showwarning = show
                return fn(*args, **kwargs)
        except AgoraError as exc:
            err_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
            raise typer.Exit(EXIT_USER_ERROR) from None
        except KeyboardInterrupt:
            err_console.print("[yellow]interrupted[/]")
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


def setup_runtime(threads: int | None = None) -> None:
    """Backend flags, set once by the CLI."""
    import torch

    if threads:
        torch.set_num_threads(threads)
    if torch.cuda.is_available():
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
