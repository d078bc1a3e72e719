"""PTI's losses (agora_core.invert.ssim, perceptual, losses): SSIM against scikit-image, the
VGG16 perceptual distance loaded from a torchvision state dict, and the L2 + SSIM fallback."""

from __future__ import annotations

import pytest
import torch
from skimage.metrics import structural_similarity

from agora_core.errors import AgoraError
from agora_core.invert.losses import ReconstructionLoss, make_reconstruction_loss, psnr
from agora_core.invert.perceptual import VGGPerceptualDistance
from agora_core.invert.ssim import gaussian_window, ssim


def _pair(h=32, w=40, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(2, 3, h, w, generator=g, dtype=torch.float64)
    x = torch.nn.functional.avg_pool2d(x, 3, 1, 1)  # some structure, not only noise
    y = (x + 0.1 * torch.randn(x.shape, generator=g, dtype=torch.float64)).clamp(0, 1)
    return x, y


def test_ssim_matches_skimage():
    # float64 on both sides: the only differences are summation order (~1e-12)
    x, y = _pair()
    ours = ssim(x, y)
    for i in range(2):
        ref = structural_similarity(x[i].permute(1, 2, 0).numpy(), y[i].permute(1, 2, 0).numpy(), data_range=1.0,
                                    channel_axis=2, gaussian_weights=True, sigma=1.5, use_sample_covariance=False)
        assert abs(float(ours[i]) - ref) < 1e-9, (float(ours[i]), ref)
    assert torch.allclose(ssim(x, x), torch.ones(2, dtype=torch.float64))


def test_ssim_window_and_gradient():
    k = gaussian_window()
    assert k.numel() == 11 and abs(float(k.sum()) - 1) < 1e-6 and torch.argmax(k) == 5
    x, y = _pair(seed=1)
    x = x.float().requires_grad_(True)
    (1 - ssim(x, y.float()).mean()).backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    # gradient check in float64 on a small image (fast mode: random projections of the Jacobian)
    a, b = _pair(12, 12, seed=2)
    a.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda t: ssim(t, b), (a,), eps=1e-6, atol=1e-5, fast_mode=True)


def test_psnr():
    x = torch.zeros(1, 3, 4, 4)
    assert abs(float(psnr(x, x + 0.1)) - 20.0) < 1e-4


@pytest.fixture(scope="module")
def vgg_file(tmp_path_factory):
    """torchvision's VGG16 layout with random weights (the real file cannot be downloaded here);
    only the features are saved, which the loader accepts as well as the full state dict."""
    from torchvision.models.vgg import cfgs, make_layers

    torch.manual_seed(0)
    features = make_layers(cfgs["D"]).state_dict()  # vgg16().features
    path = tmp_path_factory.mktemp("vgg") / "vgg16.pth"
    torch.save({f"features.{k}": v for k, v in features.items()}, path)
    return path


def test_vgg_perceptual_distance(vgg_file, monkeypatch):
    d = VGGPerceptualDistance.from_file(vgg_file)
    assert not any(p.requires_grad for p in d.parameters())
    x, y = (t.float() for t in _pair())
    same, diff = d(x, x), d(x, y)
    assert same.shape == (2,) and torch.allclose(same, torch.zeros(2), atol=1e-6)
    assert (diff > 0).all()
    x.requires_grad_(True)
    d(x, y).sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    monkeypatch.setattr("agora_core.invert.lpips_distance.lpips_available", lambda: (False, "lpips absent"))
    loss = make_reconstruction_loss(str(vgg_file))  # without the lpips package: the uncalibrated distance
    assert loss.perceptual_name == "vgg"
    terms = loss(x.detach(), y)
    assert torch.allclose(terms.total, terms.l2 + terms.perceptual)


def test_bad_perceptual_weights(tmp_path):
    with pytest.raises(AgoraError, match="no such file"):
        VGGPerceptualDistance.from_file(tmp_path / "none.pth")
    (tmp_path / "junk.pth").write_bytes(b"junk")
    with pytest.raises(AgoraError, match="not a readable torch state dict"):
        VGGPerceptualDistance.from_file(tmp_path / "junk.pth")
    torch.save({"features.0.weight": torch.zeros(3)}, tmp_path / "alex.pth")
    with pytest.raises(AgoraError, match="not a torchvision VGG16 state dict"):
        VGGPerceptualDistance.from_file(tmp_path / "alex.pth")


def test_fallback_is_l2_plus_ssim_and_says_so():
    said = []
    loss = make_reconstruction_loss(None, warn=said.append)
    assert len(said) == 1 and "SSIM" in said[0] and loss.perceptual_name == "1-ssim"
    x, y = (t.float() for t in _pair())
    terms = loss(x, y)
    assert torch.allclose(terms.perceptual, 1 - ssim(x, y).mean())
    assert torch.allclose(terms.l2, (x - y).pow(2).mean())
    assert isinstance(loss, ReconstructionLoss)
