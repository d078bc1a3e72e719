"""Plumbing shared by the Gaussian file writers and readers (.ply, .splat).

- `atomic_write`: a file appears complete or not at all (temporary file beside it, then rename), so
  an interrupted export never leaves a truncated file that a viewer would half-load.
- `single_set`: the one set of a batch that a file holds, detached, on the CPU.
- `read_bytes`: the whole file, or an `AgoraError` naming it.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from agora_core.errors import file_error
from agora_core.gaussians.gaussian_set import GaussianSet


@contextmanager
def atomic_write(path: str | Path) -> Iterator[BinaryIO]:
    """Open a temporary file beside ``path`` for binary writing; rename it onto ``path`` on success.

    On any exception the temporary file is removed and ``path`` is left as it was. The parent
    folder is created if needed. The file gets the usual umask-derived permissions.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        with open(tmp, "xb") as stream:
            yield stream
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def single_set(gaussians: GaussianSet, batch_index: int | None = None) -> GaussianSet:
    """The batch-1 set at ``batch_index`` (or the set itself if it has batch 1), detached on CPU."""
    if batch_index is not None:
        gaussians = gaussians.select(batch_index)
    if gaussians.batch_size != 1:
        raise ValueError(f"a file holds one set of Gaussians: got batch {gaussians.batch_size}; pass batch_index")
    return gaussians.detach().to("cpu")


def read_bytes(path: str | Path) -> bytes:
    """Contents of ``path``; `AgoraError` if it is missing or unreadable."""
    path = Path(path)
    if not path.is_file():
        raise file_error(path, "no such file; check the path")
    try:
        return path.read_bytes()
    except OSError as err:
        raise file_error(path, f"cannot be read ({err.strerror or err})") from err
