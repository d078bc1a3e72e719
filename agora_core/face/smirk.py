"""SMIRK's FLAME encoder (Retsinas et al., CVPR 2024), loadable from the official ``SMIRK_em1.pt``.

Three timm MobileNetV3 backbones (``features_only``, built with ``pretrained=False``: nothing is
downloaded), each followed by a global average pool of its last feature map and one linear layer:

- ``pose_encoder``: tf_mobilenetv3_small_minimal_100 -> ``pose_cam_layers`` -> 6 = global pose
  (axis-angle, 3) + weak-perspective camera (s, tx, ty);
- ``shape_encoder``: tf_mobilenetv3_large_minimal_100 -> ``shape_layers`` -> 300 FLAME shape;
- ``expression_encoder``: same backbone -> ``expression_layers`` -> 55 = 50 expression,
  2 eyelids (clamped to [0, 1]), 3 jaw (axis-angle; x through relu, y and z clamped to ±0.2).

Input: the 224² SMIRK crop (crop.py), RGB in [0, 1], no normalisation.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import timm
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from agora_core.assets import require_asset
from agora_core.errors import check_finite, file_error
from agora_core.face.crop import SMIRK_CROP_SIZE

POSE_BACKBONE = "tf_mobilenetv3_small_minimal_100"
SHAPE_EXPRESSION_BACKBONE = "tf_mobilenetv3_large_minimal_100"
NUM_SHAPE, NUM_EXPRESSION, NUM_EYELIDS, NUM_JAW = 300, 50, 2, 3
JAW_YZ_LIMIT = 0.2  # SMIRK clamps the jaw's y and z rotations (radians)
CHECKPOINT_PREFIX = "smirk_encoder."  # key prefix of the encoder in SMIRK_em1.pt


def _backbone(name: str) -> tuple[nn.Module, int]:
    """timm ``features_only`` backbone and its last feature map's channel count."""
    model = timm.create_model(name, pretrained=False, features_only=True)
    return model, model.feature_info.channels()[-1]


def _pooled_last_features(encoder: nn.Module, image: Tensor) -> Tensor:
    """[B, 3, H, W] -> [B, C] global average of the backbone's last feature map."""
    return encoder(image)[-1].mean(dim=(2, 3))


class PoseEncoder(nn.Module):
    """[B, 3, 224, 224] -> pose_params [B, 3] (axis-angle), cam [B, 3] (s, tx, ty)."""

    def __init__(self):
        super().__init__()
        self.encoder, channels = _backbone(POSE_BACKBONE)
        self.pose_cam_layers = nn.Sequential(nn.Linear(channels, 6))
        # SMIRK's initialisation (matters only when training from scratch): near-zero pose,
        # camera scale 7.
        with torch.no_grad():
            self.pose_cam_layers[0].weight.mul_(1e-3)
            self.pose_cam_layers[0].bias.zero_()
            self.pose_cam_layers[0].bias[3] = 7.0

    def forward(self, image: Tensor) -> dict[str, Tensor]:
        out = self.pose_cam_layers(_pooled_last_features(self.encoder, image))
        return {"pose_params": out[:, :3], "cam": out[:, 3:]}


class ShapeEncoder(nn.Module):
    """[B, 3, 224, 224] -> shape_params [B, 300]."""

    def __init__(self):
        super().__init__()
        self.encoder, channels = _backbone(SHAPE_EXPRESSION_BACKBONE)
        self.shape_layers = nn.Sequential(nn.Linear(channels, NUM_SHAPE))
        with torch.no_grad():  # SMIRK starts from the mean shape
            self.shape_layers[0].weight.zero_()
            self.shape_layers[0].bias.zero_()

    def forward(self, image: Tensor) -> dict[str, Tensor]:
        return {"shape_params": self.shape_layers(_pooled_last_features(self.encoder, image))}


class ExpressionEncoder(nn.Module):
    """[B, 3, 224, 224] -> expression_params [B, 50], eyelid_params [B, 2], jaw_params [B, 3]."""

    def __init__(self):
        super().__init__()
        self.encoder, channels = _backbone(SHAPE_EXPRESSION_BACKBONE)
        self.expression_layers = nn.Sequential(nn.Linear(channels, NUM_EXPRESSION + NUM_EYELIDS + NUM_JAW))
        with torch.no_grad():
            self.expression_layers[0].weight.mul_(0.1)
            self.expression_layers[0].bias.zero_()

    def forward(self, image: Tensor) -> dict[str, Tensor]:
        out = self.expression_layers(_pooled_last_features(self.encoder, image))
        expression, eyelids, jaw = out.split([NUM_EXPRESSION, NUM_EYELIDS, NUM_JAW], dim=1)
        jaw = torch.cat([F.relu(jaw[:, :1]), jaw[:, 1:].clamp(-JAW_YZ_LIMIT, JAW_YZ_LIMIT)], dim=1)
        return {"expression_params": expression, "eyelid_params": eyelids.clamp(0.0, 1.0), "jaw_params": jaw}


