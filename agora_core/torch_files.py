"""Reading a `torch.save` file a user passes without running any code from it.

Every `.pt`/`.pth` reader (checkpoints, avatars, fit states, SMIRK / VGG / Inception weights) goes
through `read_torch_file`: `torch.load(weights_only=True)` unpickles tensors and plain containers
only, TorchScript archives (whose loading runs the code stored in them) are refused before torch
sees them, and every failure is one `AgoraError` line without PyTorch's multi-line advice (which
suggests `weights_only=False`, the very thing that would run the file's code).
"""

from __future__ import annotations

import pickle
import warnings
import zipfile
from pathlib import Path

from agora_core.errors import ARCHIVE_ERRORS, file_error

TORCHSCRIPT_REFUSED = "a TorchScript archive, which is never loaded (loading TorchScript runs the code stored in it)"
PICKLE_REFUSED = ("it pickles Python objects other than tensors and plain containers, which are never "
                  "loaded (unpickling them could run code)")


def is_torchscript(path: str | Path) -> bool:
    """TorchScript archives are zip files with a `constants.pkl` or `code/` entry (a `torch.save` zip has neither)."""
    try:
        if not zipfile.is_zipfile(path):
            return False
        with zipfile.ZipFile(path) as zf:
            return any(n.endswith("constants.pkl") or "/code/" in n for n in zf.namelist())
    except ARCHIVE_ERRORS:
        return False


def read_torch_file(path: str | Path, what: str, fix: str, map_location: str = "cpu", mmap: bool = False) -> object:
    """The contents of a `torch.save` file, read with `weights_only=True`.

    Args:
        what: what the file should be, for the error ("agora checkpoint").
        fix: what to do instead, for the error ("make one with `agora invert`").
    Raises `AgoraError` "<path>: not a readable <what>: <reason>; <fix>" for a missing file, a TorchScript
    archive, a pickle of arbitrary objects, or a truncated/foreign file.
    """
    import torch

    path = Path(path)
    if not path.is_file():
        raise file_error(path, f"no such file; {fix}")
    if is_torchscript(path):
        raise file_error(path, f"not a readable {what}: {TORCHSCRIPT_REFUSED}; {fix}")
    try:
        with warnings.catch_warnings():  # torch's notes on foreign pickle protocols: the file is refused anyway
            warnings.simplefilter("ignore", UserWarning)
            return torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as exc:
        if "GLOBAL" in str(exc):  # the weights-only unpickler met a class or function reference
            raise file_error(path, f"not a readable {what}: {PICKLE_REFUSED}; {fix}") from None
        raise file_error(path, f"not a readable {what} (not a torch.save file); {fix}") from None
    except Exception as exc:  # noqa: BLE001 - truncated, foreign, not a zip/pickle: all "not our file"
        first = (str(exc).strip().splitlines() or [""])[0].split(". ")[0][:160]
        raise file_error(path, f"not a readable {what} ({type(exc).__name__}{': ' + first if first else ''}); "
                               f"{fix}") from None
