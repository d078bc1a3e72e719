"""The authors' AGORA-M files imported (their reference reproduced), and AGORA-M stages on an
imported run: bench, extract-basis + fit-mlp, and the web export's refusal. Tolerances:
`official_fixtures.py`."""

from __future__ import annotations

import shutil

import pytest
import torch

from agora_core.head import FlameParams
from agora_core.errors import AgoraError
from agora_core.render.cameras import deca_mapping_label
from official_fixtures import OFFICIAL, QUAT_TOL, TOL, rel


@pytest.mark.parametrize("index", [0, 1])
@torch.no_grad()
def test_imported_agora_m_reproduces_the_authors_reference(official, official_agora_m_io, imported_run, index):
    """Their AGORA-M pair, converted into the run folder and read back by our loaders: the regressor's
    coefficients and the blended Gaussians their renderer receives."""
    from agora_core.importer import import_official_agora_m
    from agora_core.mobile.basis_file import GaussianBasis
    from agora_core.mobile.coefficient_mlp import CoefficientMLP
    from agora_core.mobile.blendshape_avatar import BlendshapeAvatar

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
    c = avatar.coefficients(FlameParams(expression=f[:, :50], jaw=f[:, 50:53], eyelids=f[:, 53:]))
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


def imported_run_with_agora_m(imported_run, folder):
    """A copy of the imported run with the authors' AGORA-M pair imported into it."""
    from agora_core.importer import import_official_agora_m

    run = folder / "run"
    shutil.copytree(imported_run, run)
    for name in ("basis.safetensors", "mlp.safetensors"):
        (run / name).unlink(missing_ok=True)
    import_official_agora_m(OFFICIAL / "agora_m" / "svd_basis.pt", OFFICIAL / "agora_m" / "mlp_regressor.pt", run)
    return run


def test_web_export_of_an_imported_run_holds_its_agora_m_pair_in_the_authors_spaces(imported_run, tmp_path):
    """`agora export web RUN --seed N` takes the run's imported pair: their two hidden layers and their
    attribute spaces (linear scales, column-normalised quaternions) travel into the bundle as stored."""
    import json

    import numpy as np
    from typer.testing import CliRunner

    from agora_cli.app import app
    from agora_core.export.sources import load_avatar_source
    from agora_core.mobile import CoefficientMLP

    run = imported_run_with_agora_m(imported_run, tmp_path)
    res = CliRunner().invoke(app, ["export", "web", str(run), "--seed", "0", "--out", str(tmp_path / "site")])
    assert res.exit_code == 0, res.output
    site = tmp_path / "site"
    m = json.loads((site / "avatar.json").read_text())
    assert (m["format_version"], m["attribute_space"], m["k"], m["mlp"]["hidden"]) == (4, "authors", 8, [256, 512])
    n, texels = m["num_gaussians"], m["texture_width"] * m["texture_height"]
    planes = np.fromfile(site / "neutral.bin", "<f4").reshape(3, texels, 4)
    order = np.argsort(np.r_[np.flatnonzero(planes[1, :n, 3] > 0), np.flatnonzero(planes[1, :n, 3] == 0)], kind="stable")
    neutral = load_avatar_source(run, seed=0).neutral
    np.testing.assert_array_equal(planes[0, :n, :3][order], neutral.means[0].numpy())  # viewer order -> model order
    np.testing.assert_allclose(planes[1, :n, :3][order], neutral.log_scales[0].exp().numpy(), rtol=1e-6, atol=0)
    np.testing.assert_array_equal(planes[2, :n][order], neutral.quats[0].numpy())  # their (non-unit) quaternions
    mlp, _ = CoefficientMLP.load(run / "mlp.safetensors")
    raw = (site / "mlp.bin").read_bytes()
    for name, tensor in mlp.state_dict().items():
        entry = m["mlp"]["tensors"][name]
        np.testing.assert_array_equal(np.frombuffer(raw, "<f4", entry["size"], entry["offset"]).reshape(entry["shape"]),
                                      tensor.numpy())
    for name in ("basis.safetensors", "mlp.safetensors"):
        (run / name).unlink()
    res = CliRunner().invoke(app, ["export", "web", str(run), "--seed", "0", "--out", str(tmp_path / "s2")])
    assert res.exit_code == 2 and "agora import svd_basis.pt" in res.output  # no pair imported: says how


