"""Where the real assets users bring are looked up, and where they get them.

Resolution order for each asset: an explicit path (a command-line flag), then an environment
variable, then `~/.config/agora/assets.yaml` (or `$AGORA_CONFIG_DIR/assets.yaml`). Nothing is
ever downloaded: a missing asset is reported with the place a user obtains it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import yaml

from agora_core.errors import AgoraError


@dataclass(frozen=True)
class AssetSpec:
    """One real asset the toolkit can use."""

    key: str  # key in assets.yaml
    flag: str  # command-line flag that names it
    env: str  # environment variable that names it
    title: str  # what it is, for people
    obtain: str  # where a user gets it
    needed_for: str  # which stages use it
    optional: bool = False  # the real-asset path runs without it (with less), so its absence is fine
    folder_ok: bool = False  # a folder holding the files counts as the asset


ASSETS: dict[str, AssetSpec] = {
    spec.key: spec
    for spec in (
        AssetSpec(
            key="flame_pkl",
            flag="--flame",
            env="AGORA_FLAME_PKL",
            title="FLAME 2020 model (generic_model.pkl)",
            obtain="register at https://flame.is.tue.mpg.de, Downloads -> FLAME 2020 -> generic_model.pkl",
            needed_for="training/inversion on real faces (the demo head replaces it offline)",
        ),
        AssetSpec(
            key="flame_uv_obj",
            flag="--flame-uv",
            env="AGORA_FLAME_UV",
            title="FLAME UV template (head_template.obj)",
            obtain="https://flame.is.tue.mpg.de, Downloads -> FLAME texture space -> head_template.obj",
            needed_for="UV layout of the real FLAME model",
        ),
        AssetSpec(
            key="flame_eyelids",
            flag="--flame-eyelids",
            env="AGORA_FLAME_EYELIDS",
            title="SMIRK eyelid blendshapes (l_eyelid.npy, r_eyelid.npy)",
            obtain="the SMIRK repository (github.com/georgeretsi/smirk), folder assets/ "
                   "(l_eyelid.npy and r_eyelid.npy; its quick_install.sh fetches them): pass the folder",
            needed_for="eyelid animation on real FLAME (without it, eyelid parameters are ignored)",
            optional=True,
            folder_ok=True,
        ),
        AssetSpec(
            key="smirk_ckpt",
            flag="--smirk",
            env="AGORA_SMIRK",
            title="SMIRK checkpoint (SMIRK_em1.pt)",
            obtain="the SMIRK repository (github.com/georgeretsi/smirk), README -> pretrained model SMIRK_em1.pt",
            needed_for="prep-data, invert, reenact and eval on real photos/videos",
        ),
        AssetSpec(
            key="modnet_onnx",
            flag="--modnet",
            env="AGORA_MODNET",
            title="MODNet ONNX export (modnet_photographic_portrait_matting.onnx)",
            obtain="the MODNet repository (github.com/ZHKKKe/MODNet), onnx/README -> modnet_photographic_portrait_matting.onnx",
            needed_for="background matting in prep-data and invert on real photos",
        ),
        AssetSpec(
            key="perceptual_weights",
            flag="--perceptual-weights",
            env="AGORA_PERCEPTUAL_WEIGHTS",
            title="LPIPS backbone: torchvision AlexNet (PTI's) or VGG16 state dict",
            obtain="torchvision: torch.save(torchvision.models.alexnet(weights='IMAGENET1K_V1').state_dict(), "
                   "'alexnet.pth') where torchvision can download (its cached alexnet-owt-7be5be79.pth is that file)",
            needed_for="invert's perceptual loss: LPIPS, whose 0.06 stop is PTI's (without it: L2 + SSIM)",
            optional=True,
        ),
    )
}


def config_dir() -> Path:
    """`$AGORA_CONFIG_DIR`, else `~/.config/agora`."""
    env = os.environ.get("AGORA_CONFIG_DIR")
    return Path(env).expanduser() if env else Path.home() / ".config" / "agora"


def read_assets_yaml(path: Path | None = None) -> dict[str, str]:
    """Asset paths from assets.yaml; {} when the file does not exist."""
    path = path or config_dir() / "assets.yaml"
    if not path.exists():
        return {}
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise AgoraError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise AgoraError(f"{path}: expected a mapping of asset names to paths")
    unknown = sorted(set(data) - set(ASSETS))
    if unknown:
        raise AgoraError(f"{path}: unknown asset key(s) {', '.join(unknown)}; known: {', '.join(ASSETS)}")
    return {k: str(v) for k, v in data.items() if v}


@dataclass(frozen=True)
class ResolvedAsset:
    spec: AssetSpec
    path: Path | None  # where it was looked for (None: nowhere given)
    source: str  # "flag", "env", "assets.yaml" or "not configured"

    @property
    def found(self) -> bool:
        if self.path is None:
            return False
        return self.path.is_file() or (self.spec.folder_ok and self.path.is_dir())

    def existing(self) -> Path:
        """The path of an asset that was given; `AgoraError` naming it when it is not there."""
        if not self.found:
            raise AgoraError(f"{self.path}: {self.spec.title} not found (from {self.source}); "
                             f"get it from {self.spec.obtain}")
        return self.path


def resolve_asset(key: str, explicit: str | Path | None = None) -> ResolvedAsset:
    """Find one asset by flag value, environment variable or assets.yaml (in that order)."""
    spec = ASSETS[key]
    if explicit:
        return ResolvedAsset(spec, Path(explicit).expanduser(), "flag")
    if os.environ.get(spec.env):
        return ResolvedAsset(spec, Path(os.environ[spec.env]).expanduser(), "env")
    configured = read_assets_yaml().get(key)
    if configured:
        return ResolvedAsset(spec, Path(configured).expanduser(), "assets.yaml")
    return ResolvedAsset(spec, None, "not configured")


def require_asset(key: str, explicit: str | Path | None = None) -> Path:
    """The asset's path, or an `AgoraError` naming the flag and where to obtain the file."""
    res = resolve_asset(key, explicit)
    spec = res.spec
    if res.path is None:
        raise AgoraError(
            f"{spec.title} not given: pass {spec.flag} PATH, set {spec.env}, or add '{key}: PATH' to "
            f"{config_dir() / 'assets.yaml'}; get it from {spec.obtain}"
        )
    return res.existing()
