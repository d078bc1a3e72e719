"""Reading and writing FLAME-format model pickles (`generic_model.pkl`) without trusting them.

FLAME 2020 ships as a Python-2 pickle of chumpy objects, and chumpy does not install on current
Python. A pickle can name *any* importable callable, so loading a user's file with `pickle.load`
would run whatever it names. `load_flame_pickle` uses a restricted unpickler that resolves only
an allow-list of globals (numpy array reconstruction, scipy sparse matrices, a handful of
builtins) from a fixed table — it never imports a module named by the file — and maps every
`chumpy.*` class to a stub that keeps its state (the array sits in `state["x"]`).
"""

from __future__ import annotations

import _codecs
import copyreg
import hashlib
import io
import pickle
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from agora_core.errors import ARCHIVE_ERRORS, AgoraError, file_error
from agora_core.head.assets import FlameAssets
from agora_core.gaussians.files import atomic_write_bytes
from agora_core.head.obj_io import read_uv_obj

FLAME_HINT = (
    "get FLAME from https://flame.is.tue.mpg.de (register, download 'FLAME 2020', use "
    "generic_model.pkl; the UV template head_template.obj is in the 'FLAME texture space' download)"
)
ROOT_PARENT = np.uint32(4294967295)  # FLAME stores the root's parent as uint32(-1)
DEFAULT_NUM_SHAPE = 300  # FLAME 2020/2023: shapedirs = 300 shape + 100 expression components
REQUIRED_KEYS = ("v_template", "f", "shapedirs", "posedirs", "J_regressor", "weights", "kintree_table")


def _numpy_reconstruct():
    try:  # numpy >= 2 keeps the pickle helpers in numpy._core
        from numpy._core import multiarray, numeric
    except ImportError:  # numpy 1.x
        from numpy.core import multiarray, numeric
    return multiarray._reconstruct, multiarray.scalar, numeric._frombuffer


def _latin1_encode(text, encoding="utf-8"):
    """`_codecs.encode` limited to what protocol-2 pickles of bytes use (str -> latin1 bytes)."""
    if not isinstance(text, str) or encoding.lower().replace("_", "-") not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError(f"unexpected _codecs.encode({type(text).__name__}, {encoding!r})")
    return _codecs.encode(text, "latin1")


class _ChumpyStub:
    """Stands in for any `chumpy.*` class; keeps the pickled state dict (array under "x")."""

    def __new__(cls, *args, **kwargs):
        return object.__new__(cls)

    def __init__(self, *args, **kwargs):
        self.state = {}

    def __setstate__(self, state):
        self.state = state if isinstance(state, dict) else {"state": state}


def _allowed_globals() -> dict[tuple[str, str], object]:
    reconstruct, scalar, frombuffer = _numpy_reconstruct()
    table: dict[tuple[str, str], object] = {}
    for mod in ("numpy.core.multiarray", "numpy._core.multiarray"):
        table[(mod, "_reconstruct")] = reconstruct
        table[(mod, "scalar")] = scalar
    for mod in ("numpy.core.numeric", "numpy._core.numeric"):
        table[(mod, "_frombuffer")] = frombuffer
    table[("numpy", "ndarray")] = np.ndarray
    table[("numpy", "dtype")] = np.dtype
    for kind, cls in (("csc", sp.csc_matrix), ("csr", sp.csr_matrix)):
        for mod in ("scipy.sparse", f"scipy.sparse.{kind}", f"scipy.sparse._{kind}"):
            table[(mod, f"{kind}_matrix")] = cls
    for mod in ("builtins", "__builtin__"):
        table[(mod, "set")] = set
        table[(mod, "frozenset")] = frozenset
        table[(mod, "object")] = object
    table[("_codecs", "encode")] = _latin1_encode  # bytes inside protocol-2 pickles made by py3
    table[("copyreg", "_reconstructor")] = copyreg._reconstructor  # protocol 0/1 plain objects
    table[("copy_reg", "_reconstructor")] = copyreg._reconstructor
    return table


