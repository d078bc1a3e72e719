"""The one exception type a user can cause, and the warning for a run that goes on with less.

An `AgoraError` carries a single line that names the file or flag at fault and what to do about
it. The CLI prints it without a traceback and exits with status 2 (STYLE.md rule 8). An
`AgoraWarning` (raised with `warnings.warn`) is one line of the same kind about an optional asset
the run goes on without; the CLI prints it as a "warning:" line.
"""

from __future__ import annotations

from pathlib import Path


class AgoraError(Exception):
    """A problem with user input (a file, a flag, an asset) described in one line."""

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))


def file_error(path: str | Path, problem: str) -> AgoraError:
    """`AgoraError` of the house form ``<path>: <problem>``."""
    return AgoraError(f"{path}: {problem}")


class AgoraWarning(UserWarning):
    """The run goes on without something optional a user can supply; one line saying what and how."""
