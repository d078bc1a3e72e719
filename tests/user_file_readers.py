"""Every reader of a file a user passes, as the stages call it: the one table the reliability tests
(untrusted files, damaged files) draw from. Imports are lazy so that a table lookup stays cheap."""

from __future__ import annotations

from importlib import import_module
from pathlib import Path
from typing import Callable


def _attr(module: str, name: str):
    obj = import_module(module)
    for part in name.split("."):
        obj = getattr(obj, part)
    return obj


def _call(module: str, name: str, **kwargs) -> Callable[[Path], object]:
    return lambda path: _attr(module, name)(path, **kwargs)


def _fit_state(path: Path) -> object:
    regressor_fit = import_module("agora_core.mobile.regressor_fit")
    return regressor_fit._load_state(path, "key", regressor_fit.FitConfig())


READERS: dict[str, Callable[[Path], object]] = {
    "checkpoint": _call("agora_core.inference.checkpoint", "load_checkpoint"),
    "export source": _call("agora_core.export.sources", "load_avatar_source", seed=0),
    "avatar": _call("agora_core.invert.avatar_file", "AvatarFile.load"),
    "fit-mlp state": _fit_state,
    "basis": _call("agora_core.mobile.basis_file", "GaussianBasis.load"),
    "mlp": _call("agora_core.mobile.coefficient_mlp", "CoefficientMLP.load"),
    "driving": _call("agora_core.reenact.driving", "DrivingSequence.load"),
    "config": _call("agora_core.run_config", "load_config"),
    "ply": _call("agora_core.gaussians", "read_ply"),
    "splat": _call("agora_core.gaussians", "read_splat"),
    "flame pickle": _call("agora_core.head.flame_io", "load_flame_pickle"),
    "eyelids": _call("agora_core.head.flame_io", "load_eyelid_blendshapes"),
    "smirk": _call("agora_core.face.smirk", "load_smirk_encoder"),
    "tracker": _call("agora_core.metrics.tracking", "load_tracker"),
    "vgg16": _call("agora_core.invert.perceptual", "VGGPerceptualDistance.from_file"),
    "inception": _call("agora_core.metrics.features", "load_inception"),
    "arcface": _call("agora_core.metrics.identity", "ArcFaceEmbedder"),
    "modnet": _call("agora_core.face.matting", "ModnetMatter"),
}
