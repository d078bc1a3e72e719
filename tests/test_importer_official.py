"""The authors' released-model format: inert reading, the import, and an exact forward.

The fixtures were written by the authors' own code with random weights; `*_io.pt` holds what their
forward computed. Tolerances: `official_fixtures.py`.
"""

from __future__ import annotations

import dataclasses
import os
import pickle
import shutil
import subprocess
import sys

import pytest
import torch

from agora_core.head import FlameParams
from agora_core.errors import AgoraError
from agora_core.head import HeadModel
from agora_core.importer import (
    InertRecord,
    convert_official_state,
    import_official_checkpoint,
    load_imported_run,
    load_inert_pickle,
    official_generator_config,
    official_head_assets,
    read_official_checkpoint,
)
from agora_core.models.agora_generator import AgoraGenerator
from agora_core.render.cameras import deca_camera, deca_mapping_label
from official_fixtures import OFFICIAL, QUAT_TOL, TOL, rel


def _flame(case):
    fp = case["inputs"]["flame_params"]  # shape 300 | expression 50 | global 3 | jaw 3 | eyelids 2
    return fp[:, :300], fp[:, 300:350], fp[:, 353:356], fp[:, 356:358]


@pytest.mark.parametrize("index", [0, 1, 2])
@torch.no_grad()
def test_forward_reproduces_the_authors_reference(official, official_io, index):
    _, G = official
    case = official_io["cases"][index]
    inp = case["inputs"]
    shape, expr, jaw, eyelids = _flame(case)
    ws = G.mapping(inp["z"], deca_mapping_label(inp["c"]), inp["truncation_psi"])
    assert rel(ws, case["ws"]) < TOL
    cache = G.identity(None, None, shape, ws=ws, noise_mode="const")
    assert rel(cache.tap_features, case["features_at_res"]) < TOL
    assert rel(cache.tap_skip_image, case["img_at_res"]) < TOL
    flame = FlameParams(shape=shape, expression=expr, jaw=jaw, eyelids=eyelids)
    vertices, joints = G.head.forward_with_joints(flame)
    assert rel(vertices, case["flame_vertices_posed"]) < TOL
    if "condition_map" in case:
        from agora_core.models.shape_conditioning import shape_displacement

        assert rel(G.uv_position_map(shape_displacement(G.head, shape)), case["condition_map"]) < TOL
        # our cached planes hold the position channels after the 1×1 position conv
        assert rel(cache.planes[:, 3:], case["identity_planes_raw"][:, 3:]) < TOL
    out = G.animate(cache, flame, noise_mode="const").gaussians
    ri = case["rasterizer_inputs"]
    assert rel(out.means, ri["means"]) < TOL
    assert rel(out.log_scales.exp(), ri["scales"]) < TOL
    assert rel(out.opacities, ri["opacities"]) < TOL
    assert rel(out.sh, ri["colors"]) < TOL
    assert rel(out.quats, ri["quats"]) < QUAT_TOL
    pre = case["gaussian_attributes_pre_renderer"]
    assert rel(out.log_scales, pre["SCALE"]) < TOL
    # Their pre-renderer rotation is before the column normalisation: the same weights with the
    # per-Gaussian rule must give it.
    per_gaussian = dataclasses.replace(G.config, quaternion_norm="per_gaussian")
    G2 = AgoraGenerator(per_gaussian, G.head)
    G2.load_state_dict(G.state_dict())
    q = G2.eval().animate(cache, flame, noise_mode="const").gaussians.quats
    assert rel(q, pre["ROTATION"]) < QUAT_TOL
    cam = deca_camera(inp["c"], joints[:, 0])
    assert rel(cam.world2cam(), ri["viewmats"][:, 0]) < TOL
    assert rel(cam.pixel_intrinsics(ri["width"], ri["height"]), ri["Ks"][:, 0]) < TOL


@torch.no_grad()
def test_deformation_planes_match_before_sampling(official, official_io):
    _, G = official
    case = official_io["cases"][1]
    shape, expr, jaw, eyelids = _flame(case)
    cache = G.identity(None, None, shape, ws=case["ws"], noise_mode="const")
    from agora_core.models.deformation_branch import expression_condition
    from agora_core.models.lifting import sample_uv_attributes

    e = expression_condition(FlameParams(expression=expr, jaw=jaw, eyelids=eyelids), G.config.expr_cond_dim)
    assert torch.equal(e, case["deform_code"])  # a concatenation of the inputs: exact
    planes = G.deformation_branch(cache.tap_features, cache.ws, e, "const", skip_image=cache.tap_skip_image,
                                  plane_mask=G.head.uv_residual_mask)
    sampled = sample_uv_attributes(planes, G.samples, padding_mode="zeros")
    assert rel(sampled, case["deform_uv_attributes_sampled"]) < TOL


