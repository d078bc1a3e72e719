"""Plumbing shared by the Gaussian file writers and readers (.ply, .splat).

- `atomic_write`: a file appears complete or not at all (temporary file beside it, then rename), so
  an interrupted export never leaves a truncated file that a viewer would half-load.
- `check_output_path`: before any work, an output that is a folder, sits under a file or lies in a
  folder that cannot be written is one `AgoraError` naming the flag (every command's --out).
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

from agora_core.errors import AgoraError, file_error
from agora_core.gaussians.gaussian_set import GaussianSet


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write `data` to `path` through `atomic_write`."""
    with atomic_write(path) as stream:
        stream.write(data)


@contextmanager
def atomic_write(path: str | Path) -> Iterator[BinaryIO]:
    """Open a temporary file beside ``path`` for binary writing; rename it onto ``path`` on success.

    On any exception the temporary file is removed and ``path`` is left as it was. The parent
    folder is created if needed. The file gets the usual umask-derived permissions.
    """
    path = check_output_path(path, "output")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        with open(tmp, "xb") as stream:
            yield stream
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(tmp, path)
    except OSError as err:  # disk full, permissions changed, path replaced by a folder meanwhile
        tmp.unlink(missing_ok=True)
        raise file_error(path, f"cannot be written ({err.strerror or err})") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def check_output_path(path: str | Path, flag: str = "--out", folder: bool = False) -> Path:
    """`path` if a file (`folder`: a folder) can be written there, else `AgoraError` "<flag> <path>: ...".

    Checked before any work: `path` is not an existing folder (a file output) or file (a folder
    output), no part of its parent is a file, and the nearest existing folder above it is writable.
    """
    path = Path(path)
    if not folder and path.is_dir():
        raise AgoraError(f"{flag} {path}: is a folder; give a file name")
    if folder and path.exists() and not path.is_dir():
        raise AgoraError(f"{flag} {path}: is a file, not a folder")
    above = path if folder and path.is_dir() else path.parent
    while not above.exists() and above != above.parent:
        above = above.parent
    if not above.is_dir():
        raise AgoraError(f"{flag} {path}: {above} is a file, so nothing can be written under it")
    if not os.access(above, os.W_OK | os.X_OK):
        raise AgoraError(f"{flag} {path}: cannot write in {above} (permission denied)")
    return path


def read_json_manifest(folder: str | Path, name: str, file_format: str, version: int, not_one: str) -> dict:
    """`folder/name`, a JSON object whose `format` and `format_version` are checked (the manifests of
    model folders and imported runs); one `AgoraError` line naming the file otherwise.

    Args:
        not_one: what the error says when the file is missing, e.g. "not a model folder (make one with ...)".
    """
    import json

    path = Path(folder) / name
    if not path.is_file():
        raise file_error(folder, f"no {name}; {not_one}")
    try:
        doc = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise file_error(path, f"not readable JSON ({str(exc)[:120]})") from None
    if not isinstance(doc, dict) or doc.get("format") != file_format:
        raise file_error(path, f"expected format '{file_format}'")
    if doc.get("format_version") != version:
        raise file_error(path, f"format_version {doc.get('format_version')!r}; this agora reads {version}")
    return doc


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
