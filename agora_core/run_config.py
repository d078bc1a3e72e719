"""A run's configuration: frozen dataclasses, loaded from YAML with strict key and type checks.

What `agora train` is given, writes to RUN/config.yaml and stores in every checkpoint, and what every
later stage rebuilds the model from (`generator`, `head`, `resolution`), so it is a building block,
not part of the training package.

`load_config(yaml_path, overrides)` reads a YAML file (yaml.safe_load), rejects unknown keys and
wrongly typed values with an `AgoraError` naming the file and the key, applies command-line
overrides given as dotted keys (`{"loss.r1_gamma": 2, "batch_size": "8"}`; string values are parsed
as YAML scalars, so `--set optim.betas=[0,0.99]` works), and builds a `TrainConfig`.
`config_to_dict` turns it back into plain data for `RUN/config.yaml` and checkpoints.

Defaults are the paper's stage 1 (sec. 4 "Implementation details"; the authors' released configs).
"""

from __future__ import annotations

import dataclasses
import enum
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from agora_core.errors import AgoraError
from agora_core.head.config import HeadConfig
from agora_core.models.generator_config import DiscriminatorConfig, GeneratorConfig


@dataclass(frozen=True)
class LossConfig:
    """Loss weights (sec. 3.8, sec. 4) and the regularisation schedule."""

    r1_gamma: float = 1.0  # γ of the R1 penalty on real RGB + real cue (sec. 4)
    r1_interval: int = 16  # lazy R1: every this many minibatches, scaled by it (StyleGAN2)
    lambda_position: float = 0.25  # λ_pos, main-branch raw position L2 (sec. 4)
    lambda_scale: float = 0.5  # λ_scale, main-branch raw scale L2
    lambda_deform_position: float = 1.5  # λ^D_pos, deformation-branch position residual L2
    lambda_deform_scale: float = 1.5  # λ^D_scale, deformation-branch scale residual L2
    lambda_opacity: float = 0.0  # λ_opacity, Beta loss on opacities: 0 in stage 1, 1 in stage 2
    start_dual_kimg: float = 3200.0  # the cue given to D is zeroed before this many kimg (authors 3200)
    cue_cache_mb: float = 1024.0  # keep each dataset row's cue if all fit in this many MiB (0 = never)


@dataclass(frozen=True)
class OptimConfig:
    """Adam settings (sec. 4); D's are adjusted for lazy R1 in the loop (lr·k/(k+1), β^(k/(k+1)))."""

    lr_g: float = 0.0025  # generator learning rate
    lr_d: float = 0.002  # discriminator learning rate
    betas: tuple[float, float] = (0.0, 0.99)  # Adam β1, β2 (StyleGAN2)
    eps: float = 1e-8  # Adam ε


@dataclass(frozen=True)
class ShiftAugmentConfig:
    """The authors' "shift" augmentation before D (the authors' training code), for reals and fakes."""

    enabled: bool = True  # apply it at all
    translate: float = 0.1  # max shift, fraction of the image side
    scale: tuple[float, float] = (0.85, 1.15)  # zoom range
    interpolation: Literal["nearest", "bilinear"] = "nearest"  # resampling of the warp; nearest as
    #   torchvision's RandomAffine (the authors'); bilinear low-passes what D sees (docs/architecture.md)