def test_checkpoint_config_and_head_are_read(official):
    ckpt, G = official
    assert ckpt.source == "G_ema"
    assert G.num_gaussians == 2789  # the fixture's count (README)
    assert G.head.num_shape == 300 and G.head.num_expr == 50 and G.head.eyelids_after_skinning
    assert G.config.channel_base == 1024 and G.config.channel_max == 32 and G.config.c_dim == 12


def test_import_writes_a_run_folder_that_loads_back(official_pkl, official, tmp_path):
    _, G = official
    run = import_official_checkpoint(official_pkl, tmp_path / "run")
    assert sorted(p.name for p in run.iterdir()) == ["generator.safetensors", "head.safetensors", "imported.json"]
    loaded = load_imported_run(run)
    assert loaded.generator.head.model_id == G.head.model_id
    mine, theirs = loaded.generator.state_dict(), G.state_dict()
    assert mine.keys() == theirs.keys() and all(torch.equal(mine[k], theirs[k]) for k in mine)
    with pytest.raises(AgoraError, match="already exists"):
        import_official_checkpoint(official_pkl, run)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp folder left


def test_cli_import_damaged_file_is_one_line(tmp_path, official_pkl):
    bad = tmp_path / "checkpoint-20500.pkl"
    bad.write_bytes(official_pkl.read_bytes()[: 1 << 20])  # truncated
    proc = subprocess.run([sys.executable, "-m", "agora_cli.app", "import", str(bad), "--out", str(tmp_path / "run")],
                          capture_output=True, text=True)
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and str(bad) in lines[0] and "Traceback" not in proc.stderr
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("payload", ["not a pickle at all", "dict_without_generator"])
def test_wrong_files_are_named(tmp_path, payload):
    path = tmp_path / "x.pkl"
    path.write_bytes(payload.encode() if payload.startswith("not") else pickle.dumps({"weights": [1, 2]}))
    with pytest.raises(AgoraError, match=str(path)):
        read_official_checkpoint(path)


def test_unsupported_flag_and_missing_tensor_are_named(official_pkl):
    ckpt = read_official_checkpoint(official_pkl)
    ckpt.config["use_mouth_branch"] = True
    with pytest.raises(AgoraError, match="use_mouth_branch"):
        official_generator_config(ckpt)
    ckpt.config["use_mouth_branch"] = False
    G = AgoraGenerator(official_generator_config(ckpt), HeadModel(official_head_assets(ckpt)))
    del ckpt.state["backbone.synthesis.b64.conv0.weight"]
    with pytest.raises(AgoraError, match="backbone.synthesis.b64.conv0.weight"):
        convert_official_state(ckpt, G)


def test_their_uv_grid_rule_gives_the_files_grid(official):
    from agora_core.importer.official_checkpoint import official_uv_grid

    ckpt, _ = official
    grid = official_uv_grid(ckpt.state["_barim"], int(ckpt.config["n_uniform_flame_vertices"]))
    assert torch.equal(grid, ckpt.state["_uv_grid"][0, :, 0])  # same float ops in the same order


# --- hostile files: the side effect must never happen -------------------------------------------------
class _RunsCommand:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _persistent_pickle(marker) -> bytes:
    """A hand-built eg3d persistent-class record whose embedded module source writes a file."""
    src = f"open({str(marker)!r}, 'w').write('pwned')\nclass Layer:\n    pass\n"
    meta = {"type": "class", "version": 6, "module_src": src, "class_name": "Layer", "state": {"w": 1}}
    body = pickle.dumps(meta, protocol=4)[2:-1]  # the dict without PROTO header and STOP
    short = lambda text: b"\x8c" + bytes([len(text)]) + text.encode()  # noqa: E731  SHORT_BINUNICODE
    return (b"\x80\x04" + short("eg3d.torch_utils.persistence") + short("_reconstruct_persistent_obj")
            + b"\x93" + body + b"\x85R.")  # STACK_GLOBAL, the meta dict, TUPLE1, REDUCE, STOP


