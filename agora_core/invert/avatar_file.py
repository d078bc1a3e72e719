"""`avatar.pt`: a personalised AGORA avatar from PTI, tensors and plain types only.

A dict (loads with `torch.load(path, weights_only=True)`; no pickled modules or classes):

    format "agora-avatar", format_version 1
    generator         tuned G state dict (all weights; self-contained, no base checkpoint needed)
    generator_config  the resolved GeneratorConfig as a plain dict
    head_config       the training HeadConfig (how to rebuild the head), or {"imported_run": folder} for
                      an avatar of an imported run (the head of its head file); head_model its model id
    resolution        render resolution of the base model (and of `crops`)
    w                 [1, w_dim] the pivot (every synthesis layer uses it)
    shape             [1, S] FLAME shape β of the person
    frames            per input frame: expression [F, E], jaw [F, 3], eyelids [F, 2], neck [F, 3],
                      eyes [F, 6], camera [F, 25] (label, camera_rotation applied), camera_rotation [F, 3]
    crops             [F, R, R, 3] uint8 the input crops (matted on white)
    neutral           cached neutral Gaussians (ψ = 0, θ = 0) of the tuned G: means [1, N, 3],
                      log_scales [1, N, 3], quats [1, N, 4], sh [1, N, K, 3], opacities [1, N]
    mapping_camera    [c_dim] label of the base model's mapping (EG3D [25]; imported runs: DECA [12])
    sources           input names; base_checkpoint: the checkpoint PTI started from
    pti               settings and results (numbers/strings)

Written to a temporary file and renamed.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from agora_core.errors import AgoraError, check_finite, file_error
from agora_core.gaussians import GaussianSet
from agora_core.gaussians.files import atomic_write
from agora_core.head.flame_params import FLAME_KEYS

FORMAT_NAME = "agora-avatar"
FORMAT_VERSION = 1
NEUTRAL_KEYS = ("means", "log_scales", "quats", "sh", "opacities")
FRAME_FIELDS = (*(k for k in FLAME_KEYS if k != "shape"), "camera", "camera_rotation")  # shape: one, stored beside
_ENTRY_TYPES = {"generator": dict, "generator_config": dict, "head_config": dict, "head_model": str, "resolution": int,
                "w": Tensor, "shape": Tensor, "frames": dict, "crops": Tensor, "neutral": dict, "mapping_camera": Tensor,
                "sources": list, "base_checkpoint": str, "pti": dict}
_TENSOR_DICTS = ("generator", "frames", "neutral")


@dataclass
class AvatarFile:
    generator: dict[str, Tensor]
    generator_config: dict
    head_config: dict
    head_model: str
    resolution: int
    w: Tensor
    shape: Tensor
    frames: dict[str, Tensor]
    crops: Tensor
    neutral: dict[str, Tensor]
    mapping_camera: Tensor
    sources: list[str] = field(default_factory=list)
    base_checkpoint: str = ""
    pti: dict = field(default_factory=dict)
    path: Path | None = field(default=None, compare=False)  # the file it was loaded from

    @property
    def num_frames(self) -> int:
        return int(self.crops.shape[0])

    def neutral_gaussians(self, device: str | torch.device = "cpu") -> GaussianSet:
        return GaussianSet(**{k: self.neutral[k].to(device) for k in NEUTRAL_KEYS})

    # --- file ---------------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        cpu = lambda d: {k: v.detach().cpu().contiguous() for k, v in d.items()}  # noqa: E731
        return {"format": FORMAT_NAME, "format_version": FORMAT_VERSION, "generator": cpu(self.generator),
                "generator_config": dict(self.generator_config), "head_config": dict(self.head_config),
                "head_model": self.head_model, "resolution": int(self.resolution), "w": self.w.detach().cpu(),
                "shape": self.shape.detach().cpu(), "frames": cpu(self.frames), "crops": self.crops.cpu(),
                "neutral": cpu(self.neutral), "mapping_camera": self.mapping_camera.detach().cpu(),
                "sources": list(self.sources), "base_checkpoint": self.base_checkpoint, "pti": dict(self.pti)}

    def save(self, path: str | Path) -> Path:
        """Atomic write (temporary file, fsync, rename)."""
        path = Path(path)
        with atomic_write(path) as f:
            torch.save(self.to_dict(), f)
        return path

    @staticmethod
    def load(path: str | Path) -> "AvatarFile":
        """Read and check an avatar file; every problem is one `AgoraError` naming the file."""
        from agora_core.torch_files import read_torch_file

        path = Path(path)
        doc = read_torch_file(path, "avatar file", "make an avatar with `agora invert`")
        if not isinstance(doc, dict) or not isinstance(doc.get("format"), str) or doc["format"] != FORMAT_NAME:
            what = doc.get("format") if isinstance(doc, dict) else type(doc).__name__
            raise file_error(path, f"not an agora avatar file (format={what!r}); make one with `agora invert`")
        if type(doc.get("format_version")) is not int or doc["format_version"] != FORMAT_VERSION:
            raise file_error(path, f"avatar format_version {doc.get('format_version')} is not supported "
                                   f"(this agora reads {FORMAT_VERSION}); re-run `agora invert`")
        for key, kind in _ENTRY_TYPES.items():
            value = doc.get(key)
            ok = isinstance(value, kind) and (kind is not dict or key not in _TENSOR_DICTS
                                              or all(isinstance(v, Tensor) for v in value.values()))
            if key in doc and not ok:
                expected = "dict of tensors" if key in _TENSOR_DICTS else kind.__name__
                raise file_error(path, f"avatar entry '{key}' is not a {expected}; it is damaged, re-run `agora invert`")
        try:
            avatar = AvatarFile(
                generator=doc["generator"], generator_config=doc["generator_config"], head_config=doc["head_config"],
                head_model=str(doc["head_model"]), resolution=int(doc["resolution"]), w=doc["w"], shape=doc["shape"],
                frames=doc["frames"], crops=doc["crops"], neutral=doc["neutral"], mapping_camera=doc["mapping_camera"],
                sources=list(doc.get("sources", [])), base_checkpoint=str(doc.get("base_checkpoint", "")),
                pti=dict(doc.get("pti", {})), path=path)
        except (KeyError, TypeError, ValueError) as exc:
            raise file_error(path, f"avatar file lacks {exc}; it is damaged, re-run `agora invert`") from None
        missing = [k for k in NEUTRAL_KEYS if k not in avatar.neutral] + [k for k in FRAME_FIELDS if k not in avatar.frames]
        if missing or avatar.w.ndim != 2 or avatar.shape.ndim != 2:
            raise file_error(path, f"avatar file is damaged ({', '.join(missing) or 'bad w/shape'}); re-run `agora invert`")
        check_finite({k: doc[k] for k in ("generator", "w", "shape", "frames", "neutral", "mapping_camera")}, path,
                     "avatar entry")
        return avatar


def temp_path(path: Path) -> Path:
    """A hidden temporary name beside `path` with the same suffix."""
    return path.with_name(f".{path.stem}.{os.getpid()}.{secrets.token_hex(4)}.tmp{path.suffix}")


def build_avatar_generator(avatar: AvatarFile, where: str | Path, device: str | torch.device = "cpu",
                           flame_pkl: str | None = None, flame_uv: str | None = None,
                           flame_eyelids: str | None = None):
    """The avatar's tuned generator (eval, no grad), on the head it was made with.

    Raises `AgoraError` when the head built here is another model than the avatar's (e.g. an avatar
    of the demo head with FLAME files given, or FLAME files of another version), or the weights do
    not fit the stored config.
    """
    from agora_core.head.build import build_head
    from agora_core.inference.checkpoint import load_generator_weights
    from agora_core.models.agora_generator import AgoraGenerator
    from agora_core.models.generator_config import GeneratorConfig
    from agora_core.run_config import build_dataclass

    if "imported_run" in avatar.head_config:  # an avatar of an imported run: its head file
        from agora_core.inference import imported_head

        head = imported_head(avatar.head_config["imported_run"])
    else:
        head = build_head(_head_config(avatar, where, flame_pkl, flame_uv, flame_eyelids))
    if head.model_id != avatar.head_model:
        raise AgoraError(f"{where}: avatar of head model '{avatar.head_model}', but the head built here is "
                         f"'{head.model_id}'; use the head (--flame/--flame-uv/--flame-eyelids) the avatar was made with")
    config = build_dataclass(GeneratorConfig, avatar.generator_config, f"{where} (generator_config)")
    G = AgoraGenerator(config, head)
    load_generator_weights(G, avatar.generator, where)
    if avatar.w.shape[1] != config.w_dim or avatar.shape.shape[1] != head.num_shape:
        raise file_error(where, f"w {tuple(avatar.w.shape)} / shape {tuple(avatar.shape.shape)} do not fit the "
                                f"generator (w_dim {config.w_dim}, {head.num_shape} shape coefficients)")
    return G.to(device).eval().requires_grad_(False)


def _head_config(avatar: AvatarFile, where, flame_pkl, flame_uv, flame_eyelids):
    """The avatar's training HeadConfig with the --flame/--flame-uv/--flame-eyelids overrides."""
    from agora_core.head.build import with_flame_files
    from agora_core.head.config import HeadConfig
    from agora_core.run_config import build_dataclass

    head_cfg = build_dataclass(HeadConfig, avatar.head_config, f"{where} (head_config)")
    return with_flame_files(head_cfg, flame_pkl, flame_uv, flame_eyelids)