class _RestrictedUnpickler(pickle.Unpickler):
    """Resolves globals only from `_allowed_globals()`; refuses everything else by name."""

    def __init__(self, file, path: str | Path):
        super().__init__(file, encoding="latin1")
        self._path = path
        self._table = _allowed_globals()

    def find_class(self, module: str, name: str):
        if module == "chumpy" or module.startswith("chumpy."):
            return _ChumpyStub
        try:
            return self._table[(module, name)]
        except KeyError:
            raise file_error(
                self._path,
                f"refusing to load: the pickle references the forbidden global '{module}.{name}' "
                "(a FLAME model holds only arrays); is this really a FLAME generic_model.pkl?",
            ) from None


def _unstub(obj, path):
    """Replace chumpy stubs (recursively, inside dicts/lists) by their numpy arrays."""
    if isinstance(obj, _ChumpyStub):
        if "x" not in obj.state:
            raise file_error(path, "a chumpy object in the pickle holds no array (state key 'x')")
        return np.asarray(_unstub(obj.state["x"], path))
    if isinstance(obj, dict):
        return {k: _unstub(v, path) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_unstub(v, path) for v in obj)
    return obj


def _missing_file_error(path: Path, what: str) -> AgoraError:
    return file_error(path, f"{what} not found; {FLAME_HINT}")


def load_flame_pickle(path: str | Path) -> dict:
    """Load a FLAME-format pickle safely (restricted unpickler, `encoding="latin1"`).

    Returns the top-level dict with chumpy objects turned into numpy arrays. Raises `AgoraError`
    for a missing, truncated or non-pickle file, a forbidden global, or a non-dict payload.
    """
    path = Path(path)
    if not path.is_file():
        raise _missing_file_error(path, "FLAME model pickle")
    data = path.read_bytes()
    try:
        obj = _RestrictedUnpickler(io.BytesIO(data), path).load()
    except AgoraError:
        raise
    except Exception as exc:  # only allow-listed constructors ran: any failure means a bad file
        raise file_error(path, f"not a readable pickle (truncated or corrupt?): "
                               f"{type(exc).__name__}: {exc}") from None
    if not isinstance(obj, dict):
        raise file_error(path, f"expected a dict of FLAME arrays, found {type(obj).__name__}")
    return _unstub(obj, path)


def _array(path, d, key, ndim, dtype=np.float64) -> np.ndarray:
    value = d[key]
    if sp.issparse(value):
        value = value.toarray()
    try:
        arr = np.asarray(value, dtype=dtype)
    except (TypeError, ValueError):
        raise file_error(path, f"'{key}' is not a numeric array ({type(value).__name__})") from None
    if arr.ndim != ndim:
        raise file_error(path, f"'{key}' has shape {arr.shape}, expected {ndim} dimensions")
    if not np.all(np.isfinite(arr)):
        raise file_error(path, f"'{key}' contains non-finite values (NaN or inf)")
    return arr


def _check_shape(path, key, arr, expected):
    if any(e is not None and a != e for a, e in zip(arr.shape, expected)) or len(arr.shape) != len(expected):
        want = "(" + ", ".join("*" if e is None else str(e) for e in expected) + ")"
        raise file_error(path, f"'{key}' has shape {tuple(arr.shape)}, expected {want}")


