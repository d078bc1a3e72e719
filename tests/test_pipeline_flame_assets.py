"""The real-asset path end to end through the `agora` CLI, on small files in the real formats.

What a user with FFHQ, FLAME 2020, SMIRK_em1.pt and MODNet runs: prep-data on photos (datasets say
head model "flame2020"), train configs/ffhq256.yaml shrunk with --set on a FLAME pickle + UV obj with
the mouth interior (heads "flame-<hash>+mouth"), then sample, invert, extract-basis, fit-mlp,
reenact, export onnx/ply/web and eval --quick with SMIRK as the tracker.

Assets: the SMIRK_em1.pt-layout fixture (random weights), a toy MODNet-format ONNX, skimage's
astronaut photo, and a FLAME 2020 generic_model.pkl written the way the official one is (chumpy
`Ch` for shapedirs, `scipy.sparse.csc.csc_matrix` for J_regressor, protocol 2, 300 shape + 100
expression components) around a small sphere head with a mouth hole: the schema fixture's own mesh
is random and has no mouth opening to build the interior on.
"""

from __future__ import annotations

import json
import pickle
import pickletools
import sys
import types
from pathlib import Path

import cv2
import numpy as np
import pytest
import scipy.sparse as sp
from face_helpers import one_thread_per_module  # noqa: F401  (autouse)
from face_helpers import FIXTURES, SMIRK_FIXTURE, astronaut, write_astronaut_video, write_mean_sigmoid_onnx
from sphere_head import sphere_head_assets
from test_head_flame import _uv_obj_for
from test_train_fixtures import TINY_OVERRIDES
from typer.testing import CliRunner

from agora_cli.app import app
from agora_core.data.format import read_dataset_index
from agora_core.head import load_flame_pickle, write_uv_obj

REPO = Path(__file__).resolve().parents[1]
RES = 32
TRAIN_SET = {  # configs/ffhq256.yaml shrunk to a few CPU steps (tests/test_train_fixtures.py's sizes)
    **TINY_OVERRIDES, "resolution": RES, "total_kimg": 0.008, "generator.sh_degree": 0,
}

runner = CliRunner()


def _train_sets() -> list[str]:
    return [a for k, v in TRAIN_SET.items() for a in ("--set", f"{k}={v}")]


def _agora(*args) -> str:
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, f"agora {' '.join(map(str, args[:2]))}: {result.output}\n{result.exception!r}"
    return result.output


# ----------------------------------------------------------------------------- FLAME 2020 files

def _stand_in(module: str, name: str, patch: pytest.MonkeyPatch) -> type:
    """A class that pickles as `module.name` (chumpy does not install on current Python)."""
    cls = type(name, (), {"__module__": module, "__qualname__": name})
    parent = module.rpartition(".")[0]
    if parent and parent not in sys.modules:  # "chumpy" for "chumpy.ch"; scipy.sparse is real
        patch.setitem(sys.modules, parent, types.ModuleType(parent))
    fake = types.ModuleType(module)
    setattr(fake, name, cls)
    patch.setitem(sys.modules, module, fake)
    return cls


def write_flame2020_pickle(path: Path, v, f, shapedirs, posedirs, j_regressor, weights) -> Path:
    """generic_model.pkl as FLAME 2020 ships it (the object graph of the schema fixture): a dict,
    shapedirs a chumpy `Ch` whose state holds the array under "x", J_regressor a
    `scipy.sparse.csc.csc_matrix`, f uint32, the root's parent 4294967295, protocol 2."""
    with pytest.MonkeyPatch.context() as patch:
        ch_cls = _stand_in("chumpy.ch", "Ch", patch)
        csc_cls = _stand_in("scipy.sparse.csc", "csc_matrix", patch)
        ch = ch_cls()
        ch.__dict__.update(_dirty_vars={"x"}, x=shapedirs, _itr=None, _make_dense=False, _make_sparse=False,
                           _depends_on_deps={})
        csc = sp.csc_matrix(j_regressor)
        j_reg = csc_cls()
        j_reg.__dict__.update(_shape=csc.shape, maxprint=50, indptr=csc.indptr, indices=csc.indices, data=csc.data)
        payload = {
            "f": np.asarray(f, dtype=np.uint32), "v_template": v, "shapedirs": ch, "posedirs": posedirs,
            "J_regressor": j_reg, "J": j_regressor @ v, "weights": weights,
            "kintree_table": np.array([[4294967295, 0, 1, 1, 1], [0, 1, 2, 3, 4]], dtype=np.int64),
            "bs_style": "lbs", "bs_type": "lrotmin",
        }
        path.write_bytes(pickle.dumps(payload, protocol=2))
    return path


