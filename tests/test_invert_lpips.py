"""Real LPIPS (agora_core.invert.lpips_distance): the lpips package's learned heads on a torchvision
backbone from a file (random weights here: the real ones cannot be downloaded), checked against
LPIPS written out by hand on torchvision's own AlexNet/VGG16 modules, and the asset lookup.

Tolerance of the hand-written reference: the same float32 convolutions run in the same order
(torchvision's layers), so only the last sums differ in order: a few float32 roundings of the
distance's size, 1e-5 relative leaves room for other BLAS kernels.
"""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import Tensor

from agora_core.errors import AgoraError
from agora_core.invert.losses import make_reconstruction_loss
from agora_core.invert.lpips_distance import LPIPSDistance, load_perceptual

ALEX_TAPS = (1, 4, 7, 9, 11)  # relu1 … relu5 of torchvision's alexnet().features (LPIPS's alex layers)
VGG_TAPS = (3, 8, 15, 22, 29)  # relu1_2 … relu5_3 of vgg16().features
SHIFT = torch.tensor([-0.030, -0.088, -0.188]).reshape(1, 3, 1, 1)  # LPIPS v0.1 input scaling
SCALE = torch.tensor([0.458, 0.448, 0.450]).reshape(1, 3, 1, 1)


def _save_features(features: torch.nn.Module, path) -> None:
    """torchvision's key layout (features.<i>.weight/bias); only the features, as the loaders accept."""
    torch.save({f"features.{k}": v for k, v in features.state_dict().items()}, path)


@pytest.fixture(scope="module")
def backbones(tmp_path_factory):
    from torchvision.models.vgg import cfgs, make_layers

    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("lpips")
    alex, vgg = torchvision.models.alexnet().features, make_layers(cfgs["D"])  # = vgg16().features, no classifier
    _save_features(alex, root / "alexnet.pth")
    _save_features(vgg, root / "vgg16.pth")
    return {"alex": (root / "alexnet.pth", alex.eval()), "vgg": (root / "vgg16.pth", vgg.eval())}


def _images(size: int, seed: int = 0) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(2, 3, size, size, generator=g)
    return x, (x + 0.3 * torch.randn(x.shape, generator=g)).clamp(0, 1)


def _lpips_by_hand(features: torch.nn.Module, taps, heads: list[Tensor], x: Tensor, y: Tensor) -> Tensor:
    """d = Σ_l mean_hw Σ_c w_lc (f̂_l(x) − f̂_l(y))², f̂ unit-normalised over channels (Zhang et al. eq. 1)."""
    def taps_of(img):
        h, out = (2 * img - 1 - SHIFT) / SCALE, []
        for i, layer in enumerate(features[: taps[-1] + 1]):
            h = layer(h)
            if i in taps:
                out.append(h / (h.pow(2).sum(1, keepdim=True).sqrt() + 1e-10))
        return out

    with torch.no_grad():
        return sum(((fx - fy).pow(2) * w.reshape(1, -1, 1, 1)).sum(1).mean((1, 2))
                   for fx, fy, w in zip(taps_of(x), taps_of(y), heads))


@pytest.mark.parametrize("net, size", [("alex", 32), ("vgg", 16)])
def test_lpips_matches_the_formula_on_the_files_backbone(backbones, net, size):
    path, features = backbones[net]
    d = load_perceptual(path)
    assert isinstance(d, LPIPSDistance) and d.net == net
    assert not any(p.requires_grad for p in d.parameters())
    heads = [lin.model[1].weight.detach() for lin in d.model.lins]
    assert all((h >= 0).all() and h.abs().sum() > 0 for h in heads)  # the package's learned heads, not zeros
    x, y = _images(size)
    got = d(x, y)
    expected = _lpips_by_hand(features, ALEX_TAPS if net == "alex" else VGG_TAPS, heads, x, y)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=0)
    assert got.shape == (2,) and (got > 0).all()
    torch.testing.assert_close(d(y, x), got, rtol=1e-6, atol=0)  # symmetric
    assert torch.equal(d(x, x), torch.zeros(2))  # identical features: every difference is exactly 0
    x.requires_grad_(True)
    d(x, y).sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_the_asset_lookup_makes_lpips_the_loss(backbones, monkeypatch):
    monkeypatch.setenv("AGORA_PERCEPTUAL_WEIGHTS", str(backbones["alex"][0]))
    loss = make_reconstruction_loss(None, warn=pytest.fail)
    assert loss.perceptual_name == "lpips-alex"
    x, y = _images(32)
    terms = loss(x, y)
    torch.testing.assert_close(terms.perceptual, loss.perceptual(x, y).mean())
    monkeypatch.setenv("AGORA_PERCEPTUAL_WEIGHTS", str(backbones["alex"][0].with_name("missing.pth")))
    with pytest.raises(AgoraError, match="missing.pth.*not found.*from env"):
        make_reconstruction_loss(None)


def test_without_the_lpips_package_an_alexnet_file_is_one_line(backbones, monkeypatch):
    monkeypatch.setattr("agora_core.invert.lpips_distance.lpips_available", lambda: (False, "absent"))
    with pytest.raises(AgoraError, match="AlexNet backbone needs the lpips package"):
        load_perceptual(backbones["alex"][0])
    assert make_reconstruction_loss(str(backbones["vgg"][0])).perceptual_name == "vgg"  # today's fallback


@pytest.mark.parametrize("state, words", [
    ({"conv1.weight": torch.zeros(64, 3, 7, 7)}, "not a torchvision VGG16 or AlexNet state dict (no features.0.weight)"),
    ({"features.0.weight": torch.zeros(64, 3, 5, 5)}, "features.0.weight of shape [64, 3, 5, 5]"),
    ({"features.0.weight": torch.zeros(64, 3, 11, 11)}, "not a torchvision AlexNet state dict (missing features.0.bias)"),
    ([1, 2], "holds a list, not a state dict"),
])
def test_a_wrong_file_is_one_line(tmp_path, state, words):
    path = tmp_path / "weights.pth"
    torch.save(state, path)
    with pytest.raises(AgoraError) as err:
        load_perceptual(path)
    assert words in str(err.value) and str(path) in str(err.value) and "\n" not in str(err.value)


def test_nonfinite_backbone_weights_are_refused(backbones, tmp_path):
    state = torch.load(backbones["alex"][0], weights_only=True)
    state["features.3.weight"][0, 0, 0, 0] = float("nan")
    torch.save(state, tmp_path / "nan.pth")
    with pytest.raises(AgoraError, match="features.3.weight.*NaN"):
        load_perceptual(tmp_path / "nan.pth")


def test_doctor_says_whether_real_lpips_is_available(backbones, tmp_path):
    from typer.testing import CliRunner

    from agora_cli.app import app

    runner = CliRunner(env={"COLUMNS": "300"})
    out = " ".join(runner.invoke(app, ["doctor", "--perceptual-weights", str(backbones["alex"][0])]).output.split())
    assert "real LPIPS" in out and "AlexNet backbone" in out and "PTI's 0.06 stop applies" in out
    result = runner.invoke(app, ["doctor"])
    assert result.exit_code == 0 and "invert uses L2 + SSIM" in " ".join(result.output.split())
    (tmp_path / "junk.pth").write_bytes(b"junk")
    result = runner.invoke(app, ["doctor", "--perceptual-weights", str(tmp_path / "junk.pth")])
    assert result.exit_code == 2 and "invalid" in result.output