def load_eyelid_blendshapes(path: str | Path, num_vertices: int | None = None) -> np.ndarray:
    """Eyelid blendshapes [V,3,2] (column 0 left, 1 right, as SMIRK's `eyelid_params`).

    `path` is a directory holding SMIRK's `l_eyelid.npy` and `r_eyelid.npy` ([V,3] each), or one
    `.npy` file of shape [V,3,2]. `num_vertices` None accepts any V (doctor, without a model).
    """
    path = Path(path)
    try:
        if path.is_dir():
            dirs = np.stack([np.load(path / "l_eyelid.npy", allow_pickle=False),
                             np.load(path / "r_eyelid.npy", allow_pickle=False)], -1)
        else:
            dirs = np.load(path, allow_pickle=False)
        dirs = np.asarray(dirs, dtype=np.float64)
    except FileNotFoundError as exc:
        raise file_error(path, f"eyelid blendshapes not found ({exc.filename}); expected a folder "
                               "with l_eyelid.npy and r_eyelid.npy or one [V,3,2] .npy") from None
    except (TypeError, *ARCHIVE_ERRORS) as exc:  # not .npy, truncated, pickled objects, l/r unequal
        raise file_error(path, f"cannot read eyelid blendshapes: {exc}") from None
    v = dirs.shape[0] if num_vertices is None and dirs.ndim else num_vertices
    if dirs.shape != (v, 3, 2) or not np.all(np.isfinite(dirs)):
        raise file_error(path, f"eyelid blendshapes have shape {dirs.shape}, expected "
                               f"({v if v is not None else 'V'}, 3, 2) finite values "
                               "(l_eyelid.npy / r_eyelid.npy: [V, 3] each)")
    return dirs


def flame_assets_from_pickle(pkl_path: str | Path, uv_obj_path: str | Path,
                             num_shape: int | None = None,
                             eyelids_path: str | Path | None = None) -> FlameAssets:
    """Build `FlameAssets` from a FLAME-format pickle plus a UV template obj.

    `shapedirs [V,3,K]` is split into shape (`num_shape`; else the pickle's `agora_num_shape`;
    else 300, FLAME 2020/2023) and expression (the rest). `J_regressor` becomes dense.
    `eyelids_path` (SMIRK's eyelid blendshapes, `load_eyelid_blendshapes`) replaces the pickle's own
    and adds "+eyelids" to the model id.
    Every schema problem is an `AgoraError` naming the file.
    """
    pkl_path, uv_obj_path = Path(pkl_path), Path(uv_obj_path)
    d = load_flame_pickle(pkl_path)
    missing = [k for k in REQUIRED_KEYS if k not in d]
    if missing:
        raise file_error(pkl_path, f"not a FLAME model: missing key(s) {', '.join(missing)}")
    v_template = _array(pkl_path, d, "v_template", 2)
    num_v = v_template.shape[0]
    _check_shape(pkl_path, "v_template", v_template, (None, 3))
    faces = _array(pkl_path, d, "f", 2, dtype=np.float64)
    _check_shape(pkl_path, "f", faces, (None, 3))
    if np.any(faces != np.round(faces)) or faces.min() < 0 or faces.max() >= num_v:
        raise file_error(pkl_path, f"'f' must hold integer vertex indices in [0, {num_v})")
    faces = faces.astype(np.int64)
    shapedirs_all = _array(pkl_path, d, "shapedirs", 3)
    _check_shape(pkl_path, "shapedirs", shapedirs_all, (num_v, 3, None))
    posedirs = _array(pkl_path, d, "posedirs", 3)
    _check_shape(pkl_path, "posedirs", posedirs, (num_v, 3, 36))
    j_regressor = _array(pkl_path, d, "J_regressor", 2)
    _check_shape(pkl_path, "J_regressor", j_regressor, (5, num_v))
    weights = _array(pkl_path, d, "weights", 2)
    _check_shape(pkl_path, "weights", weights, (num_v, 5))
    if np.abs(weights.sum(axis=1) - 1).max() > 1e-3:
        raise file_error(pkl_path, "'weights' rows must sum to 1 (skinning weights)")
    kintree = _array(pkl_path, d, "kintree_table", 2, dtype=np.int64)
    _check_shape(pkl_path, "kintree_table", kintree, (2, 5))

    if num_shape is None:
        num_shape = d.get("agora_num_shape", DEFAULT_NUM_SHAPE)
        if not isinstance(num_shape, (int, np.integer)):
            raise file_error(pkl_path, f"'agora_num_shape' must be an integer, found {num_shape!r}")
        num_shape = int(num_shape)
    k = shapedirs_all.shape[2]
    if not 0 < num_shape < k:
        raise file_error(pkl_path, f"'shapedirs' has {k} components, cannot split off {num_shape} "
                                   "shape components and keep expression components")
    eyelid_dirs = None
    if "agora_eyelid_dirs" in d:
        eyelid_dirs = _array(pkl_path, d, "agora_eyelid_dirs", 3)
        _check_shape(pkl_path, "agora_eyelid_dirs", eyelid_dirs, (num_v, 3, 2))
    if eyelids_path is not None:
        eyelid_dirs = load_eyelid_blendshapes(eyelids_path, num_v)

    uv_vertices, uv_coords, obj_faces, uv_faces = read_uv_obj(uv_obj_path)
    if obj_faces.shape != faces.shape or not np.array_equal(obj_faces, faces):
        raise file_error(uv_obj_path, f"UV template topology ({len(uv_vertices)} vertices, "
                                      f"{len(obj_faces)} faces) does not match the model "
                                      f"{pkl_path.name} ({num_v} vertices, {len(faces)} faces)")
    raw_extras = d.get("agora_extras", {})
    if not isinstance(raw_extras, dict):
        raise file_error(pkl_path, "'agora_extras' must be a dict of index arrays")
    extras = {str(key): np.asarray(value) for key, value in raw_extras.items()}
    if "agora_model_id" in d:
        model_id = str(d["agora_model_id"])
    else:
        model_id = "flame-" + hashlib.sha1(pkl_path.read_bytes()).hexdigest()[:12]
    if eyelids_path is not None:  # another basis, so G's weights (head buffers) differ: say so in the id
        model_id += "+eyelids"
    return FlameAssets(
        v_template=v_template, faces=faces,
        shapedirs=shapedirs_all[:, :, :num_shape], exprdirs=shapedirs_all[:, :, num_shape:],
        posedirs=posedirs, J_regressor=j_regressor, weights=weights, kintree_table=kintree,
        uv_coords=uv_coords, uv_faces=uv_faces, eyelid_dirs=eyelid_dirs,
        model_id=model_id, extras=extras,
    )


