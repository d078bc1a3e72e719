"""The authors' released-model format: inert reading, the import, and an exact forward.

The fixtures (`shared/fixtures/official`) were written by the authors' own code with random
weights; `*_io.pt` holds what their forward computed. Tolerances: float32 forward passes of ~20
layers along different kernels (grouped vs batched convs, another summation order) agree to a few
hundred ulps relative to each tensor's largest value, hence 2e-5. Quaternions are unit while the
raw rotation channels reach |raw| ≈ 20 here, and the activation multiplies their absolute errors
by up to π; the renderer's quaternions are also divided by per-component norms over all Gaussians
(~0.04) before the per-quaternion normalisation: hence 1e-4 for quaternions.
"""

from __future__ import annotations

import dataclasses
import lzma
import os
import pickle
import shutil
import subprocess
import sys

import pytest
import torch

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
from format_fixtures import FIXTURES

OFFICIAL = FIXTURES / "official"
TOL, QUAT_TOL = 2e-5, 1e-4


def _unxz(src, dst):
    with lzma.open(src) as f, open(dst, "wb") as g:
        shutil.copyfileobj(f, g)
    return dst


@pytest.fixture(scope="session")
def official_pkl(tmp_path_factory):
    return _unxz(OFFICIAL / "agora_official_format_random.pkl.xz", tmp_path_factory.mktemp("official") / "ckpt.pkl")


@pytest.fixture(scope="session")
def official_io(tmp_path_factory):
    path = _unxz(OFFICIAL / "agora_official_format_random_io.pt.xz", tmp_path_factory.mktemp("official_io") / "io.pt")
    return torch.load(path, weights_only=True)


@pytest.fixture(scope="session")
def official(official_pkl):
    ckpt = read_official_checkpoint(official_pkl)
    generator = AgoraGenerator(official_generator_config(ckpt), HeadModel(official_head_assets(ckpt)))
    generator.load_state_dict(convert_official_state(ckpt, generator))
    return ckpt, generator.eval().requires_grad_(False)


def rel(a, b):
    return float((a - b).abs().max() / b.abs().max())


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
    vertices, joints = G.head.forward_with_joints(shape, expr, jaw, torch.zeros(1, 3), torch.zeros(1, 6), eyelids)
    assert rel(vertices, case["flame_vertices_posed"]) < TOL
    if "condition_map" in case:
        from agora_core.models.shape_conditioning import shape_displacement

        assert rel(G.uv_position_map(shape_displacement(G.head, shape)), case["condition_map"]) < TOL
        # our cached planes hold the position channels after the 1×1 position conv
        assert rel(cache.planes[:, 3:], case["identity_planes_raw"][:, 3:]) < TOL
    out = G.animate(cache, expr, jaw, eyelids, noise_mode="const").gaussians
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
    q = G2.eval().animate(cache, expr, jaw, eyelids, noise_mode="const").gaussians.quats
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

    e = expression_condition(expr, jaw, eyelids, G.config.expr_cond_dim)
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


# --- stages on an imported run ------------------------------------------------------------------------
@pytest.fixture(scope="session")
def imported_run(official_pkl, tmp_path_factory):
    return import_official_checkpoint(official_pkl, tmp_path_factory.mktemp("imported") / "run")