@dataclass(frozen=True)
class TrainConfig:
    """Everything `train()` needs besides the dataset and the run folder."""

    generator: GeneratorConfig = field(default_factory=GeneratorConfig)  # G architecture
    discriminator: DiscriminatorConfig = field(default_factory=DiscriminatorConfig)  # D + cue
    loss: LossConfig = field(default_factory=LossConfig)  # loss weights, R1, dual-D schedule
    optim: OptimConfig = field(default_factory=OptimConfig)  # Adam settings
    shift_augmentation: ShiftAugmentConfig = field(default_factory=ShiftAugmentConfig)  # D input aug
    head: HeadConfig = field(default_factory=HeadConfig)  # head model
    resolution: int = 256  # render (and D) resolution; dataset images are resized to it
    batch_size: int = 32  # total over all processes (sec. 4)
    total_kimg: float = 6500.0  # training length in thousands of real images shown to D
    ema_kimg: float = 10.0  # G_ema half-life in kimg
    ema_rampup: float = 0.05  # EMA half-life ≤ this × images seen (0 = no ramp-up, stage 2)
    log_kimg: float = 4.0  # one log line (mean losses, s/kimg) every this many kimg
    checkpoint_kimg: float = 200.0  # checkpoint every this many kimg (and at the end)
    keep_checkpoints: int = 5  # keep only the newest this many (0 = all)
    sample_kimg: float = 200.0  # sample grid every this many kimg (and at the start/end)
    metric_kimg: float = 200.0  # SWD every this many kimg (and at the start/end); 0 = never
    metric_images: int = 1000  # real and fake images per SWD evaluation
    swd_descriptors: int = 128  # 7×7 patches per image and pyramid level (Karras et al. 2018: 128)
    swd_directions: int = 512  # random projections per repeat (4 repeats)
    sample_identities: int = 8  # columns of the sample grid (fixed z)
    sample_expressions: int = 4  # rows of the sample grid: neutral, widest jaw, most expressive items
    sample_resolution: int = 0  # size the sample grids are enlarged to (0 = resolution; rendered at resolution)
    seed: int = 0  # seeds weights, z, data order, conditions
    xflip: bool = False  # use the dataset's x-flipped images too (needs mirrored FLAME estimates)
    resume_from: str = ""  # initialise G, G_ema, D from this checkpoint's matching weights (stage 2)
    threads: int = 0  # torch CPU threads (0 = torch's default)
    num_workers: int = 2  # DataLoader workers for the real images
    snapshot_steps: int = 50  # in-memory snapshot for NaN recovery every this many good steps

    def __post_init__(self) -> None:
        positive = ("resolution", "batch_size", "total_kimg", "metric_images", "sample_identities",
                    "sample_expressions", "snapshot_steps", "swd_descriptors", "swd_directions")
        for name in positive:
            if getattr(self, name) <= 0:
                raise AgoraError(f"TrainConfig: {name} must be positive, got {getattr(self, name)!r}")
        if self.resolution < 8 or self.resolution & (self.resolution - 1):
            raise AgoraError(f"TrainConfig: resolution must be a power of two >= 8, got {self.resolution}")
        if self.sample_resolution < 0:
            raise AgoraError(f"TrainConfig: sample_resolution must be >= 0 (0 = resolution), "
                             f"got {self.sample_resolution}")
        if self.loss.cue_cache_mb < 0:
            raise AgoraError(f"TrainConfig: loss.cue_cache_mb must be >= 0 (0 = no cache), "
                             f"got {self.loss.cue_cache_mb}")
        if self.loss.r1_interval < 1:
            raise AgoraError(f"TrainConfig: loss.r1_interval must be >= 1, got {self.loss.r1_interval}")
        lo, hi = self.shift_augmentation.scale
        if not 0 < lo <= hi:
            raise AgoraError(f"TrainConfig: shift_augmentation.scale must be 0 < lo <= hi, got {(lo, hi)}")


# --- YAML <-> dataclasses ------------------------------------------------------------------------

