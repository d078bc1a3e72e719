"""The base model PTI starts from: any model source `inference.load_model` reads (a training
checkpoint or run folder, a model folder, an imported run), with what inversion adds to it: the
mapping network's camera label and how the avatar file rebuilds the generator and its head.

Every way the source can be wrong (missing, not a checkpoint, another format version, weights that do
not fit the stored config, a head model other than the one it names) is `load_model`'s one
`AgoraError` line naming the file.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from agora_core.inference import InferenceModel
from agora_core.models.agora_generator import AgoraGenerator
from agora_core.render import FLAME_CAMERA_RADIUS, orbit_cameras
from agora_core.run_config import config_to_dict


@dataclass
class BaseGenerator:
    """The loaded model (eval mode, no grad) and the mapping label PTI's pivot is conditioned on."""

    model: InferenceModel
    mapping_camera: Tensor  # [c_dim] label of the mapping network's framing: the training set's frontal
    #   EG3D camera [25] (the frontal orbit camera when the file stores none), or for an imported run
    #   the DECA label of its framing [12]

    @property
    def generator(self) -> AgoraGenerator:
        return self.model.generator

    @property
    def resolution(self) -> int:
        return self.model.resolution

    @property
    def head_model(self) -> str:
        return self.model.head_model

    @property
    def source(self) -> str:
        return self.model.source

    def generator_config_dict(self) -> dict:
        if self.model.config is None:
            return dataclasses.asdict(self.generator.config)
        return config_to_dict(self.model.config.generator)

    def head_config_dict(self) -> dict:
        """How to rebuild the head: the training HeadConfig, or {"imported_run": folder} (its head file)."""
        if self.model.config is None:
            return {"imported_run": str(Path(self.source).resolve())}
        return config_to_dict(self.model.config.head)


def frontal_camera_label() -> Tensor:
    """[25] the frontal orbit camera at the FLAME framing radius (no training statistics known)."""
    zero = torch.zeros(1, dtype=torch.float64)
    cam = orbit_cameras(zero, zero, radius=FLAME_CAMERA_RADIUS, target=(0.0, 0.0, 0.0))
    return cam.to_label()[0].float()


def load_base_generator(checkpoint: str | Path, device: str | torch.device = "cpu",
                        flame_pkl: str | None = None, flame_uv: str | None = None,
                        flame_eyelids: str | None = None) -> BaseGenerator:
    """The model at `checkpoint` (`inference.load_model`) on `device`, as PTI's base.

    Args:
        flame_pkl, flame_uv: FLAME files overriding the checkpoint's stored paths (head source "flame").
        flame_eyelids: SMIRK's eyelid blendshapes overriding the stored path.
    """
    from agora_core.inference import load_model

    model = load_model(checkpoint, device, flame_pkl=flame_pkl, flame_uv=flame_uv, flame_eyelids=flame_eyelids)
    label = model.mapping_labels(1)[0] if model.framing is not None else frontal_camera_label()
    return BaseGenerator(model, label.to(device))