def test_sample_and_ply_splat_exports_run_on_an_imported_run(imported_run, tmp_path):
    from typer.testing import CliRunner

    from agora_cli.app import app
    from agora_core.gaussians import read_ply, read_splat

    runner = CliRunner()
    res = runner.invoke(app, ["sample", str(imported_run), "--n", "2", "--out", str(tmp_path / "g.png"),
                              "--ply", str(tmp_path / "ply"), "--resolution", "64"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "g.png").is_file() and len(list((tmp_path / "ply").glob("*.ply"))) == 2
    ply = read_ply(tmp_path / "ply" / "avatar_000.ply")
    assert ply.means.shape[1] == 2789 and torch.isfinite(ply.means).all()
    for kind in ("ply", "splat"):
        res = runner.invoke(app, ["export", kind, str(imported_run), "--seed", "0", "--out", str(tmp_path / f"a.{kind}")])
        assert res.exit_code == 0, res.output
    # the exported avatar is seed 0's identity: what `agora sample --seed 0 --n 1` draws (same batch,
    # same computation: equal to float32 rounding of the .ply round trip)
    res = runner.invoke(app, ["sample", str(imported_run), "--n", "1", "--out", str(tmp_path / "one.png"),
                              "--ply", str(tmp_path / "one"), "--resolution", "32"])
    assert res.exit_code == 0, res.output
    assert torch.allclose(read_ply(tmp_path / "a.ply").means, read_ply(tmp_path / "one" / "avatar_000.ply").means,
                          atol=1e-6)
    assert read_splat(tmp_path / "a.splat") is not None
    res = runner.invoke(app, ["export", "onnx", str(imported_run), "--seed", "0", "--out", str(tmp_path / "a.onnx")])
    assert res.exit_code == 2 and "not supported yet" in res.output and not (tmp_path / "a.onnx").exists()


@pytest.mark.parametrize("argv", [["invert", "{tmp}/x.png", "--ckpt", "{run}", "--out", "{tmp}/a.pt"],
                                  ["eval", "{run}", "--data", "{tmp}"]])
def test_stages_without_imported_support_say_so_in_one_line(imported_run, tmp_path, argv):
    from typer.testing import CliRunner

    from agora_cli.app import app

    (tmp_path / "x.png").write_bytes(b"")
    args = [a.format(run=imported_run, tmp=tmp_path) for a in argv]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 2, res.output
    assert "imported run" in res.output and "Traceback" not in res.output


def test_their_uv_grid_rule_gives_the_files_grid(official):
    from agora_core.importer.official_checkpoint import official_uv_grid

    ckpt, _ = official
    grid = official_uv_grid(ckpt.state["_barim"], int(ckpt.config["n_uniform_flame_vertices"]))
    assert torch.equal(grid, ckpt.state["_uv_grid"][0, :, 0])  # same float ops in the same order


# --- AGORA-M ------------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def official_agora_m_io(tmp_path_factory):
    path = _unxz(OFFICIAL / "agora_m" / "agora_m_reference_io.pt.xz", tmp_path_factory.mktemp("agm") / "io.pt")
    return torch.load(path, weights_only=True)


@pytest.mark.parametrize("index", [0, 1])
@torch.no_grad()
def test_imported_agora_m_reproduces_the_authors_reference(official, official_agora_m_io, imported_run, index):
    """Their AGORA-M pair, converted into the run folder and read back by our loaders: the regressor's
    coefficients and the blended Gaussians their renderer receives."""
    from agora_core.importer import import_official_agora_m
    from agora_core.mobile.basis_file import GaussianBasis
    from agora_core.mobile.coefficient_mlp import CoefficientMLP
    from agora_core.models.blendshape_avatar import BlendshapeAvatar

    _, G = official
    if not (imported_run / "basis.safetensors").exists():
        import_official_agora_m(OFFICIAL / "agora_m" / "svd_basis.pt", OFFICIAL / "agora_m" / "mlp_regressor.pt",
                                imported_run)
    basis = GaussianBasis.load(imported_run / "basis.safetensors")
    mlp, _ = CoefficientMLP.load(imported_run / "mlp.safetensors")
    assert mlp.hidden_sizes == (256, 512) and basis.extra["attribute_space"] == "authors"
    case = official_agora_m_io["cases"][index]
    inp = case["inputs"]
    ws = G.mapping(inp["z"], deca_mapping_label(inp["c_front"]), inp["truncation_psi"])
    assert rel(ws[:, 0], case["w_code"]) < TOL
    cache = G.identity(None, None, inp["fixed_shape"][None], ws=ws, noise_mode="const")
    avatar = BlendshapeAvatar.from_generator(G, cache, basis, mlp)
    base = case["base_gaussians_physical"]
    assert rel(avatar.neutral.means, base["xyz"]) < TOL and rel(avatar.neutral.quats, base["rotation"]) < QUAT_TOL
    f = inp["flame_55"]
    c = avatar.coefficients(f[:, :50], f[:, 50:53], f[:, 53:])
    assert rel(torch.cat([c[g] for g in ("xyz", "scale", "rotation", "opacity")], 1), case["mlp_output_coefficients"]) < TOL
    out = avatar.blend(c)
    blended, ri = case["blended_physical"], case["rasterizer_inputs"]
    assert rel(out.means, blended["xyz"]) < TOL and rel(out.means, ri["means"]) < TOL
    assert rel(out.log_scales.exp(), blended["scale"]) < TOL
    assert rel(out.opacities, ri["opacities"]) < TOL
    assert rel(out.quats, ri["quats"]) < QUAT_TOL


def test_agora_m_import_errors_name_the_file(imported_run, tmp_path):
    from agora_core.importer import import_official_agora_m

    bad = tmp_path / "svd_basis.pt"
    d = torch.load(OFFICIAL / "agora_m" / "svd_basis.pt", weights_only=True)
    d["G"] = 1234
    torch.save(d, bad)
    with pytest.raises(AgoraError, match=f"{bad}: a basis for 1234 Gaussians"):
        import_official_agora_m(bad, OFFICIAL / "agora_m" / "mlp_regressor.pt", imported_run)
    m = torch.load(OFFICIAL / "agora_m" / "mlp_regressor.pt", weights_only=True)
    del m["state_dict"]["net.4.bias"]
    torch.save(m, tmp_path / "mlp.pt")
    with pytest.raises(AgoraError, match="net.4.bias"):
        import_official_agora_m(OFFICIAL / "agora_m" / "svd_basis.pt", tmp_path / "mlp.pt", imported_run)


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


def test_bench_runs_on_an_imported_run_with_its_agora_m_pair(imported_run, tmp_path):
    from typer.testing import CliRunner

    from agora_cli.app import app
    from agora_core.importer import import_official_agora_m

    run = tmp_path / "run"
    shutil.copytree(imported_run, run)
    for name in ("basis.safetensors", "mlp.safetensors"):
        (run / name).unlink(missing_ok=True)
    res = CliRunner().invoke(app, ["bench", "--ckpt", str(run), "--device", "cpu", "--frames", "2", "--warmup", "1",
                                   "--resolution", "32"])
    assert res.exit_code == 2 and "agora import svd_basis.pt" in res.output  # the pair is missing: says how
    import_official_agora_m(OFFICIAL / "agora_m" / "svd_basis.pt", OFFICIAL / "agora_m" / "mlp_regressor.pt", run)
    from agora_core.bench.bench_setup import run_bench
    from agora_core.bench.reenactment import BenchConfig

    result = run_bench(run, None, "cpu", BenchConfig(frames=2, warmup=1, batch_sizes=(1,), resolution=32))
    assert result.model["gaussians"] == 2789 and result.model["k"] == 8 and result.speedup["batch1"] > 0


def test_doctor_shows_an_imported_run(imported_run):
    from typer.testing import CliRunner

    from agora_cli.app import app

    res = CliRunner().invoke(app, ["doctor", "--run", str(imported_run)])
    assert res.exit_code in (0, 1), res.output  # 1 only when this machine cannot run the demo
    assert "imported run" in res.output and "2,789" in res.output and "DECA" in res.output


def test_web_export_refuses_an_imported_agora_m_pair_in_one_line(imported_run, tmp_path):
    from agora_core.export.agora_m_files import read_basis, read_mlp
    from agora_core.importer import import_official_agora_m

    run = tmp_path / "run"
    shutil.copytree(imported_run, run)
    for name in ("basis.safetensors", "mlp.safetensors"):
        (run / name).unlink(missing_ok=True)
    import_official_agora_m(OFFICIAL / "agora_m" / "svd_basis.pt", OFFICIAL / "agora_m" / "mlp_regressor.pt", run)
    with pytest.raises(AgoraError, match="authors' attribute spaces"):
        read_basis(run / "basis.safetensors")
    with pytest.raises(AgoraError, match="several hidden layers"):
        read_mlp(run / "mlp.safetensors")


def test_extract_basis_and_fit_mlp_run_on_an_imported_run(official, imported_run, tmp_path):
    """AGORA-M distilled from an imported model lives in the authors' residual spaces (linear scale,
    their quaternions), so `BlendshapeAvatar` blends it as theirs; K = 2 from 12 tuples (a smoke size)."""
    from typer.testing import CliRunner

    from agora_cli.app import app
    from agora_core.inference import draw_identity, load_model
    from agora_core.mobile.basis_file import GaussianBasis
    from agora_core.mobile.coefficient_mlp import CoefficientMLP
    from agora_core.models.blendshape_avatar import BlendshapeAvatar

    runner = CliRunner()
    res = runner.invoke(app, ["extract-basis", str(imported_run), "--n", "12", "--k", "2", "--out", str(tmp_path / "b.safetensors")])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["fit-mlp", str(imported_run), str(tmp_path / "b.safetensors"), "--out",
                              str(tmp_path / "m.safetensors"), "--n", "12", "--epochs", "2"])
    assert res.exit_code == 0, res.output
    basis = GaussianBasis.load(tmp_path / "b.safetensors")
    mlp, _ = CoefficientMLP.load(tmp_path / "m.safetensors")
    assert basis.extra["attribute_space"] == "authors" and basis.num_gaussians == 2789
    model = load_model(imported_run)
    cache, _ = draw_identity(model, 0)
    avatar = BlendshapeAvatar.from_generator(model.generator, cache, basis, mlp)
    assert avatar.authors
    zero = {g: torch.zeros(1, basis.k) for g in basis.basis}
    with torch.no_grad():
        out = avatar.blend(zero)  # zero coefficients: the neutral, through their constraints
    clamped = avatar.neutral.log_scales.exp().clamp_min(1e-5).log()  # their scale floor (random weights reach it)
    assert rel(out.means, avatar.neutral.means) < TOL and rel(out.log_scales, clamped) < TOL


