"""The one exception type a user can cause, and the warning for a run that goes on with less.

An `AgoraError` carries a single line that names the file or flag at fault and what to do about
it. The CLI prints it without a traceback and exits with status 2. An
`AgoraWarning` (raised with `warnings.warn`) is one line of the same kind about an optional asset
the run goes on without; the CLI prints it as a "warning:" line. `check_finite` is the one check
every file reader runs on what it loaded: NaN/inf is refused at the door, naming file and tensor.
"""

from __future__ import annotations

import zipfile
import zlib
from pathlib import Path

# What reading a damaged (truncated, bit-flipped, foreign) zip-based file such as .npz can raise.
# NotImplementedError is not a placeholder here: zipfile raises it for a member whose header names
# a compression method it does not know ("That compression method is not supported"), which a
# flipped byte produces (tests/test_reliability_fuzz.py found it).
ARCHIVE_ERRORS = (OSError, ValueError, EOFError, NotImplementedError, zipfile.BadZipFile, zlib.error)


class AgoraError(Exception):
    """A problem with user input (a file, a flag, an asset) described in one line."""

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))


def file_error(path: str | Path, problem: str) -> AgoraError:
    """`AgoraError` of the house form ``<path>: <problem>``."""
    return AgoraError(f"{path}: {problem}")


class AgoraWarning(UserWarning):
    """The run goes on without something optional a user can supply; one line saying what and how."""


def check_finite(values: object, path: str | Path, what: str) -> None:
    """Refuse NaN/inf at the door: `AgoraError` "<path>: <what> '<name>' holds NaN or inf ..." for the
    first non-finite float in `values` (a tensor, array, float, or nested dict/list/tuple of them;
    `name` is the dotted key path). Integer, boolean and string entries are not checked."""
    name = _first_nonfinite(values, "")
    if name is not None:
        raise file_error(path, f"{what} '{name or 'value'}' holds NaN or inf values; the file is damaged "
                               "(or was written by a diverged run) and is not used")


def _first_nonfinite(value: object, name: str) -> str | None:
    import math

    if isinstance(value, dict):
        items = value.items()
    elif isinstance(value, (list, tuple)):
        items = enumerate(value)
    elif isinstance(value, float):
        return None if math.isfinite(value) else name
    elif hasattr(value, "is_floating_point"):  # torch.Tensor (torch imported only by callers that have one)
        import torch

        ok = not (value.is_floating_point() or value.is_complex()) or bool(torch.isfinite(value).all())
        return None if ok else name
    elif hasattr(value, "dtype"):  # numpy array or scalar
        import numpy as np

        ok = not np.issubdtype(value.dtype, np.inexact) or bool(np.isfinite(value).all())
        return None if ok else name
    else:
        return None
    for key, item in items:
        found = _first_nonfinite(item, f"{name}.{key}" if name else str(key))
        if found is not None:
            return found
    return None
