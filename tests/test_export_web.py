"""The AGORA-M web bundle's files (no browser): `agora export web` from a checkpoint, format, errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import typer
from typer.testing import CliRunner

from agora_cli.export import export_app
from agora_core.mobile import CoefficientMLP, GaussianBasis
from agora_core.mobile.residuals import RESIDUAL_GROUPS
from agora_core.export.sources import load_avatar_source
from agora_core.export.web_bundle import VIEWER_FILES, demo_driving_sequence, write_web_bundle
from agora_core.gaussians import GaussianSet
from agora_core.gaussians import read_splat
from test_export_fixtures import tiny_generator, write_random_agora_m, write_tiny_checkpoint
from test_train_fixtures import cached_build_head

K = 4
GROUPS = tuple(RESIDUAL_GROUPS)


def read_basis(path) -> GaussianBasis:
    return GaussianBasis.load(path)


def read_mlp(path) -> CoefficientMLP:
    return CoefficientMLP.load(path)[0]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    G, config = tiny_generator()
    folder = tmp_path_factory.mktemp("agora_m")
    ckpt = write_tiny_checkpoint(folder, G, config)
    basis, mlp = write_random_agora_m(folder, G.num_gaussians, G.config.w_dim, G.config.expr_cond_dim, k=K)
    return ckpt, basis, mlp


@pytest.fixture
def app(monkeypatch) -> typer.Typer:
    monkeypatch.setattr("agora_core.head.build.build_head", cached_build_head)
    app = typer.Typer()
    app.add_typer(export_app, name="export")
    return app


def test_bundle_from_checkpoint_has_the_documented_layout(app, files, tmp_path: Path):
    ckpt, basis_path, mlp_path = files
    site = tmp_path / "site"
    result = CliRunner().invoke(app, ["export", "web", str(ckpt), "--seed", "2", "--basis", str(basis_path),
                                      "--mlp", str(mlp_path), "--out", str(site)])
    assert result.exit_code == 0, result.output
    m = json.loads((site / "avatar.json").read_text())
    n, w, h = m["num_gaussians"], m["texture_width"], m["texture_height"]
    assert (m["format"], m["format_version"], m["k"]) == ("agora-web-avatar", 4, K) and w * h >= n > w * (h - 1)
    assert m["active_gaussians"] == n  # random blendshapes move every Gaussian: viewer order = model order
    for name in VIEWER_FILES + ("neutral.splat", "driving_sequence.json"):
        assert (site / name).is_file(), name
    neutral = np.fromfile(site / "neutral.bin", "<f4").reshape(3, h * w, 4)
    expected = load_avatar_source(ckpt, seed=2).neutral
    np.testing.assert_allclose(neutral[0, :n, :3], expected.means[0].numpy(), rtol=0, atol=0)
    np.testing.assert_allclose(neutral[0, :n, 3], expected.opacities[0].numpy(), rtol=0, atol=0)
    np.testing.assert_allclose(neutral[1, :n, :3], expected.log_scales[0].numpy(), rtol=0, atol=0)
    np.testing.assert_allclose(neutral[2, :n], expected.quats[0].numpy(), rtol=0, atol=0)
    assert (neutral[0, n:] == 0).all() and (neutral[2, n:, 0] == 1).all()  # padding: invisible, valid rotation
    sh = np.fromfile(site / "sh.bin", "<f4").reshape(m["sh_coefficients"], h * w, 4)
    np.testing.assert_array_equal(sh[:, :n, :3], expected.sh[0].transpose(0, 1).numpy())
    basis = read_basis(basis_path)
    scale = m["basis_fixed_point"]
    values, padding = shader_unpack(site / "basis.i32", m)
    values = values.astype(np.float64)  # [xyz 3 | scale 3 | rotation 4 | opacity 1]
    assert np.abs(values).max() == scale and (padding == 0).all()  # each component and group reaches its amplitude
    start = 0
    for grp in GROUPS:
        d = RESIDUAL_GROUPS[grp]
        amp = np.asarray(m["basis_amplitude"][grp], np.float64)[:, None, None]
        # rounding to the int16 grid: error ≤ half a step (a / 32767 / 2), + float32 rounding of U itself
        expected = basis.blendshapes(grp).double().numpy()
        np.testing.assert_allclose(values[:, :n, start:start + d] * amp / scale, expected, rtol=0,
                                   atol=float(amp.max()) * (0.5 / scale + 1e-6))
        start += d
    norms = np.linalg.norm(basis.blendshapes("xyz").numpy(), axis=2).max(axis=1)
    np.testing.assert_allclose(m["resort"]["max_xyz_norm"], norms, rtol=1e-6)
    assert (values[:, n:] == 0).all()
    assert (neutral[1, :n, 3] == 1).all()  # random blendshapes move every Gaussian: all active
    mlp = read_mlp(mlp_path)
    raw = (site / "mlp.bin").read_bytes()
    entry = m["mlp"]["tensors"]["layers.1.weight"]
    got = np.frombuffer(raw, "<f4", entry["size"], entry["offset"]).reshape(entry["shape"])
    np.testing.assert_array_equal(got, mlp.layers[1].weight.detach().numpy())
    entry = m["mlp"]["tensors"]["w"]
    np.testing.assert_array_equal(np.frombuffer(raw, "<f4", entry["size"], entry["offset"]), expected_w(ckpt))
    assert (m["mlp"]["w_dim"], m["mlp"]["expr_dim"]) == (mlp.w_dim, mlp.expr_dim)
    seq = json.loads((site / "driving_sequence.json").read_text())
    assert seq["params_dim"] == 55 and len(seq["frames"][0]) == 55 and seq["num_frames"] == len(seq["frames"])


def unpack_halves(v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """int32 [...] -> (lo, hi) int32 [...] as the blend shader (and sort_worker.js) unpacks them."""
    assert v.dtype == np.int32, v.dtype
    return (v << 16) >> 16, v >> 16


def shader_unpack(path: Path, manifest: dict) -> tuple[np.ndarray, np.ndarray]:
    """basis.i32 -> (int32 [K, texels, 11] in GROUPS order, [texels, 8T - 11K] padding values), unpacked with
    the blend shader's shifts: lo = (v << 16) >> 16, hi = v >> 16 (arithmetic, on int32); value 2j + h of a
    texel is half h of its channel j (shaders.js `blendTerms`)."""
    k, texels = manifest["k"], manifest["texture_width"] * manifest["texture_height"]
    shape = manifest["basis_texture"]
    packed = np.fromfile(path, "<i4").reshape(shape["layers"] * shape["height"], shape["width"], 4)
    assert (packed[texels:] == 0).all()  # rows of the last layer past the Gaussian textures
    lo, hi = unpack_halves(packed[:texels])
    values = np.stack([lo, hi], axis=-1).reshape(texels, 8 * shape["width"])  # channel j -> values 2j, 2j + 1
    return values[:, :11 * k].reshape(texels, k, 11).transpose(1, 0, 2), values[:, 11 * k:]


def test_packed_basis_round_trips_through_the_shader_shifts(tmp_path: Path):
    """basis.i32 unpacked as the shader does gives back round(32767 · U / a) exactly: negatives, ±32767, ±1."""
    n, k, w_dim = 7, 3, 3
    g = torch.Generator().manual_seed(1)
    fixed = {}  # int16 values we want back, [K, N, D]; U = value · 2⁻¹⁰, so a = 32767 · 2⁻¹⁰ exactly
    for grp in GROUPS:
        ints = torch.randint(-32767, 32768, (k, n, RESIDUAL_GROUPS[grp]), generator=g)
        ints[:, 0, 0], ints[:, 1, 0], ints[:, 2, 0], ints[:, 3, 0] = 32767, -32767, -1, 1  # both ends, ±1
        fixed[grp] = ints
    basis_path, mlp_path = write_random_agora_m(tmp_path, n, w_dim, expr_dim=50, k=k)
    basis = read_basis(basis_path)
    basis = GaussianBasis.from_blendshapes({grp: fixed[grp].float() * 2.0**-10 for grp in GROUPS})
    identity = torch.tensor([1.0, 0, 0, 0]).expand(1, n, 4)
    neutral = GaussianSet(torch.zeros(1, n, 3), torch.zeros(1, n, 3), identity, torch.zeros(1, n, 1, 3),
                          torch.ones(1, n))
    site = write_web_bundle(tmp_path / "site", neutral, torch.zeros(w_dim), basis, read_mlp(mlp_path))
    m = json.loads((site / "avatar.json").read_text())
    assert m["files"]["basis"] == "basis.i32" and m["active_gaussians"] == n  # every Gaussian moves: model order
    values, padding = shader_unpack(site / "basis.i32", m)
    expected = torch.cat([fixed[grp] for grp in GROUPS], dim=2).numpy()
    np.testing.assert_array_equal(values[:, :n], expected)
    assert (values[:, n:] == 0).all() and (padding == 0).all() and padding.shape[1] == 8 * 5 - 11 * k
    for grp in GROUPS:
        np.testing.assert_array_equal(m["basis_amplitude"][grp], [32767 * 2.0**-10] * k)
    # the shifts on every int16 corner of a little-endian (lo, hi) pair (-32768 too, never written)
    corners = np.array([-32768, -32767, -16384, -1, 0, 1, 16383, 32767], "<i2")
    lo, hi = (a.ravel() for a in np.meshgrid(corners, corners))
    for got, want in zip(unpack_halves(np.stack([lo, hi], axis=1).view("<i4")[:, 0]), (lo, hi)):
        np.testing.assert_array_equal(got, want)


def expected_w(ckpt: Path) -> np.ndarray:
    return load_avatar_source(ckpt, seed=2).w.numpy()


def test_mismatched_files_and_bad_sequences_are_user_errors(app, files, tmp_path: Path):
    ckpt, basis_path, mlp_path = files
    G, _ = tiny_generator()
    for sub in "abc":
        (tmp_path / sub).mkdir()
    other_basis, _ = write_random_agora_m(tmp_path / "a", G.num_gaussians + 5, G.config.w_dim, 10, k=K)
    _, other_mlp = write_random_agora_m(tmp_path / "b", G.num_gaussians, G.config.w_dim, 10, k=K + 1)
    _, wide_mlp = write_random_agora_m(tmp_path / "c", G.num_gaussians, G.config.w_dim + 1, 10, k=K)
    args = ["export", "web", str(ckpt), "--seed", "0", "--out", str(tmp_path / "site")]
    cases = ((other_basis, mlp_path, f"for {G.num_gaussians + 5} Gaussians"), (basis_path, other_mlp, "K=5"),
             (basis_path, wide_mlp, "w of size"))
    for basis, mlp, message in cases:
        result = CliRunner().invoke(app, args + ["--basis", str(basis), "--mlp", str(mlp)])
        assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output, result.output
    bad = tmp_path / "seq.json"
    bad.write_text(json.dumps({**demo_driving_sequence(5), "params_dim": 56}))
    result = CliRunner().invoke(app, args + ["--basis", str(basis_path), "--mlp", str(mlp_path), "--sequence", str(bad)])
    assert result.exit_code == 2 and "--sequence" in result.output
    result = CliRunner().invoke(app, args + ["--basis", str(tmp_path / "nope.safetensors"), "--mlp", str(mlp_path)])
    assert result.exit_code == 2 and "not found" in result.output


def test_mobile_stage_reads_the_same_files(files):
    """Export reads the AGORA-M files with the AGORA-M stage's own classes (the format is the contract):
    the per-Gaussian view the bundle packs is the stored [K, M·D] basis."""
    from agora_core.export.exporters import read_agora_m

    _, basis_path, mlp_path = files
    ours, mlp = read_agora_m(basis_path, mlp_path)
    theirs = GaussianBasis.load(basis_path)
    for grp in GROUPS:
        torch.testing.assert_close(ours.blendshapes(grp).reshape(K, -1), theirs.basis[grp], rtol=0, atol=0)
    stage, _ = CoefficientMLP.load(mlp_path)
    assert (mlp.expr_dim, mlp.w_dim) == (stage.expr_dim, stage.w_dim)


def test_avatar_file_of_agora_invert_is_a_source_too(app, tmp_path: Path):
    """The avatar.pt that `agora invert` writes exports like a seed: its tuned G, pivot w and β."""
    from agora_core.invert.avatar_file import AvatarFile
    from test_invert_helpers import quick_avatar

    path = quick_avatar()
    avatar = AvatarFile.load(path)
    result = CliRunner().invoke(app, ["export", "splat", str(path), "--out", str(tmp_path / "a.splat")])
    assert result.exit_code == 0, result.output
    expected = avatar.neutral_gaussians()  # the neutral Gaussians invert cached from the same G, w, β
    torch.testing.assert_close(read_splat(tmp_path / "a.splat").means, expected.means, rtol=0, atol=1e-6)
    source = load_avatar_source(path)
    torch.testing.assert_close(source.w, avatar.w[0].float())
    torch.testing.assert_close(source.neutral.means, expected.means, rtol=0, atol=1e-6)


def test_moving_gaussians_come_first_in_viewer_order(tmp_path: Path):
    """Gaussians whose blendshapes are all zero go after the moving ones; every per-Gaussian file follows."""
    n, w_dim = 10, 3
    basis_path, mlp_path = write_random_agora_m(tmp_path, n, w_dim, expr_dim=50, k=K)
    basis = read_basis(basis_path)
    still = torch.tensor([0, 3, 4, 8])
    for grp in GROUPS:
        basis.blendshapes(grp)[:, still] = 0
    g = torch.Generator().manual_seed(0)
    neutral = GaussianSet(torch.randn(1, n, 3, generator=g), torch.randn(1, n, 3, generator=g),
                          torch.nn.functional.normalize(torch.randn(1, n, 4, generator=g), dim=-1),
                          torch.randn(1, n, 4, 3, generator=g), torch.rand(1, n, generator=g))
    site = write_web_bundle(tmp_path / "site", neutral, torch.randn(w_dim, generator=g), basis, read_mlp(mlp_path))
    m = json.loads((site / "avatar.json").read_text())
    order = [1, 2, 5, 6, 7, 9, 0, 3, 4, 8]  # moving ones, then the still ones, each in model order
    assert m["active_gaussians"] == 6 and (m["texture_width"], m["texture_height"]) == (4, 3)
    planes = np.fromfile(site / "neutral.bin", "<f4").reshape(3, 12, 4)
    np.testing.assert_array_equal(planes[0, :n, :3], neutral.means[0, order].numpy())
    np.testing.assert_array_equal(planes[1, :n, 3], [1] * 6 + [0] * 4)
    np.testing.assert_array_equal(planes[2, :n], neutral.quats[0, order].numpy())
    sh = np.fromfile(site / "sh.bin", "<f4").reshape(4, 12, 4)
    np.testing.assert_array_equal(sh[:, :n, :3], neutral.sh[0, order].transpose(0, 1).numpy())
    assert m["basis_texture"] == {"width": 6, "height": 12, "layers": 1}  # 44 values in 6 texels of 8
    packed = np.fromfile(site / "basis.i32", "<i4").reshape(12, 6, 4)
    assert (packed[6:] == 0).all() and (np.abs(packed[:6]).max(axis=(1, 2)) > 0).all()
    values, _ = shader_unpack(site / "basis.i32", m)
    amp = np.asarray(m["basis_amplitude"]["xyz"])[:, None, None]
    np.testing.assert_allclose(values[:, :6, :3] * amp / m["basis_fixed_point"],
                               basis.blendshapes("xyz")[:, order[:6]].numpy(), rtol=0, atol=float(amp.max()) / 32767)
    np.testing.assert_array_equal(read_splat(site / "neutral.splat").means, neutral.means)  # model order