def _type_name(tp: Any) -> str:
    if typing.get_origin(tp) is Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    return getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Check `value` against annotation `tp` and convert lists to tuples / ints to floats."""
    origin = typing.get_origin(tp)
    if origin is Literal:
        if value not in typing.get_args(tp):
            raise AgoraError(f"{where}: must be one of {_type_name(tp)}, got {value!r}")
        return value
    if origin in (typing.Union, types.UnionType):
        errors = []
        for arg in typing.get_args(tp):
            if arg is type(None):
                if value is None:
                    return None
                continue
            try:
                return _coerce(value, arg, where)
            except AgoraError as exc:
                errors.append(str(exc))
        raise AgoraError(errors[0] if errors else f"{where}: got {value!r}")
    if origin is tuple:
        args = typing.get_args(tp)
        if not isinstance(value, (list, tuple)) or len(value) != len(args):
            raise AgoraError(f"{where}: must be a list of {len(args)} values, got {value!r}")
        return tuple(_coerce(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        try:
            return tp(value)
        except ValueError:
            raise AgoraError(f"{where}: must be one of {[m.value for m in tp]}, got {value!r}") from None
    if dataclasses.is_dataclass(tp):
        raise AgoraError(f"{where}: must be a mapping of {tp.__name__} fields, got {value!r}")
    if tp is bool:
        if not isinstance(value, bool):
            raise AgoraError(f"{where}: must be true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise AgoraError(f"{where}: must be an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise AgoraError(f"{where}: must be a number, got {value!r}")
        if not math.isfinite(value):
            raise AgoraError(f"{where}: must be a finite number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise AgoraError(f"{where}: must be a string, got {value!r}")
        return value
    raise TypeError(f"config field type {tp!r} not supported")  # a programming error


def build_dataclass(cls: type, data: dict, source: str, prefix: str = "") -> Any:
    """Instantiate dataclass `cls` from a nested dict, rejecting unknown keys and bad types.

    `source` (the YAML file) and `prefix` (the dotted path of `data`) go into error messages.
    """
    if not isinstance(data, dict):
        raise AgoraError(f"{source}: {prefix.rstrip('.') or 'config'} must be a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls) if f.init}
    kwargs = {}
    for key, value in data.items():
        if key not in names:
            raise AgoraError(f"{source}: unknown key '{prefix}{key}' (known: {', '.join(sorted(map(str, names)))})")
        tp = hints[key]
        if dataclasses.is_dataclass(tp):
            kwargs[key] = build_dataclass(tp, value, source, f"{prefix}{key}.")
        else:
            kwargs[key] = _coerce(value, tp, f"{source}: {prefix}{key}")
    try:
        return cls(**kwargs)
    except AgoraError as exc:
        raise AgoraError(f"{source}: {exc}") from None


def _set_dotted(tree: dict, dotted: str, value: Any, source: str) -> None:
    parts = dotted.split(".")
    node = tree
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise AgoraError(f"{source}: '{dotted}' sets a field inside '{part}', which is not a section")
        node = child
    node[parts[-1]] = value


def load_config(yaml_path: str | Path | None, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """TrainConfig from a YAML file (None = defaults) with dotted-key overrides on top.

    Override values that are strings are parsed as YAML scalars/lists ("8" -> 8, "[0, 0.99]" ->
    [0.0, 0.99], "true" -> True); other values are taken as they are.
    """
    tree: dict = {}
    source = "defaults"
    if yaml_path is not None:
        path = Path(yaml_path)
        source = str(path)
        if not path.is_file():
            raise AgoraError(f"{path}: config file not found")
        try:
            tree = yaml.safe_load(path.read_text())
        except yaml.YAMLError as exc:
            raise AgoraError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
        except UnicodeDecodeError:
            raise AgoraError(f"{path}: not a text file (a YAML config is UTF-8 text)") from None
        if tree is None or tree == {}:  # not silently the defaults (the paper's 256² config)
            raise AgoraError(f"{path}: the config file is empty; give its keys (as configs/demo.yaml does)")
        if not isinstance(tree, dict):
            raise AgoraError(f"{path}: the top level must be a mapping of config keys")
    for dotted, value in (overrides or {}).items():
        if isinstance(value, str):
            try:
                value = yaml.safe_load(value) if value.strip() else value
            except yaml.YAMLError:
                pass  # keep the raw string; the type check reports it
        _set_dotted(tree, dotted, value, "--set")
    where = source if not overrides else f"{source} (with --set overrides)"
    return build_dataclass(TrainConfig, tree, where)


def parse_set_options(items: list[str]) -> dict[str, str]:
    """["a.b=1", "c=x"] -> {"a.b": "1", "c": "x"}; `AgoraError` naming --set on a malformed item."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise AgoraError(f"--set {item!r}: expected key=value, e.g. --set loss.r1_gamma=2")
        out[key.strip()] = value
    return out


def config_to_dict(config: Any) -> Any:
    """Plain data (dicts, lists, numbers, strings) of a config dataclass, for YAML and checkpoints."""
    if dataclasses.is_dataclass(config):
        return {f.name: config_to_dict(getattr(config, f.name)) for f in dataclasses.fields(config)}
    if isinstance(config, enum.Enum):
        return config.value
    if isinstance(config, (tuple, list)):
        return [config_to_dict(v) for v in config]
    return config


def config_from_dict(data: dict, source: str = "checkpoint") -> TrainConfig:
    """Inverse of `config_to_dict` (for configs stored in checkpoints)."""
    return build_dataclass(TrainConfig, data, source)


def write_config(config: TrainConfig, path: str | Path) -> Path:
    """Write the resolved config as YAML (RUN/config.yaml)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config_to_dict(config), sort_keys=False))
    return path
