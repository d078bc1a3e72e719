"""The coefficient regressor f_mlp (eq. 10): fitting, resume, file format, use by the avatar."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from test_mobile_tinyhead import single_thread, tiny_generator  # noqa: F401  (fixture)

from agora_core.head import FlameParams
from agora_core.errors import AgoraError
from agora_core.mobile import CoefficientMLP, ExtractConfig, FitConfig, extract_basis, fit_coefficient_mlp, fit_mlp
from agora_core.mobile.regressor_fit import fit_paths, load_regressor_data
from agora_core.mobile.blendshape_avatar import BlendshapeAvatar

FIT = FitConfig(n=160, expressions_per_identity=8, hidden=32, epochs=40, batch_size=32, lr=3e-3, chunk_rows=40)


@pytest.fixture(scope="module")
def generator():
    return tiny_generator()


@pytest.fixture(scope="module")
def basis(generator):
    return extract_basis(generator, ExtractConfig(n=64, k=6, expressions_per_identity=8, heldout=0))[0]


@pytest.fixture(scope="module")
def fitted(generator, basis, tmp_path_factory):
    out = tmp_path_factory.mktemp("fit") / "mlp.safetensors"
    model, report = fit_mlp(generator, basis, FIT, out, source="random-init")
    return out, model, report


def test_fit_reduces_validation_mse(fitted):
    out, model, report = fitted
    history = report.history
    assert len(history) == FIT.epochs and report.epoch == FIT.epochs
    assert report.val_mse < 0.5 * history[0]["val_mse"], (history[0], report.val_mse)
    data = load_regressor_data(fit_paths(out)[0], key=_key_of(out))
    assert data is not None and data.targets.shape == (FIT.n, 4 * 6)
    zero_predictor = data.targets.square().mean()
    assert report.val_mse < 0.5 * float(zero_predictor)
    print(f"fit-mlp: train MSE {report.train_mse:.3e}, val MSE {report.val_mse:.3e} "
          f"(predicting 0: {float(zero_predictor):.3e})")


def _key_of(out):
    from safetensors import safe_open

    with safe_open(str(fit_paths(out)[0]), framework="pt") as f:
        return f.metadata()["key"]


def test_mlp_file_round_trip_and_bad_file(fitted, tmp_path):
    out, model, report = fitted
    back, meta = CoefficientMLP.load(out)
    x = torch.randn(5, model.in_features)
    torch.testing.assert_close(back(x), model(x), atol=0, rtol=0)
    assert (meta["format"], meta["format_version"], int(meta["k"]), int(meta["hidden"])) == ("agora-mlp", "1", 6, 32)
    assert float(meta["val_mse"]) == pytest.approx(report.val_mse)
    assert set(back.state_dict()) == {"layers.0.weight", "layers.0.bias", "layers.1.weight", "layers.1.bias",
                                      "input_mean", "input_std"}
    with pytest.raises(AgoraError, match="nothing.safetensors.*agora fit-mlp"):
        CoefficientMLP.load(tmp_path / "nothing.safetensors")
    with pytest.raises(AgoraError, match="data.safetensors.*not an agora-mlp"):
        CoefficientMLP.load(fit_paths(out)[0])  # the dataset cache is not a model


def test_resume_continues_from_the_saved_epoch(fitted, tmp_path):
    """Interrupted after 3 of 8 epochs, a rerun starts at epoch 4 and ends as an uninterrupted run."""
    out, _, _ = fitted
    data = load_regressor_data(fit_paths(out)[0], key=_key_of(out))
    cfg = dataclasses.replace(FIT, epochs=8)
    straight, straight_report = fit_coefficient_mlp(data, 6, cfg, tmp_path / "a.state.pt", key="k")

    def stop_after_three(report):
        if report.epoch == 3:
            raise KeyboardInterrupt

    state = tmp_path / "b.state.pt"
    with pytest.raises(KeyboardInterrupt):
        fit_coefficient_mlp(data, 6, cfg, state, key="k", on_epoch=stop_after_three)
    seen = []
    resumed, report = fit_coefficient_mlp(data, 6, cfg, state, key="k", on_epoch=lambda r: seen.append(r.epoch))
    assert report.resumed_from == 3 and seen == [4, 5, 6, 7, 8] and len(report.history) == 8
    for name, value in straight.state_dict().items():
        torch.testing.assert_close(resumed.state_dict()[name], value, atol=0, rtol=0)
    assert report.val_mse == straight_report.val_mse
    # other settings: the state is not reused
    _, fresh = fit_coefficient_mlp(data, 6, dataclasses.replace(cfg, hidden=16), state, key="k")
    assert fresh.resumed_from == 0


def test_avatar_animates_with_the_regressor(generator, basis, fitted):
    _, model, _ = fitted
    cache = generator.identity(torch.randn(1, 8), torch.zeros(1, 25), torch.zeros(1, 4), 0.7, noise_mode="const")
    avatar = BlendshapeAvatar.from_generator(generator, cache, basis, model)
    with torch.no_grad():
        out = avatar.animate(FlameParams(expression=torch.randn(3, 6), jaw=torch.zeros(3, 3), eyelids=torch.zeros(3, 2)))
    assert out.batch_size == 3 and out.num_gaussians == generator.num_gaussians
    torch.testing.assert_close(out.quats.norm(dim=-1), torch.ones(3, generator.num_gaussians), atol=1e-6, rtol=0)
    assert out.opacities.min() >= 0 and out.opacities.max() <= 1