def save_flame_pickle(assets: FlameAssets, path: str | Path) -> None:
    """Write `assets` in the FLAME 2020 pickle schema (plain numpy + scipy.sparse), atomically.

    Keys: `v_template`, `f` (uint32), `shapedirs` = concat(shape, expression) [V,3,S+E],
    `posedirs`, `J_regressor` (csc_matrix), `weights`, `kintree_table` (root parent 4294967295),
    `bs_style`, `bs_type`, and ours: `agora_num_shape`, `agora_model_id`, `agora_extras`,
    optionally `agora_eyelid_dirs`. smplx's FLAME loads the result directly. The UV layout is not
    stored here; write it with `write_uv_obj`.
    """
    path = Path(path)
    kintree = np.asarray(assets.kintree_table, dtype=np.int64).copy()
    kintree[0, 0] = int(ROOT_PARENT)
    payload = {
        "v_template": np.asarray(assets.v_template, dtype=np.float64),
        "f": np.asarray(assets.faces, dtype=np.uint32),
        "shapedirs": np.concatenate([assets.shapedirs, assets.exprdirs], axis=2).astype(np.float64),
        "posedirs": np.asarray(assets.posedirs, dtype=np.float64),
        "J_regressor": sp.csc_matrix(np.asarray(assets.J_regressor, dtype=np.float64)),
        "weights": np.asarray(assets.weights, dtype=np.float64),
        "kintree_table": kintree,
        "bs_style": "lbs",
        "bs_type": "lrotmin",
        "agora_num_shape": int(assets.num_shape),
        "agora_model_id": str(assets.model_id),
        "agora_extras": {k: np.asarray(v) for k, v in assets.extras.items()},
    }
    if assets.eyelid_dirs is not None:
        payload["agora_eyelid_dirs"] = np.asarray(assets.eyelid_dirs, dtype=np.float64)
    atomic_write_bytes(path, pickle.dumps(payload, protocol=2))
