"""Minimal Wavefront OBJ reader/writer for UV-mapped triangle meshes (FLAME's head_template.obj).

Only what a UV template needs: `v` (positions), `vt` (texture coordinates), `f` with `a/ta` or
`a/ta/na` corners. Polygons are fan-triangulated (a quad becomes two triangles); indices may be
1-based or negative (relative to the elements read so far). Everything else is ignored.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from agora_core.errors import file_error
from agora_core.gaussians.files import atomic_write_bytes

UV_OBJ_HINT = ("the FLAME UV template is head_template.obj from the 'FLAME texture space' download "
               "at https://flame.is.tue.mpg.de")


def _resolve(token: str, count: int, path, lineno: int, what: str) -> int:
    """OBJ index (1-based, or negative = relative to the end) -> 0-based index, range-checked."""
    try:
        idx = int(token)
    except ValueError:
        raise file_error(path, f"line {lineno}: bad {what} index '{token}'") from None
    if idx > 0:
        idx -= 1
    elif idx < 0:
        idx += count
    else:
        raise file_error(path, f"line {lineno}: {what} index 0 is invalid (OBJ indices start at 1)")
    if not 0 <= idx < count:
        raise file_error(path, f"line {lineno}: {what} index {token} out of range "
                               f"({count} {what}s defined so far)")
    return idx


def read_uv_obj(path: str | Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Read a UV-mapped mesh.

    Returns:
        vertices [V,3] float64, uv_coords [T,2] float64, faces [F,3] int64, uv_faces [F,3] int64.
    Raises `AgoraError` naming the file (and line) for a missing file, a malformed line, a face
    corner without a UV index, an out-of-range index, or a file with no faces.
    """
    path = Path(path)
    if not path.is_file():
        raise file_error(path, f"UV template obj not found; {UV_OBJ_HINT}")
    vertices: list[tuple[float, float, float]] = []
    uvs: list[tuple[float, float]] = []
    faces: list[tuple[int, int, int]] = []
    uv_faces: list[tuple[int, int, int]] = []
    try:
        text = path.read_text(encoding="utf-8", errors="strict")
    except UnicodeDecodeError:
        raise file_error(path, "not a text OBJ file (cannot decode as UTF-8)") from None
    for lineno, line in enumerate(text.splitlines(), start=1):
        parts = line.split("#", 1)[0].split()
        if not parts:
            continue
        tag, args = parts[0], parts[1:]
        try:
            if tag == "v":
                vertices.append((float(args[0]), float(args[1]), float(args[2])))
            elif tag == "vt":
                uvs.append((float(args[0]), float(args[1])))
        except (ValueError, IndexError):
            raise file_error(path, f"line {lineno}: malformed '{tag}' line: {line.strip()!r}") from None
        if tag != "f":
            continue
        if len(args) < 3:
            raise file_error(path, f"line {lineno}: a face needs at least 3 corners")
        corners = []
        for corner in args:
            fields = corner.split("/")
            if len(fields) < 2 or fields[1] == "":
                raise file_error(path, f"line {lineno}: face corner '{corner}' has no UV index "
                                       "(expected v/vt or v/vt/vn)")
            corners.append((_resolve(fields[0], len(vertices), path, lineno, "vertex"),
                            _resolve(fields[1], len(uvs), path, lineno, "texture coordinate")))
        for k in range(1, len(corners) - 1):  # fan triangulation: quads -> 2 triangles
            tri = (corners[0], corners[k], corners[k + 1])
            faces.append(tuple(c[0] for c in tri))
            uv_faces.append(tuple(c[1] for c in tri))
    if not faces:
        raise file_error(path, "no faces found; expected a UV-mapped triangle mesh")
    v = np.asarray(vertices, dtype=np.float64).reshape(-1, 3)
    vt = np.asarray(uvs, dtype=np.float64).reshape(-1, 2)
    if not (np.all(np.isfinite(v)) and np.all(np.isfinite(vt))):
        raise file_error(path, "contains non-finite coordinates")
    return v, vt, np.asarray(faces, dtype=np.int64), np.asarray(uv_faces, dtype=np.int64)


def write_uv_obj(path: str | Path, vertices: np.ndarray, faces: np.ndarray,
                 uv_coords: np.ndarray, uv_faces: np.ndarray) -> None:
    """Write a UV-mapped triangle mesh as OBJ (1-based `f v/vt` corners), atomically.

    Args: vertices [V,3], faces [F,3] (0-based), uv_coords [T,2], uv_faces [F,3] (0-based).
    """
    vertices, uv_coords = np.asarray(vertices), np.asarray(uv_coords)
    faces, uv_faces = np.asarray(faces, dtype=np.int64), np.asarray(uv_faces, dtype=np.int64)
    assert vertices.ndim == 2 and vertices.shape[1] == 3, vertices.shape
    assert uv_coords.ndim == 2 and uv_coords.shape[1] == 2, uv_coords.shape
    assert faces.ndim == 2 and faces.shape[1] == 3, faces.shape
    assert uv_faces.shape == faces.shape, (faces.shape, uv_faces.shape)
    lines = [f"v {x:.9g} {y:.9g} {z:.9g}" for x, y, z in vertices.tolist()]
    lines += [f"vt {u:.9g} {v:.9g}" for u, v in uv_coords.tolist()]
    lines += [f"f {a + 1}/{ta + 1} {b + 1}/{tb + 1} {c + 1}/{tc + 1}"
              for (a, b, c), (ta, tb, tc) in zip(faces.tolist(), uv_faces.tolist())]
    atomic_write_bytes(path, ("\n".join(lines) + "\n").encode("utf-8"))


