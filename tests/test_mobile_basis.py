"""AGORA-M basis extraction on the real generator (tiny config): tuples, residual chunks,
streamed SVD vs the full SVD, the basis file and the extraction report.

Tolerances: as tests/test_mobile_streaming_svd.py (angles < 1e-4 rad, σ within 1e-5 relative).
The reference matrix is gathered with the same chunking the streamed passes use, so both see
bit-identical rows (the generator's float32 results depend on batch composition at ~1e-7). The
randomized path gets 6 passes: this random-init model's rotation spectrum decays slowly
(σ_24/σ_8 ≈ 0.35), and (0.35)^11 ≈ 1e-5.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch
from test_mobile_tinyhead import single_thread, tiny_generator  # noqa: F401  (fixture)

from agora_core.errors import AgoraError
from agora_core.mobile import (
    RESIDUAL_GROUPS,
    ExtractConfig,
    GaussianBasis,
    TupleSampler,
    extract_basis,
    full_svd_basis,
    gram_basis,
    principal_angles,
    randomized_basis,
)
from agora_core.mobile.extract import residual_sources
from agora_core.mobile.streaming_svd import gather_rows
from agora_core.mobile.tuples import EXTRACT, HELDOUT

CONFIG = ExtractConfig(n=48, k=8, expressions_per_identity=4, heldout=16, memory_budget_mb=64, batch_size=8)


@pytest.fixture(scope="module")
def generator():
    return tiny_generator()


def test_tuples_are_a_function_of_seed_and_index():
    kw = dict(z_dim=8, num_shape=4, num_expr=6, expr_dim=4, expressions_per_identity=3)
    a = TupleSampler(seed=5, stream=EXTRACT, **kw)
    whole, part = a.tuples(0, 12), a.tuples(4, 9)
    for name in ("identity", "z", "camera", "shape"):
        assert torch.equal(getattr(whole, name)[4:9], getattr(part, name)), name
    for name in ("expression", "jaw", "eyelids"):
        assert torch.equal(getattr(whole.flame, name)[4:9], getattr(part.flame, name)), name
    assert whole.identity.tolist() == [i // 3 for i in range(12)]
    assert torch.equal(whole.z[0], whole.z[2]) and not torch.equal(whole.z[2], whole.z[3])
    assert whole.flame.expression[:, 4:].abs().max() == 0  # only the regressor's ψ animate
    other = TupleSampler(seed=5, stream=HELDOUT, **kw).tuples(0, 12)
    assert not torch.equal(other.z, whole.z) and not torch.equal(other.flame.expression, whole.flame.expression)


def test_residual_chunks_regenerate_identically(generator):
    src, _ = residual_sources(generator, CONFIG, None, None)
    first, again = src.chunk(8, 24), src.chunk(8, 24)
    for g in RESIDUAL_GROUPS:
        assert torch.equal(first.residuals[g], again.residuals[g]), g
    assert torch.equal(first.conditions, again.conditions)
    assert first.residuals["xyz"].shape == (16, 3 * generator.num_gaussians)
    assert first.conditions.shape == (16, generator.config.w_dim + generator.config.expr_cond_dim + 5)
    assert first.residuals["xyz"].abs().max() > 1e-4 and first.residuals["rotation"].abs().max() > 1e-4
    assert first.residuals["opacity"].abs().max() == 0  # this generator has no opacity residual (sec. 3.4)
    # eq. 9 by hand: posed - neutral of one tuple through identity()/animate()
    t = src.sampler.tuples(10, 11)
    cache = generator.identity(t.z, t.camera, t.shape, CONFIG.truncation_psi, noise_mode="const")
    posed = generator.animate(cache, t.flame, noise_mode="const").gaussians
    neutral = generator.animate(cache, t.flame.map(torch.zeros_like), noise_mode="const").gaussians
    torch.testing.assert_close(first.residuals["xyz"][2], (posed.means - neutral.means).reshape(-1), atol=1e-6, rtol=0)


@pytest.mark.parametrize("method", ["gram", "randomized"])
def test_streamed_basis_spans_the_full_svd_subspace(generator, method):
    src, _ = residual_sources(generator, CONFIG, None, None)
    chunk = 16
    ref = full_svd_basis(gather_rows(src, chunk), CONFIG.k)
    if method == "gram":
        got = gram_basis(src, CONFIG.k, chunk_rows=chunk, slab_columns=500)
    else:
        got = randomized_basis(src, CONFIG.k, chunk_rows=chunk, oversample=16, passes=6)
    for g in ("xyz", "scale", "rotation"):
        assert principal_angles(got[g].basis, ref[g].basis).max() < 1e-4, g
        torch.testing.assert_close(got[g].singular_values, ref[g].singular_values, rtol=1e-5, atol=0)
    assert got["opacity"].energy == 0


def test_extract_basis_report_and_file_round_trip(generator, tmp_path):
    basis, report = extract_basis(generator, CONFIG, source_checkpoint="random-init")
    assert basis.k == CONFIG.k and basis.num_gaussians == generator.num_gaussians and basis.n == CONFIG.n
    ks = sorted({r["k"] for r in report.rows})
    assert ks == [CONFIG.k] and len(report.rows) == 4
    for g in ("xyz", "scale", "rotation"):
        ev = basis.explained_variance[g]
        assert torch.all(ev[1:] >= ev[:-1]) and 0 < ev[-1] <= 1
    path = basis.save(tmp_path / "basis.safetensors")
    back = GaussianBasis.load(path)
    for g in RESIDUAL_GROUPS:
        assert torch.equal(back.basis[g], basis.basis[g]) and torch.equal(back.singular_values[g], basis.singular_values[g])
        torch.testing.assert_close(back.basis[g] @ back.basis[g].T, torch.eye(basis.k), atol=1e-5, rtol=0)
    assert (back.n, back.seed, back.source_checkpoint, back.extra["method"]) == (48, 0, "random-init", report.method)
    # the held-out error falls with K (nested bases)
    _, small = extract_basis(generator, dataclasses.replace(CONFIG, k=2, method="randomized"))
    mse = lambda rep: {r["group"]: r["heldout_mse"] for r in rep.rows if r["k"] == rep.rows[-1]["k"]}  # noqa: E731
    for g in ("xyz", "scale", "rotation"):
        assert mse(report)[g] < mse(small)[g], g
    assert small.method == "randomized" and 0 < report.average_explained[CONFIG.k] <= 1


def test_bad_basis_files_name_the_file(tmp_path, generator):
    basis = GaussianBasis.from_groups(
        gram_basis(residual_sources(generator, dataclasses.replace(CONFIG, n=8), None, None)[0], 2, chunk_rows=8,
                   slab_columns=10_000), generator.num_gaussians)
    good = basis.save(tmp_path / "good.safetensors")
    with pytest.raises(AgoraError, match="missing.safetensors"):
        GaussianBasis.load(tmp_path / "missing.safetensors")
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a safetensors file at all")
    with pytest.raises(AgoraError, match="junk.safetensors.*safetensors"):
        GaussianBasis.load(junk)
    from safetensors.torch import load_file, save_file

    tensors = load_file(good)
    for name, meta, pattern in [
        ("other.safetensors", {"format": "agora-mlp", "format_version": "1"}, "not an agora-basis"),
        ("future.safetensors", {"format": "agora-basis", "format_version": "2", "k": "2", "n": "8",
                                "num_gaussians": str(basis.num_gaussians), "seed": "0"}, "format_version 2"),
    ]:
        save_file(tensors, str(tmp_path / name), metadata=meta)
        with pytest.raises(AgoraError, match=f"{name}.*{pattern}"):
            GaussianBasis.load(tmp_path / name)
    meta = {"format": "agora-basis", "format_version": "1", "k": "3", "n": "8",
            "num_gaussians": str(basis.num_gaussians), "seed": "0"}
    save_file(tensors, str(tmp_path / "shape.safetensors"), metadata=meta)
    with pytest.raises(AgoraError, match="shape.safetensors.*xyz.basis has shape"):
        GaussianBasis.load(tmp_path / "shape.safetensors")
    del tensors["rotation.basis"]
    save_file(tensors, str(tmp_path / "partial.safetensors"), metadata={**meta, "k": "2"})
    with pytest.raises(AgoraError, match="partial.safetensors.*rotation.basis"):
        GaussianBasis.load(tmp_path / "partial.safetensors")


def test_heldout_errors_match_direct_reconstruction(generator):
    from agora_core.mobile.extract import heldout_errors

    src, held = residual_sources(generator, CONFIG, None, None)
    basis = GaussianBasis.from_groups(gram_basis(src, 6, chunk_rows=16, slab_columns=10_000), generator.num_gaussians)
    got = heldout_errors(basis, held, 8, [2, 6])
    rows = gather_rows(held, 8)
    for g in ("xyz", "rotation"):
        for k in (2, 6):
            u = basis.basis[g][:k].double()
            r = rows[g].double()
            err = (r - (r @ u.T) @ u).square()
            assert got[g][k][0] == pytest.approx(float(err.mean()), rel=1e-6)
            assert got[g][k][1] == pytest.approx(1 - float(err.sum() / r.square().sum()), rel=1e-6)