def _pickle_classes(data: bytes) -> set[str]:
    """The classes a pickle names, numpy's array machinery aside."""
    names = {arg for op, arg, _ in pickletools.genops(data) if op.name == "GLOBAL"}
    return {n for n in names if not n.startswith(("numpy", "_codecs", "__builtin__"))}


@pytest.fixture(scope="module")
def flame_files(tmp_path_factory) -> tuple[Path, Path]:
    """(generic_model.pkl, head_template.obj): a sphere head with a mouth hole in FLAME 2020's layout."""
    root = tmp_path_factory.mktemp("flame")
    head = sphere_head_assets(n_lat=12, n_lon=20)
    rng = np.random.default_rng(0)
    num_v = head.num_vertices
    shapedirs = 1e-4 * rng.normal(size=(num_v, 3, 400))  # 300 shape + 100 expression, as FLAME 2020
    shapedirs[:, :, :head.num_shape] = head.shapedirs
    shapedirs[:, :, 300:300 + head.num_expr] = head.exprdirs
    pkl = write_flame2020_pickle(root / "generic_model.pkl", head.v_template, head.faces, shapedirs,
                                 head.posedirs, head.J_regressor, head.weights)
    obj = root / "head_template.obj"
    write_uv_obj(obj, head.v_template, head.faces, head.uv_coords, head.uv_faces)
    fixture = FIXTURES / "flame2020_schema_tiny.pkl"
    assert _pickle_classes(pkl.read_bytes()) == _pickle_classes(fixture.read_bytes()) == {
        "chumpy.ch Ch", "scipy.sparse.csc csc_matrix"}
    assert load_flame_pickle(pkl)["shapedirs"].shape == (num_v, 3, 400)
    return pkl, obj


@pytest.fixture(scope="module")
def smirk_eyelids(tmp_path_factory) -> Path:
    """SMIRK's assets/ folder layout: l_eyelid.npy, r_eyelid.npy [V,3] float32, for the sphere head."""
    root = tmp_path_factory.mktemp("smirk_assets")
    dirs = sphere_head_assets(n_lat=12, n_lon=20).eyelid_dirs
    np.save(root / "l_eyelid.npy", dirs[:, :, 0].astype(np.float32))
    np.save(root / "r_eyelid.npy", dirs[:, :, 1].astype(np.float32))
    return root


# ----------------------------------------------------------------------------- photos, models

@pytest.fixture(scope="module")
def modnet(tmp_path_factory) -> Path:
    return write_mean_sigmoid_onnx(tmp_path_factory.mktemp("modnet") / "modnet.onnx")