# --- reenactment of an imported run --------------------------------------------------------------------
def _smirk_clip(root, frames: int = 5):
    """A clip in the authors' per-frame SMIRK layout (<clip>/smirk/<frame>/*.npy)."""
    import numpy as np

    rng = np.random.default_rng(0)
    rows = {"exp": rng.normal(0, 0.5, (frames, 50)), "jawpose": np.c_[np.linspace(0, 0.2, frames), np.zeros((frames, 2))],
            "eyelid": rng.uniform(0, 1, (frames, 2)), "globalpose": np.c_[np.zeros(frames), np.linspace(-0.2, 0.2, frames),
                                                                            np.zeros(frames)],
            "shape": rng.normal(size=(frames, 300)), "cam": np.tile([8.0, 0.01, -0.02], (frames, 1))}
    for i in range(frames):
        d = root / "smirk" / f"{i:06d}"
        d.mkdir(parents=True)
        for name, values in rows.items():
            np.save(d / f"{name}.npy", values[i : i + 1].astype(np.float32))
    return rows


def test_smirk_clip_folders_are_read_as_driving_parameters(tmp_path):
    import numpy as np

    from agora_core.reenact.driving import DrivingSequence

    rows = _smirk_clip(tmp_path / "clip")
    seq = DrivingSequence.load(tmp_path / "clip")
    assert seq.num_frames == 5
    for ours, theirs in (("expression", "exp"), ("jaw", "jawpose"), ("eyelids", "eyelid"), ("global_pose", "globalpose")):
        assert torch.equal(torch.as_tensor(getattr(seq, ours)), torch.as_tensor(rows[theirs]).float())  # copies
    (tmp_path / "clip" / "smirk" / "000002" / "jawpose.npy").unlink()
    with pytest.raises(AgoraError, match="jawpose.npy: missing"):
        DrivingSequence.load(tmp_path / "clip")
    for bad in (b"", b"\x93NUMPY junk", np.zeros(7, np.float32).tobytes()):
        (tmp_path / "clip" / "smirk" / "000002" / "jawpose.npy").write_bytes(bad)
        with pytest.raises(AgoraError, match="jawpose.npy"):
            DrivingSequence.load(tmp_path / "clip")
    np.save(tmp_path / "clip" / "smirk" / "000002" / "jawpose.npy", np.zeros(4, np.float32))
    with pytest.raises(AgoraError, match="holds 4 values, expected 3"):
        DrivingSequence.load(tmp_path / "clip")