class SmirkEncoder(nn.Module):
    """SMIRK's encoder; ``state_dict()`` keys equal SMIRK_em1.pt's ``smirk_encoder.*`` keys minus
    the prefix. ``forward(image [B, 3, 224, 224] RGB in [0, 1]) -> dict`` with SMIRK's key names:
    pose_params [B,3], cam [B,3], shape_params [B,300], expression_params [B,50],
    eyelid_params [B,2], jaw_params [B,3]."""

    def __init__(self):
        super().__init__()
        self.pose_encoder = PoseEncoder()
        self.shape_encoder = ShapeEncoder()
        self.expression_encoder = ExpressionEncoder()

    def forward(self, image: Tensor) -> dict[str, Tensor]:
        assert image.ndim == 4 and image.shape[1] == 3, image.shape
        return {**self.pose_encoder(image), **self.shape_encoder(image), **self.expression_encoder(image)}


def encoder_state_dict(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """The encoder's entries of a SMIRK checkpoint: ``smirk_encoder.*`` with the prefix dropped
    (``smirk_generator.*`` and anything else ignored), or the whole dict when no key has the
    prefix (a plain encoder state dict, as our own tracker saves it)."""
    if any(k.startswith(CHECKPOINT_PREFIX) for k in state):
        return {k[len(CHECKPOINT_PREFIX) :]: v for k, v in state.items() if k.startswith(CHECKPOINT_PREFIX)}
    return dict(state)


def load_smirk_encoder(path: str | Path, device: str | torch.device = "cpu") -> SmirkEncoder:
    """`SmirkEncoder` in eval mode with the weights of ``path`` (SMIRK_em1.pt or a plain encoder
    state dict), strictly matched; any problem is an `AgoraError` naming the file."""
    from agora_core.torch_files import read_torch_file

    path = Path(path)
    if not path.is_file():
        raise file_error(path, "SMIRK checkpoint not found; pass --smirk PATH")
    state = read_torch_file(path, "PyTorch state dict", "pass SMIRK_em1.pt")
    if not isinstance(state, Mapping) or not all(isinstance(v, Tensor) for v in state.values()):
        raise file_error(path, "expected a state dict of tensors (SMIRK_em1.pt layout)")
    state = encoder_state_dict(state)
    model = SmirkEncoder()
    _check_keys(path, set(model.state_dict()), set(state))
    check_finite(state, path, "SMIRK weight")
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        detail = next((ln.strip() for ln in str(exc).splitlines() if "size mismatch" in ln), str(exc)[:200])
        raise file_error(path, f"weights do not fit SMIRK's encoder ({detail})") from None
    return model.eval().to(device)


def _check_keys(path: Path, expected: set[str], found: set[str]) -> None:
    missing, unexpected = sorted(expected - found), sorted(found - expected)
    if missing or unexpected:
        raise file_error(
            path,
            f"not a SMIRK encoder checkpoint: {len(missing)} missing key(s) {missing[:3]}, "
            f"{len(unexpected)} unexpected key(s) {unexpected[:3]}; pass SMIRK_em1.pt",
        )


class SmirkEstimator:
    """FLAME parameters from 224² face crops with SMIRK's encoder.

    ``estimate(crops uint8 [B, 224, 224, 3] or [224, 224, 3])`` -> dict of float32 numpy arrays:
    shape [B, 300], expression [B, 50], eyelids [B, 2], jaw [B, 3], global_pose [B, 3],
    cam [B, 3] (SMIRK's weak perspective s, tx, ty for the crop).
    """

    def __init__(self, ckpt_path: str | Path, device: str | torch.device = "cpu"):
        self.device = torch.device(device)
        self.encoder = load_smirk_encoder(ckpt_path, self.device)

    @classmethod
    def from_asset(cls, explicit: str | Path | None = None, device: str | torch.device = "cpu") -> "SmirkEstimator":
        """Load the file given by --smirk / $AGORA_SMIRK / assets.yaml (one-line error if none)."""
        return cls(require_asset("smirk_ckpt", explicit), device)

    @torch.inference_mode()
    def estimate_tensor(self, images: Tensor) -> dict[str, Tensor]:
        """[B, 3, 224, 224] RGB in [0, 1] -> dict of [B, ...] tensors (keys as `estimate`)."""
        assert images.ndim == 4 and images.shape[1:] == (3, SMIRK_CROP_SIZE, SMIRK_CROP_SIZE), images.shape
        out = self.encoder(images.to(self.device, torch.float32))
        return {
            "shape": out["shape_params"],
            "expression": out["expression_params"],
            "eyelids": out["eyelid_params"],
            "jaw": out["jaw_params"],
            "global_pose": out["pose_params"],
            "cam": out["cam"],
        }

    def estimate(self, crops: np.ndarray) -> dict[str, np.ndarray]:
        """uint8 RGB crops [B, 224, 224, 3] (or one [224, 224, 3]) -> dict of [B, ...] float32."""
        crops = crops[None] if crops.ndim == 3 else crops
        assert crops.dtype == np.uint8 and crops.shape[1:] == (SMIRK_CROP_SIZE, SMIRK_CROP_SIZE, 3), (
            crops.dtype,
            crops.shape,
        )
        images = torch.from_numpy(np.ascontiguousarray(crops)).permute(0, 3, 1, 2).float() / 255.0
        return {k: v.cpu().numpy().astype(np.float32) for k, v in self.estimate_tensor(images).items()}


__all__ = [
    "SmirkEncoder",
    "SmirkEstimator",
    "encoder_state_dict",
    "load_smirk_encoder",
]