def _write_rgb(path: Path, image: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    return path


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    """Three photos of the astronaut: as is, mirrored, shifted (all pass the Haar detector)."""
    root = tmp_path_factory.mktemp("photos")
    photo = astronaut()
    _write_rgb(root / "a.jpg", photo)
    _write_rgb(root / "b.jpg", np.ascontiguousarray(photo[:, ::-1]))
    _write_rgb(root / "c.png", np.roll(np.roll(photo, 24, axis=1), 16, axis=0))
    return root


@pytest.fixture(scope="module")
def driving_video(tmp_path_factory) -> Path:
    return write_astronaut_video(tmp_path_factory.mktemp("video") / "drive.mp4", frames=3, dx=4)


# ----------------------------------------------------------------------------- the chain

@pytest.fixture(scope="module")
def dataset(photos, modnet, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ffhq") / "dataset"
    _agora("prep-data", photos, out, "--smirk", SMIRK_FIXTURE, "--modnet", modnet, "--resolution", RES,
           "--mirror", "--device", "cpu", "--workers", 0)
    return out


@pytest.fixture(scope="module")
def run(dataset, flame_files, smirk_eyelids, tmp_path_factory) -> Path:
    pkl, obj = flame_files
    out = tmp_path_factory.mktemp("runs") / "run"
    _agora("train", "--config", REPO / "configs" / "ffhq256.yaml", "--data", dataset, "--out", out,
           "--flame", pkl, "--flame-uv", obj, "--flame-eyelids", smirk_eyelids, "--device", "cpu", "--no-progress",
           *_train_sets())
    return out


@pytest.fixture(scope="module")
def avatar(run, photos, modnet, flame_files, smirk_eyelids, tmp_path_factory) -> Path:
    pkl, obj = flame_files
    out = tmp_path_factory.mktemp("avatar") / "avatar.pt"
    _agora("invert", photos / "a.jpg", "--ckpt", run, "--out", out, "--smirk", SMIRK_FIXTURE, "--modnet", modnet,
           "--flame", pkl, "--flame-uv", obj, "--flame-eyelids", smirk_eyelids, "--w-steps", 2, "--g-steps", 2, "--device", "cpu", "--threads", 1,
           "--no-progress")
    return out


def test_prep_data_labels_the_dataset_flame2020(dataset):
    index = read_dataset_index(dataset)
    assert index.header.head_model == "flame2020" and index.header.resolution == RES
    assert len(index) == 6 and index.mirrored_flame is not None
    assert index.flame["shape"].shape == (6, 300) and index.flame["expression"].shape == (6, 50)


def test_train_on_the_flame_pickle_with_mouth(run):
    from agora_core.inference.checkpoint import load_checkpoint

    state = load_checkpoint(run)
    assert state["head_model"].startswith("flame-") and state["head_model"].endswith("+eyelids+mouth")
    assert state["config"]["head"]["source"] == "flame" and state["config"]["head"]["mouth_interior"]
    assert state["config"]["head"]["flame_eyelids"]  # later stages rebuild the head with SMIRK's eyelids


def test_the_schema_fixture_pickle_trains_without_a_mouth_it_does_not_have(dataset, tmp_path):
    """The genuine chumpy file (random mesh, no mouth opening): G and D build on it; asking for the
    mouth interior is one line naming the file and the way out."""
    fixture = FIXTURES / "flame2020_schema_tiny.pkl"
    obj = _uv_obj_for(fixture, tmp_path / "head_template.obj")
    args = ["train", "--config", REPO / "configs" / "ffhq256.yaml", "--data", dataset, "--out", tmp_path / "run",
            "--flame", fixture, "--flame-uv", obj, "--dry-run", *_train_sets()]
    assert "flame-" in _agora(*args, "--set", "head.mouth_interior=false")
    result = runner.invoke(app, [str(a) for a in args])
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert lines[0].startswith("warning:") and "eyelid parameters will not move" in lines[0]  # no --flame-eyelids
    lines = lines[1:]
    assert result.exit_code == 2 and len(lines) == 1, result.output
    assert "flame2020_schema_tiny.pkl: cannot add the mouth interior" in lines[0]
    assert "--set head.mouth_interior=false" in lines[0]


def test_sample(run, tmp_path):
    _agora("sample", run, "--n", 2, "--out", tmp_path / "grid.png", "--ply", tmp_path / "ply", "--threads", 1)
    grid = cv2.imread(str(tmp_path / "grid.png"))
    assert grid.shape == (256, 2 * 256, 3)  # each avatar at the default --size
    assert sorted(p.name for p in (tmp_path / "ply").iterdir()) == ["avatar_000.ply", "avatar_001.ply"]


def test_invert_writes_an_avatar_of_the_flame_head(avatar, run):
    from agora_core.invert.avatar_file import AvatarFile
    from agora_core.inference.checkpoint import load_checkpoint

    doc = AvatarFile.load(avatar)
    assert doc.head_model == load_checkpoint(run)["head_model"]
    assert avatar.with_name("avatar.preview.png").is_file()


def test_invert_from_the_prep_data_dataset(run, dataset, tmp_path):
    """The images and stored SMIRK labels of the "flame2020" dataset invert on the pickle's head."""
    _agora("invert", "--dataset", dataset, "--index", "0,1", "--ckpt", run, "--out", tmp_path / "avatar.pt",
           "--w-steps", 1, "--g-steps", 1, "--device", "cpu", "--threads", 1, "--no-progress")
    assert (tmp_path / "avatar.pt").is_file()


def test_reenact_a_video_tracked_with_smirk(avatar, driving_video, modnet, flame_files, tmp_path):
    from agora_core.invert.video_io import VideoReader

    pkl, obj = flame_files
    out = tmp_path / "out.mp4"
    _agora("reenact", avatar, driving_video, "--out", out, "--smirk", SMIRK_FIXTURE, "--modnet", modnet,
           "--flame", pkl, "--flame-uv", obj, "--device", "cpu", "--threads", 1, "--size", RES, "--no-progress")
    frames = VideoReader(out).read_all()
    assert len(frames) == 3 and frames[0].shape == (RES, RES, 3)


def test_exports(avatar, run, dataset, tmp_path):
    _agora("export", "onnx", avatar, "--out", tmp_path / "deform.onnx", "--threads", 1)
    assert (tmp_path / "deform.onnx").is_file()
    _agora("export", "ply", avatar, "--out", tmp_path / "neutral.ply", "--threads", 1)
    _agora("export", "ply", run, "--seed", 1, "--out", tmp_path / "sampled.ply", "--threads", 1)
    assert (tmp_path / "neutral.ply").stat().st_size > 0 and (tmp_path / "sampled.ply").stat().st_size > 0
    basis, mlp = tmp_path / "basis.safetensors", tmp_path / "mlp.safetensors"
    _agora("extract-basis", run, "--out", basis, "--n", 8, "--k", 2, "--heldout", 2, "--expressions-per-identity", 4,
           "--batch-size", 4, "--dataset", dataset, "--device", "cpu", "--threads", 1)
    _agora("fit-mlp", run, basis, "--out", mlp, "--n", 8, "--epochs", 1, "--hidden", 8, "--batch-size", 4,
           "--expressions-per-identity", 4, "--dataset", dataset, "--device", "cpu", "--threads", 1)
    _agora("export", "web", avatar, "--basis", basis, "--mlp", mlp, "--out", tmp_path / "site", "--threads", 1)
    assert (tmp_path / "site" / "index.html").is_file()


def test_eval_quick_with_smirk_as_tracker(run, dataset, tmp_path):
    out = tmp_path / "eval.json"
    _agora("eval", run, "--data", dataset, "--quick", "--swd-images", 16, "--tracker", SMIRK_FIXTURE, "--json", out,
           "--device", "cpu", "--threads", 1, "--no-progress")
    doc = json.loads(out.read_text())
    assert doc["head_model"].endswith("+mouth") and doc["weights"]["tracker_kind"] == "smirk"
    metrics = doc["metrics"]
    assert metrics["fid"]["status"] == "needs weights" and metrics["swd"]["status"] == "ok"
    # SMIRK's 50 expression / 300 shape coefficients against the conditions G was given (head: 100 / 300)
    assert (metrics["aed"]["dims"], metrics["asd"]["dims"], metrics["aed"]["failed"]) == (50, 300, 0)
    assert all(np.isfinite(metrics[k]["value"]) for k in ("aed", "aed_jaw", "apd", "asd", "aed_eyelids"))