def test_hostile_pickles_stay_inert(tmp_path):
    marker = tmp_path / "pwned"
    cases = {"reduce": pickle.dumps({"G_ema": _RunsCommand(marker)}),
             "persistent": _persistent_pickle(marker)}
    for name, data in cases.items():
        path = tmp_path / f"{name}.pkl"
        path.write_bytes(data)
        subprocess.run([sys.executable, "-c", "import pickle, sys, types\n"  # the file really acts when unpickled
                        "m = types.ModuleType('eg3d.torch_utils.persistence')\n"
                        "m._reconstruct_persistent_obj = lambda meta: exec(meta['module_src'], {})\n"
                        "sys.modules['eg3d'] = sys.modules['eg3d.torch_utils'] = types.ModuleType('eg3d')\n"
                        "sys.modules['eg3d.torch_utils.persistence'] = m\n"
                        f"pickle.load(open({str(path)!r}, 'rb'))"], check=True)
        assert marker.exists(), name
        marker.unlink()
        obj = load_inert_pickle(path)
        assert not marker.exists(), name
        with pytest.raises(AgoraError):
            read_official_checkpoint(path)
        assert not marker.exists(), name
    obj = load_inert_pickle(tmp_path / "reduce.pkl")
    assert isinstance(obj["G_ema"], InertRecord) and obj["G_ema"].path.endswith("system")
    rec = load_inert_pickle(tmp_path / "persistent.pkl")
    assert rec.class_name == "Layer" and rec.state == {"w": 1}


def _getattr_pickle(marker) -> bytes:
    """getattr(__import__("os"), "system")("touch marker"), in protocol-0 opcodes."""
    return (b"cbuiltins\ngetattr\n(cbuiltins\n__import__\n(Vos\ntRVsystem\ntR(V"
            + f"touch {marker}".encode() + b"\ntR.")


def test_getattr_trick_stays_inert(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "getattr.pkl"
    path.write_bytes(_getattr_pickle(marker))
    # The file is really hostile: a plain unpickle runs the command (in a child process).
    subprocess.run([sys.executable, "-c", f"import pickle; pickle.load(open({str(path)!r}, 'rb'))"], check=True)
    assert marker.exists()
    marker.unlink()
    record = load_inert_pickle(path)
    assert isinstance(record, InertRecord) and not marker.exists()


# --- damaged files: one AgoraError line, never a traceback --------------------------------------------
def test_importer_readers_survive_damaged_files(official_pkl, imported_run, tmp_path):
    import json

    from agora_core.importer.official_agora_m import read_official_basis, read_official_mlp
    from test_reliability_fuzz import _run, fuzz_bytes

    failures: list[str] = []
    data = official_pkl.read_bytes()
    rng = torch.Generator().manual_seed(0)
    cuts = [0, 1, 16, 4096, len(data) // 2, len(data) - 1] + torch.randint(1, len(data), (3,), generator=rng).tolist()
    for cut in cuts:  # truncations and a corrupted header of the 79 MB pickle (bit flips in tensor data stay data)
        (tmp_path / "c.pkl").write_bytes(data[:cut])
        _run(read_official_checkpoint, tmp_path / "c.pkl", f"checkpoint cut at {cut}", failures)
    (tmp_path / "c.pkl").write_bytes(data[:2] + b"\xff" * 64 + data[66:4096])
    _run(read_official_checkpoint, tmp_path / "c.pkl", "checkpoint with a damaged header", failures)
    failures += fuzz_bytes(lambda p: read_official_basis(p, 2789), OFFICIAL / "agora_m" / "svd_basis.pt", tmp_path)
    failures += fuzz_bytes(lambda p: read_official_mlp(p, 512, 8), OFFICIAL / "agora_m" / "mlp_regressor.pt", tmp_path)
    run = tmp_path / "run"
    run.mkdir()
    for name in ("imported.json", "head.safetensors", "generator.safetensors"):
        shutil.copy(imported_run / name, run / name)
    for name in ("head.safetensors", "generator.safetensors"):
        good = (run / name).read_bytes()
        for i, blob in enumerate([b"", good[:100], good[: len(good) // 2], good[:8] + b"\xff" * 16 + good[24:]]):
            (run / name).write_bytes(blob)
            _run(load_imported_run, run, f"{name} mutation {i}", failures)
        (run / name).write_bytes(good)
    manifest = json.loads((run / "imported.json").read_text())
    docs: list[object] = [[], "x", None]
    for key in ("format", "format_version", "generator", "head_model"):  # the fields the loader reads
        docs.append({k: v for k, v in manifest.items() if k != key})
        docs.extend({**manifest, key: swap} for swap in (None, -1, "x", [1], {"a": 1}))
    docs.append({**manifest, "generator": {**manifest["generator"], "uv_anchor": "nowhere"}})
    for i, doc in enumerate(docs):
        (run / "imported.json").write_text(json.dumps(doc))
        _run(load_imported_run, run, f"imported.json mutation {i}", failures)
    assert not failures, "\n".join(failures[:10])
