"""safetensors files of AGORA-M with a checked `format` / `format_version`.

Writes are atomic (temporary file beside the target, fsync, rename); reads turn every problem —
missing file, not safetensors, another format, another version, missing tensors — into one
`AgoraError` line that names the file.
"""

from __future__ import annotations

from pathlib import Path

from torch import Tensor

from agora_core.errors import check_finite, file_error


def save_tensors(path: str | Path, tensors: dict[str, Tensor], metadata: dict[str, object]) -> Path:
    """Write `tensors` (contiguous CPU copies) with string `metadata` to `path`, atomically."""
    from safetensors.torch import save

    from agora_core.gaussians.files import atomic_write

    path = Path(path)
    data = save(_unshared({k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}),
                metadata={k: str(v) for k, v in metadata.items()})
    with atomic_write(path) as f:  # the permissions of every other output (safetensors' own writer: 0600)
        f.write(data)
    return path


def _unshared(tensors: dict[str, Tensor]) -> dict[str, Tensor]:
    """The tensors, each copied when it shares its storage with another one or is a view into a larger
    storage (safetensors refuses both; e.g. one tensor stored under two names)."""
    seen: set[int] = set()
    out = {}
    for key, t in tensors.items():
        storage = t.untyped_storage()
        if storage.data_ptr() in seen or storage.nbytes() != t.numel() * t.element_size():
            t = t.clone()
        seen.add(t.untyped_storage().data_ptr())
        out[key] = t
    return out


def load_tensors(path: str | Path, file_format: str, version: int, required: list[str],
                 what: str) -> tuple[dict[str, Tensor], dict[str, str]]:
    """Tensors and metadata of an AGORA-M file, checked for format, version and `required` keys.

    Args:
        what: the command that writes such files, for the error message (e.g. "agora extract-basis").
    """
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        raise file_error(path, f"no such file; create it with `{what}`")
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = dict(f.metadata() or {})
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as err:
        raise file_error(path, f"not a readable safetensors file ({err}); re-create it with `{what}`") from None
    if metadata.get("format") != file_format:
        raise file_error(path, f"not an {file_format} file (format={metadata.get('format')!r}); "
                               f"create one with `{what}`")
    if metadata.get("format_version") != str(version):
        raise file_error(path, f"{file_format} format_version {metadata.get('format_version')} is not supported "
                               f"(this agora reads {version}); re-create it with `{what}`")
    missing = [k for k in required if k not in tensors]
    if missing:
        raise file_error(path, f"{file_format} file lacks {', '.join(missing)}; re-create it with `{what}`")
    check_finite(tensors, path, f"{file_format} tensor")
    return tensors, metadata


def metadata_int(path: str | Path, metadata: dict[str, str], key: str) -> int:
    """An integer metadata field, or an `AgoraError` naming the file."""
    try:
        return int(metadata[key])
    except (KeyError, ValueError):
        raise file_error(path, f"metadata field {key!r} missing or not an integer ({metadata.get(key)!r})") from None
