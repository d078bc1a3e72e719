"""The base model PTI starts from: G_ema of a training checkpoint, rebuilt from its stored config, or
the generator of an imported run (`agora import`; `inference.load_model`).

Built on the one checkpoint reader (`inference.checkpoint.load_checkpoint`, weights_only) and head
builder (`head.build.build_head`), so the head matches the one G was trained on. Every way the
file can be wrong (missing, not a checkpoint, another format version, weights that do not fit the
stored config, a head model other than the one it names) is one `AgoraError` line naming the file.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from agora_core.errors import AgoraError
from agora_core.models.agora_generator import AgoraGenerator
from agora_core.render import FLAME_CAMERA_RADIUS, orbit_cameras
from agora_core.head.build import check_head_model
from agora_core.inference.checkpoint import load_generator_weights
from agora_core.run_config import TrainConfig, config_from_dict, config_to_dict


@dataclass
class BaseGenerator:
    """G_ema of a checkpoint (eval mode, no grad) and what inversion needs to know about it."""

    generator: AgoraGenerator
    config: TrainConfig | None  # the stored training config (head, generator, resolution); None: imported run
    head_model: str  # model id of the head G is built on
    mapping_camera: Tensor  # [c_dim] label of the mapping network's framing: the training set's frontal
    #   EG3D camera [25], or for an imported run the DECA label of its framing [12]
    source: str  # the checkpoint file or imported run folder
    imported_resolution: int = 0  # an imported run's render size

    @property
    def resolution(self) -> int:
        return self.config.resolution if self.config is not None else self.imported_resolution

    def generator_config_dict(self) -> dict:
        if self.config is None:
            return dataclasses.asdict(self.generator.config)
        return config_to_dict(self.config.generator)

    def head_config_dict(self) -> dict:
        """How to rebuild the head: the training HeadConfig, or {"imported_run": folder} (its head file)."""
        if self.config is None:
            return {"imported_run": str(Path(self.source).resolve())}
        return config_to_dict(self.config.head)


def frontal_camera_label() -> Tensor:
    """[25] the frontal orbit camera at the FLAME framing radius (no training statistics known)."""
    zero = torch.zeros(1, dtype=torch.float64)
    cam = orbit_cameras(zero, zero, radius=FLAME_CAMERA_RADIUS, target=(0.0, 0.0, 0.0))
    return cam.to_label()[0].float()


def load_base_generator(checkpoint: str | Path, device: str | torch.device = "cpu",
                        flame_pkl: str | None = None, flame_uv: str | None = None,
                        flame_eyelids: str | None = None) -> BaseGenerator:
    """G_ema of `checkpoint` (a file, or a run folder: its newest checkpoint) on `device`.

    Args:
        flame_pkl, flame_uv: FLAME files overriding the checkpoint's stored paths (head source "flame").
        flame_eyelids: SMIRK's eyelid blendshapes overriding the stored path.
    """
    from agora_core.head.build import build_head
    from agora_core.inference import is_imported_run
    from agora_core.inference.checkpoint import load_checkpoint

    if is_imported_run(checkpoint):
        if flame_pkl or flame_uv or flame_eyelids:
            raise AgoraError(f"--flame/--flame-uv/--flame-eyelids: {checkpoint} is an imported run, whose head "
                             "comes from the authors' file")
        return _imported_base(checkpoint, device)
    state = load_checkpoint(checkpoint)
    try:
        config = config_from_dict(state["config"], source=f"{checkpoint} (stored config)")
    except KeyError:
        raise AgoraError(f"{checkpoint}: checkpoint has no stored config; it is not from `agora train`") from None
    head_cfg = config.head
    if flame_pkl or flame_uv:
        head_cfg = dataclasses.replace(head_cfg, flame_pkl=flame_pkl or head_cfg.flame_pkl,
                                       flame_uv=flame_uv or head_cfg.flame_uv)
    if flame_eyelids:
        head_cfg = dataclasses.replace(head_cfg, flame_eyelids=flame_eyelids)
    if head_cfg is not config.head:
        config = dataclasses.replace(config, head=head_cfg)
    head = build_head(head_cfg)
    check_head_model(head, str(state.get("head_model", "")), checkpoint)
    generator = AgoraGenerator(config.generator, head)
    load_generator_weights(generator, state.get("G_ema") or state.get("G"), checkpoint)
    camera = (state.get("sampling") or {}).get("camera")
    camera = camera.reshape(25).float() if isinstance(camera, Tensor) and camera.numel() == 25 else frontal_camera_label()
    generator = generator.to(device).eval().requires_grad_(False)
    return BaseGenerator(generator, config, head.model_id, camera.to(device), str(checkpoint))


def _imported_base(run: str | Path, device) -> BaseGenerator:
    """An imported run as PTI's base: its generator; the mapping label of its framing (their s = 8
    reenactment camera, head unrotated)."""
    from agora_core.inference import load_model

    model = load_model(run, device)
    label = model.mapping_labels(1)[0]
    return BaseGenerator(model.generator, None, model.head_model, label.to(device), str(run), model.resolution)