def test_extract_basis_and_fit_mlp_run_on_an_imported_run(official, imported_run, tmp_path):
    """AGORA-M distilled from an imported model lives in the authors' residual spaces (linear scale,
    their quaternions), so `BlendshapeAvatar` blends it as theirs; K = 2 from 12 tuples (a smoke size)."""
    from typer.testing import CliRunner

    from agora_cli.app import app
    from agora_core.inference import draw_identity, load_model
    from agora_core.mobile.basis_file import GaussianBasis
    from agora_core.mobile.coefficient_mlp import CoefficientMLP
    from agora_core.mobile.blendshape_avatar import BlendshapeAvatar

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


def test_extract_basis_on_an_imported_run_takes_a_dataset_of_its_head(imported_run, tmp_path):
    """`--dataset` rows condition an imported model: each camera becomes the DECA label of the head rotation
    it realises (`inference.mapping_labels`), FLAME rows of other sizes are padded/truncated to the head's;
    a dataset of another head is refused in one line."""
    import json

    from typer.testing import CliRunner

    from agora_cli.app import app
    from agora_core.data.format import read_dataset_index
    from agora_core.mobile import load_agora_model
    from agora_core.mobile.basis_file import GaussianBasis
    from agora_core.mobile.tuples import EXTRACT, TupleSampler
    from agora_core.render import Camera
    from agora_core.render.cameras import deca_mapping_label_of
    from official_fixtures import flame2020_dataset

    data = flame2020_dataset(tmp_path / "data")
    model = load_agora_model(imported_run, dataset=data)
    g, pool = model.generator, model.pool
    assert pool is not None and pool.cameras.shape == (4, 12)
    index = read_dataset_index(data)
    want = deca_mapping_label_of(Camera.from_label(torch.as_tensor(index.cameras, dtype=torch.float64)))
    assert float((torch.as_tensor(pool.cameras) - want).abs().max()) < 1e-6  # float32 label, |R| ≤ 1
    sampler = TupleSampler(z_dim=g.config.z_dim, num_shape=g.head.num_shape, num_expr=g.head.num_expr,
                           expr_dim=g.config.expr_cond_dim, seed=0, stream=EXTRACT, expressions_per_identity=2, pool=pool)
    t = sampler.tuples(0, 4)
    assert t.camera.shape == (4, 12) and t.shape.shape == (4, 300) and t.flame.expression.shape == (4, 50)
    demo_shape = pool.flame["shape"].shape[1]
    assert demo_shape < 300 and not t.shape[:, demo_shape:].any()  # the demo head's β, zero-padded

    runner = CliRunner()
    res = runner.invoke(app, ["extract-basis", str(imported_run), "--dataset", str(data), "--n", "8", "--k", "2",
                              "--heldout", "4", "--out", str(tmp_path / "b.safetensors")])
    assert res.exit_code == 0, res.output
    basis = GaussianBasis.load(tmp_path / "b.safetensors")
    assert basis.num_gaussians == 2789 and basis.k == 2
    assert all(torch.isfinite(b).all() for b in basis.basis.values())

    rows = json.loads((data / "dataset.json").read_text())
    rows["head_model"] = "flame-0123456789ab+mouth"  # FLAME parameters of another head
    (data / "dataset.json").write_text(json.dumps(rows))
    res = runner.invoke(app, ["extract-basis", str(imported_run), "--dataset", str(data), "--n", "8", "--k", "2",
                              "--out", str(tmp_path / "c.safetensors")])
    assert res.exit_code == 2 and "FLAME parameters of head model 'flame-0123456789ab+mouth'" in res.output
    assert not (tmp_path / "c.safetensors").exists()
