"""The one exception type a user can cause.

An `AgoraError` carries a single line that names the file or flag at fault and what to do about
it. The CLI prints it without a traceback and exits with status 2 (STYLE.md rule 8).
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
