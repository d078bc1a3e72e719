"""A perceptual distance from VGG16 features, LPIPS-style, without LPIPS's learned heads.

LPIPS (Zhang et al. 2018) compares unit-normalised deep features layer by layer. Its learned
per-channel linear heads (and the AlexNet/VGG weights it starts from) cannot be downloaded here, so
this is LPIPS's "baseline" variant: the same five VGG16 layers (relu1_2, relu2_2, relu3_3, relu4_3,
relu5_3), each feature vector normalised to unit length over channels, the squared difference
summed over channels, averaged over pixels, summed over layers — i.e. every linear weight is 1.
Values are therefore not comparable to published LPIPS numbers (nor to PTI's 0.06 stop threshold).

The weights are the user's file: the official torchvision VGG16 state dict
(`torchvision.models.vgg16(weights="IMAGENET1K_V1").state_dict()`, saved with `torch.save`), or
only its `features.*` entries; loaded with `torch.load(weights_only=True)`.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn

from agora_core.errors import check_finite, file_error

VGG16_TAPS = (3, 8, 15, 22, 29)  # indices of relu1_2 … relu5_3 in torchvision's vgg16().features
IMAGENET_MEAN = (0.485, 0.456, 0.406)  # what torchvision's VGG16 weights expect
IMAGENET_STD = (0.229, 0.224, 0.225)
FLAG = "--perceptual-weights"


def _unit_normalise(f: Tensor, eps: float = 1e-10) -> Tensor:
    """Feature vectors [B, C, H, W] scaled to unit L2 norm over C (LPIPS's normalize_tensor)."""
    return f / (f.pow(2).sum(dim=1, keepdim=True).sqrt() + eps)


class VGGPerceptualDistance(nn.Module):
    """d(x, y) = Σ_l mean_hw ‖f̂_l(x) − f̂_l(y)‖² over VGG16 layers l (LPIPS baseline).

    `forward(x [B, 3, H, W], y [B, 3, H, W]) -> [B]`, images in [0, 1]. Frozen (no parameter
    requires grad); gradients flow to the images.
    """

    def __init__(self, features: nn.Sequential):
        super().__init__()
        self.features = features[: VGG16_TAPS[-1] + 1].eval().requires_grad_(False)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).reshape(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).reshape(1, 3, 1, 1))

    @staticmethod
    def from_file(path: str | Path, device: str | torch.device = "cpu") -> "VGGPerceptualDistance":
        """Load the VGG16 features from a torchvision state dict; problems are `AgoraError`s."""
        from torchvision.models.vgg import cfgs, make_layers

        from agora_core.torch_files import read_torch_file

        path = Path(path)
        state = read_torch_file(path, "torch state dict", f"{FLAG} wants torchvision's VGG16 state dict "
                                "saved with torch.save")
        if not isinstance(state, dict):
            raise file_error(path, f"holds a {type(state).__name__}, not a state dict ({FLAG})")
        features = make_layers(cfgs["D"])  # = torchvision's vgg16().features, without the 120M-weight classifier
        wanted = features.state_dict()
        found = {k.removeprefix("features."): v for k, v in state.items() if k.startswith("features.")}
        missing = sorted(set(wanted) - set(found))
        wrong = sorted(k for k in set(wanted) & set(found)
                       if not isinstance(found[k], Tensor) or found[k].shape != wanted[k].shape)
        if missing or wrong:
            bad = (missing or wrong)[0]
            raise file_error(path, f"not a torchvision VGG16 state dict ({'missing' if missing else 'wrong shape of'} "
                                   f"features.{bad}); {FLAG} wants vgg16().state_dict()")
        check_finite({f"features.{k}": found[k] for k in wanted}, path, "VGG16 weight")
        features.load_state_dict({k: found[k].float() for k in wanted})
        return VGGPerceptualDistance(features).to(device)

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        assert x.shape == y.shape and x.ndim == 4 and x.shape[1] == 3, (x.shape, y.shape)
        b = x.shape[0]
        h = (torch.cat([x, y]) - self.mean) / self.std  # one pass for both images
        total = x.new_zeros(b)
        for i, layer in enumerate(self.features):
            h = layer(h)
            if i in VGG16_TAPS:
                fx, fy = _unit_normalise(h[:b]), _unit_normalise(h[b:])
                total = total + (fx - fy).pow(2).sum(dim=1).mean(dim=(1, 2))
        return total