def test_reenact_drives_an_imported_run_with_their_camera_convention(imported_run, tmp_path):
    from typer.testing import CliRunner

    from agora_cli.app import app
    from agora_core.inference import load_model
    from agora_core.invert.video_io import VideoReader
    from agora_core.reenact.run import deca_driving_cameras

    _smirk_clip(tmp_path / "clip")
    res = CliRunner().invoke(app, ["reenact", str(imported_run), "--params", str(tmp_path / "clip"), "--seed", "0",
                                   "--out", str(tmp_path / "a.mp4"), "--resolution", "32", "--no-smooth"])
    assert res.exit_code == 0, res.output
    assert len(VideoReader(tmp_path / "a.mp4").read_all()) == 5
    res = CliRunner().invoke(app, ["reenact", str(imported_run), "--params", str(tmp_path / "clip"),
                                   "--out", str(tmp_path / "b.mp4")])
    assert res.exit_code == 2 and "--seed" in res.output
    # the cameras: the framing's DECA camera rotated by each frame's head pose about its root joint
    model = load_model(imported_run)
    head, n = model.generator.head, 3
    zeros = lambda k: torch.zeros(n, k)  # noqa: E731
    pose = torch.tensor([[0.0, -0.2, 0.0], [0.0, 0.0, 0.0], [0.1, 0.2, 0.0]])
    flame = {"expression": zeros(50), "jaw": zeros(3), "neck": zeros(3), "eyes": zeros(6), "eyelids": zeros(2)}
    cams = deca_driving_cameras(head, torch.zeros(1, 300), model.framing, pose, flame)
    _, joints = head.forward_with_joints(zeros(300), zeros(50), zeros(3), zeros(3), zeros(6), zeros(2))
    expected = deca_camera(torch.cat([pose, model.framing[3:].expand(n, 3)], 1), joints[:, 0])
    assert rel(cams.cam2world, expected.cam2world) < TOL and rel(cams.intrinsics, expected.intrinsics) < TOL
    assert rel(cams.intrinsics[:, 0, 0], torch.full((n,), 0.5 * 8 * 2.28)) < TOL  # s = 8 framing


def test_reenact_an_imported_run_from_a_video(imported_run, tmp_path):
    """The video path (face tracking through the SMIRK-format fixture) drives an imported identity."""
    from typer.testing import CliRunner

    from agora_cli.app import app
    from agora_core.invert.video_io import VideoReader
    from face_helpers import SMIRK_FIXTURE, write_astronaut_video, write_mean_sigmoid_onnx

    video = write_astronaut_video(tmp_path / "astronaut.mp4", frames=4, dx=4, dy=2)
    modnet = write_mean_sigmoid_onnx(tmp_path / "modnet.onnx")
    res = CliRunner().invoke(app, ["reenact", str(imported_run), str(video), "--seed", "1", "--out",
                                   str(tmp_path / "v.mp4"), "--smirk", str(SMIRK_FIXTURE), "--modnet", str(modnet),
                                   "--side-by-side", "--resolution", "32", "--no-progress"])
    assert res.exit_code == 0, res.output
    frames = VideoReader(tmp_path / "v.mp4").read_all()
    assert len(frames) == 4 and frames[0].shape == (32, 64, 3)  # driving crop | avatar
