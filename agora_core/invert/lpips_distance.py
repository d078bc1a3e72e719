"""LPIPS (Zhang et al. 2018) with its learned heads, on an ImageNet backbone from the user's file.

The `lpips` package's wheel ships the learned per-channel linear heads (v0.1, a few KB each); the
backbone it would fetch from torchvision's servers is never downloaded here: the model is built
with a random backbone (`pnet_rand=True`) and the user's torchvision state dict is loaded into it
(through `read_torch_file`, weights only). The backbone, VGG16 or AlexNet, is told by the file's
content (the first convolution is 3×3 in VGG16, 11×11 in AlexNet).

With AlexNet this is the distance PTI stops on (its `lpips_type = 'alex'`, stop at LPIPS ≤ 0.06,
`PTI_LPIPS_STOP`); with VGG16 it is calibrated LPIPS too, but on another scale. When `lpips` does
not import, a VGG16 file still gives the uncalibrated `VGGPerceptualDistance` (perceptual.py).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import Tensor, nn

from agora_core.errors import AgoraError, check_finite, file_error

PTI_LPIPS_STOP = 0.06  # PTI's LPIPS_value_threshold (AlexNet LPIPS), paper's stopping rule
FLAG = "--perceptual-weights"
# The first convolution of torchvision's features tells the backbone apart.
_FIRST_CONV = {(64, 3, 3, 3): "vgg", (64, 3, 11, 11): "alex"}
_HOW = f"{FLAG} wants torchvision's vgg16() or alexnet() state_dict() saved with torch.save"


def lpips_available() -> tuple[bool, str]:
    """(whether the `lpips` package imports, its version or why not)."""
    try:
        import lpips
    except Exception as exc:  # noqa: BLE001 - any import failure means the fallback
        return False, f"lpips does not import ({type(exc).__name__}: {exc})"
    return True, f"lpips {getattr(lpips, '__version__', '?')}"


def backbone_of(state: dict, path: str | Path) -> str:
    """"vgg" or "alex" from a torchvision state dict's first convolution; `AgoraError` otherwise."""
    first = state.get("features.0.weight") if isinstance(state, dict) else None
    kind = _FIRST_CONV.get(tuple(first.shape)) if isinstance(first, Tensor) else None
    if kind is None:
        found = "no features.0.weight" if first is None else f"features.0.weight of shape {list(getattr(first, 'shape', []))}"
        raise file_error(path, f"not a torchvision VGG16 or AlexNet state dict ({found}); {_HOW}")
    return kind


def read_backbone_state(path: str | Path) -> tuple[str, dict[str, Tensor]]:
    """("vgg" | "alex", the file's features.* tensors), read without executing anything."""
    from agora_core.torch_files import read_torch_file

    state = read_torch_file(Path(path), "torch state dict", _HOW)
    if not isinstance(state, dict):
        raise file_error(path, f"holds a {type(state).__name__}, not a state dict ({_HOW})")
    return backbone_of(state, path), {k: v for k, v in state.items() if k.startswith("features.")}


class LPIPSDistance(nn.Module):
    """`forward(x [B, 3, H, W], y [B, 3, H, W]) -> [B]` LPIPS of images in [0, 1].

    Frozen (no parameter requires grad); gradients flow to the images.
    """

    def __init__(self, model: nn.Module, net: str):
        super().__init__()
        self.model = model.eval().requires_grad_(False)
        self.net = net

    @staticmethod
    def from_file(path: str | Path, device: str | torch.device = "cpu") -> "LPIPSDistance":
        """LPIPS with the package's heads and the backbone of `path`; problems are `AgoraError`s."""
        import lpips

        net, features = read_backbone_state(path)
        with warnings.catch_warnings():  # lpips passes torchvision's deprecated `pretrained=False`
            warnings.simplefilter("ignore", UserWarning)
            model = lpips.LPIPS(net=net, pretrained=True, pnet_rand=True, verbose=False)
        # lpips keeps torchvision's layer indices inside its slices: net.sliceK.<i>.* = features.<i>.*
        target = {f"features.{key.split('.', 1)[1]}": key for key in model.net.state_dict()}
        expected = model.net.state_dict()
        missing = sorted(k for k in target if k not in features)
        wrong = sorted(k for k in target if k in features and (not isinstance(features[k], Tensor)
                                                                or features[k].shape != expected[target[k]].shape))
        if missing or wrong:
            bad = (missing or wrong)[0]
            raise file_error(path, f"not a torchvision {'VGG16' if net == 'vgg' else 'AlexNet'} state dict "
                                   f"({'missing' if missing else 'wrong shape of'} {bad}); {_HOW}")
        check_finite({k: features[k] for k in target}, path, "backbone weight")
        model.net.load_state_dict({target[k]: features[k].float() for k in target})
        return LPIPSDistance(model, net).to(device)

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        assert x.shape == y.shape and x.ndim == 4 and x.shape[1] == 3, (x.shape, y.shape)
        return self.model(x, y, normalize=True).reshape(x.shape[0])  # normalize: [0, 1] -> [-1, 1]


def load_perceptual(path: str | Path, device: str | torch.device = "cpu") -> nn.Module:
    """LPIPS when the `lpips` package imports, else the uncalibrated VGG16 distance (VGG16 files only)."""
    if lpips_available()[0]:
        return LPIPSDistance.from_file(path, device)
    from agora_core.invert.perceptual import VGGPerceptualDistance

    net, _ = read_backbone_state(path)
    if net != "vgg":
        raise AgoraError(f"{FLAG} {path}: an AlexNet backbone needs the lpips package (pip install lpips)")
    return VGGPerceptualDistance.from_file(path, device)


def perceptual_name(distance: nn.Module | None) -> str:
    """"lpips-alex", "lpips-vgg", "vgg" (uncalibrated) or "1-ssim" (no file)."""
    if distance is None:
        return "1-ssim"
    return f"lpips-{distance.net}" if isinstance(distance, LPIPSDistance) else "vgg"
