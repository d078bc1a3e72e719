"""`load_model`: a generator ready for inference from a training run, a model folder or an imported run.

The one place a model source becomes a generator: every stage that uses a model calls `load_model`
(PTI's base, `invert.checkpoint_io`, and AGORA-M's, `mobile.agora_model`, wrap it with what is
theirs); `random_model` builds the untrained generator of a config the same way. Three sources:
- a training checkpoint of `agora train` (a `.pt`, or a run folder: its newest): G_ema rebuilt from
  the stored config; cameras are EG3D labels (25 floats), the framing is the training set's most
  frontal camera and FLAME shapes are drawn from the training set's per-coefficient Gaussian (the
  checkpoint's `sampling` entry);
- a model folder (`agora export model`, `inference.model_folder`): the same, read from G_ema's
  safetensors and model.json (`inference.checkpoint.load_checkpoint` reads both kinds);
- an imported run (`agora import`, a folder with `imported.json`): the authors' generator; cameras
  are DECA cameras (axis-angle, s, tx, ty) that orbit the posed root joint, the mapping label is
  `deca_mapping_label`; the framing is their reenactment's fixed s = 8 (`--cam-scale 8`) with zero
  rotation and offset, and shapes are the mean face (β = 0: the file holds no shape statistics).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Literal

import torch
from torch import Tensor

from agora_core.errors import AgoraError
from agora_core.gaussians import GaussianSet
from agora_core.head import FlameParams, HeadModel
from agora_core.inference.model_folder import FORMAT as MODEL_FORMAT
from agora_core.models.agora_generator import AgoraGenerator, IdentityCache
from agora_core.render import Camera, rasterize
from agora_core.render.cameras import deca_camera, deca_mapping_label, deca_mapping_label_of
from agora_core.run_config import TrainConfig

DECA_LABEL_DIM = 12  # the authors' mapping label (`deca_mapping_label`); ours is the 25-float EG3D label

IMPORTED_FRAMING = (0.0, 0.0, 0.0, 8.0, 0.0, 0.0)  # DECA camera of imported runs' renders (s = 8)
RANDOM_INIT = "random-init"


@dataclass
class InferenceModel:
    """A generator (eval mode, no grad) and how its avatars are framed and sampled."""

    generator: AgoraGenerator
    source: str  # the checkpoint file, model folder or imported run folder; "random-init (<config>)"
    kind: Literal["checkpoint", "model", "imported", "random-init"]  # model: a model folder (agora export model)
    resolution: int  # the render resolution it was trained at
    camera_convention: Literal["eg3d", "deca"]
    framing: Tensor | None  # eg3d: [25] label of the sampling camera; deca: [6] camera; None: not stored
    shape_mean: Tensor | None  # [S] FLAME shape prior of sampled identities; None: not stored
    shape_std: Tensor | None  # [S]
    state: dict | None = None  # the training checkpoint dict (None for imported runs and random inits)
    config: TrainConfig | None = None  # the stored training config (head files overridden); None: imported

    @property
    def head_model(self) -> str:
        return self.generator.head.model_id

    def _sampling(self, *entries: str) -> None:
        """An `AgoraError` when the file stores no framing or shape statistics (only PTI and AGORA-M do without)."""
        if any(getattr(self, name) is None for name in entries or ("framing", "shape_mean", "shape_std")):
            raise AgoraError(f"{self.source}: no 'sampling' entry (camera, shape statistics); re-save it with this "
                             "agora's train")

    def mapping_labels(self, n: int) -> Tensor:
        """[n, c_dim] mapping-network labels of the framing camera."""
        self._sampling("framing")
        f = self.framing.to(self.generator.sample_x_uv.device)
        label = deca_mapping_label(f[None]) if self.camera_convention == "deca" else f[None]
        return label.expand(n, label.shape[1]).clone()

    def cameras(self, shape: Tensor, global_pose: Tensor | None = None,
                flame: FlameParams | None = None) -> Camera:
        """Render cameras of the framing for avatars of FLAME shapes [n, S] (or [1, S] for driven frames).

        deca (the authors' convention): a DECA camera [head rotation, s, tx, ty] with the framing's
        (s, tx, ty) orbits each frame's posed root joint, so it depends on the shape and the pose;
        `global_pose` [n, 3] are the frames' head rotations (default: the framing's) and `flame` their
        expression, jaw, neck, eyes, eyelids (default: neutral). eg3d: the framing label, unposed.
        """
        self._sampling("framing")
        n = shape.shape[0] if global_pose is None else global_pose.shape[0]
        f = self.framing.to(shape.device)
        if self.camera_convention == "eg3d":
            assert global_pose is None, "EG3D framings take their head pose from the driving cameras"
            return Camera.from_label(f[None].expand(n, 25).clone())
        head = self.generator.head
        params = head.zero_params(n) if flame is None else flame
        _, joints = head.forward_with_joints(params.replace(shape=shape.to(params.device, params.expression.dtype).expand(n, -1)))
        rotation = f[:3].expand(n, 3) if global_pose is None else global_pose.to(f.device)
        cam = torch.cat([rotation, f[3:].expand(n, 3)], dim=1)
        return deca_camera(cam.to(joints.dtype), joints[:, 0])


def mapping_labels(generator: AgoraGenerator, cameras: Camera) -> Tensor:
    """The mapping network's labels [B, c_dim] of render cameras: their EG3D labels, or for a model
    imported from the authors' release (DECA labels) the head rotation each camera realises, so a
    dataset row or a photo's camera conditions either kind of model."""
    if generator.config.c_dim == DECA_LABEL_DIM:
        return deca_mapping_label_of(cameras).float()
    return cameras.to_label().float()


def is_imported_run(path: str | Path | None) -> bool:
    """Whether `path` is a run folder written by `agora import` (it holds the import manifest)."""
    from agora_core.importer.run_folder import MANIFEST

    return path is not None and Path(path).is_dir() and (Path(path) / MANIFEST).is_file()


def imported_head(run: str | Path) -> HeadModel:
    """The head of an imported run alone, from its head file (an avatar made from the run needs no more)."""
    from agora_core.importer.run_folder import load_imported_head

    return load_imported_head(run)


def imported_agora_m(run: str | Path, basis: str | Path | None = None, mlp: str | Path | None = None
                     ) -> tuple[Path, Path]:
    """The AGORA-M pair of an imported run: `basis` / `mlp` where given (--basis / --mlp), else the
    run's own RUN/basis.safetensors and RUN/mlp.safetensors (`agora import ... --run RUN`)."""
    from agora_core.importer.run_folder import BASIS, MLP

    paths = (Path(basis) if basis else Path(run) / BASIS, Path(mlp) if mlp else Path(run) / MLP)
    for path in paths:
        if not path.is_file():
            raise AgoraError(f"{path}: no such file; import the authors' pair with `agora import svd_basis.pt "
                             f"mlp_regressor.pt --run {run}` or pass --basis/--mlp")
    return paths


def load_model(path: str | Path, device: str | torch.device = "cpu", *, flame_pkl: str | None = None,
               flame_uv: str | None = None, flame_eyelids: str | None = None,
               uv_grid: Callable[[HeadModel], int] | None = None) -> InferenceModel:
    """The model at `path`: an imported run folder, a model folder, else a training checkpoint or run
    folder (its newest), with its head checked against the one it was made with.

    Args:
        flame_pkl, flame_uv, flame_eyelids: FLAME files in place of the stored head config's
            (--flame/--flame-uv/--flame-eyelids; an imported run's head comes from its own file).
        uv_grid: the UV sample grid to re-sample the planes on, chosen from the built head (the grid only
            sets where the planes are sampled; the weights do not depend on it). None: the stored one.
    """
    from agora_core.head.build import with_flame_files
    from agora_core.inference.checkpoint import load_checkpoint
    from agora_core.run_config import config_from_dict

    path = Path(path)
    if is_imported_run(path):
        if flame_pkl or flame_uv or flame_eyelids:
            raise AgoraError(f"--flame/--flame-uv/--flame-eyelids: {path} is an imported run, whose head comes "
                             "from the authors' file")
        if uv_grid is not None:
            raise AgoraError(f"--gaussians: {path} is an imported run, whose Gaussians sit on the file's own UV grid")
        return _imported(path, device)
    state = load_checkpoint(path)
    config = config_from_dict(state["config"], source=f"{path} (stored config)")
    config = dataclasses.replace(config, head=with_flame_files(config.head, flame_pkl, flame_uv, flame_eyelids))
    return _build(config, state, str(path), device, uv_grid)


def random_model(config: str | Path | None, seed: int = 0, device: str | torch.device = "cpu",
                 uv_grid: Callable[[HeadModel], int] | None = None) -> InferenceModel:
    """A randomly initialised generator of the config YAML `config` (None: the defaults), initialised
    from `seed`; no framing or shape statistics (kind "random-init")."""
    from agora_core.run_config import load_config

    return _build(load_config(config), None, f"{RANDOM_INIT} ({config or 'default config'})", device, uv_grid, seed)


def _build(config: TrainConfig, state: dict | None, source: str, device, uv_grid, seed: int = 0) -> InferenceModel:
    """G of `config` on its head (built through `head.build.build_head`, so it matches training), with
    the weights of `state` (a training checkpoint or model folder dict) when given."""
    from agora_core.head.build import build_head, check_head_model
    from agora_core.inference.checkpoint import load_generator_weights

    head = build_head(config.head)
    if state is not None:
        check_head_model(head, str(state.get("head_model", "")), source)
    if uv_grid is not None:
        config = dataclasses.replace(config, generator=dataclasses.replace(config.generator,
                                                                           gaussian_grid=uv_grid(head)))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        generator = AgoraGenerator(config.generator, head)
    if state is not None:
        load_generator_weights(generator, state.get("G_ema"), source)
    generator = generator.to(device).eval().requires_grad_(False)
    sampling = (state or {}).get("sampling") or {}
    stored = lambda key: sampling[key].float().reshape(-1) if isinstance(sampling.get(key), Tensor) else None  # noqa: E731
    camera = stored("camera")
    kind = "random-init" if state is None else "model" if state.get("format") == MODEL_FORMAT else "checkpoint"
    return InferenceModel(generator, source, kind, int(config.resolution), "eg3d",
                          camera if camera is not None and camera.numel() == 25 else None,
                          stored("shape_mean"), stored("shape_std"), state, config)


def _imported(folder: Path, device) -> InferenceModel:
    from agora_core.importer.run_folder import load_imported_run

    run = load_imported_run(folder, device)
    g = run.generator
    zeros = torch.zeros(g.head.num_shape)
    return InferenceModel(g, str(folder), "imported", run.resolution, "deca", torch.tensor(IMPORTED_FRAMING),
                          zeros, zeros.clone())


@torch.no_grad()
def draw_identity(model: InferenceModel, seed: int, n: int = 1, truncation: float = 0.7
                  ) -> tuple[IdentityCache, Tensor]:
    """The n identities of seed `seed` (what `agora sample --seed` draws): z ~ N(0, I) then
    β ~ N(shape_mean, shape_std²) from `torch.Generator().manual_seed(seed)`, the framing's label.

    Returns:
        (IdentityCache of batch n, shapes [n, S]).
    """
    if not 0.0 <= truncation <= 1.0:
        raise AgoraError(f"--truncation {truncation}: expected a value in [0, 1]")
    model._sampling()
    g = model.generator
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(n, g.config.z_dim, generator=gen)
    shape = model.shape_mean + model.shape_std * torch.randn(n, model.shape_mean.shape[0], generator=gen)
    dev = g.sample_x_uv.device
    cache = g.identity(z.to(dev), model.mapping_labels(n), shape.to(dev), truncation, noise_mode="const")
    return cache, shape


def neutral_flame(generator: AgoraGenerator, batch: int = 1) -> FlameParams:
    """The neutral pose of `animate` (zero expression, jaw, neck, eyes, eyelids), on the generator's device."""
    return FlameParams.zeros(batch, n_expr=generator.head.num_expr, device=generator.sample_x_uv.device)


@torch.no_grad()
def neutral_gaussians(generator: AgoraGenerator, cache: IdentityCache) -> GaussianSet:
    """𝒜(w, β, ψ0 = 0, θ0 = 0): the full model's neutral Gaussians (constant noise)."""
    return generator.animate(cache, neutral_flame(generator, cache.batch_size), noise_mode="const").gaussians


def render_generator(G, z: Tensor, c: Tensor, flame: FlameParams, resolution: int,
                     truncation_psi: float = 1.0, noise_mode: str = "random", chunk: int = 16) -> Tensor:
    """Images [B, 3, R, R] in [0, 1] of G(z, c, flame) seen through the cameras c (EG3D labels [B, 25];
    the mapping network takes `mapping_labels` of them), on white."""
    out = []
    for i in range(0, z.shape[0], chunk):
        sl = slice(i, i + chunk)
        cameras = Camera.from_label(c[sl])
        gen = G(z[sl], mapping_labels(G, cameras), flame[sl], truncation_psi,
                noise_mode=noise_mode)
        rgb, _ = rasterize(gen.gaussians, cameras, resolution, resolution, background=1.0)
        out.append(rgb.clamp(0, 1))
    return torch.cat(out)


def describe_model(model: InferenceModel) -> list[tuple[str, str]]:
    """(field, value) rows that say what a loaded model is (`agora doctor --run`)."""
    g, cfg = model.generator, model.generator.config
    counts = g.parameter_counts()
    kinds = {"imported": "imported run (agora import)", "model": "model folder (agora export model)",
             "checkpoint": "training checkpoint", "random-init": "randomly initialised"}
    rows = [("kind", kinds[model.kind]),
            ("source", model.source), ("head model", model.head_model),
            ("Gaussians", f"{g.num_gaussians:,}"), ("render size", f"{model.resolution}²"),
            ("UV planes", f"{cfg.uv_resolution}², tap {cfg.tap_resolution}²"),
            ("parameters", f"{counts['total']:,} (identity {counts['identity_branch']:,}, "
                           f"deformation {counts['deformation_branch']:,})"),
            ("cameras", "DECA (axis-angle, s, tx, ty), orbiting the root joint" if model.camera_convention == "deca"
             else "EG3D labels (cam2world + normalised intrinsics)"),
            ("variant", "the authors' code (attribute_layout authors, position-map anchors, column-normalised "
                        "quaternions)" if cfg.attribute_layout == "authors" else "the paper's (agora defaults)")]
    if model.kind == "imported":
        folder = Path(model.source)
        pair = [name for name in ("basis.safetensors", "mlp.safetensors") if (folder / name).is_file()]
        rows.append(("AGORA-M", ", ".join(pair) if len(pair) == 2 else
                     "not imported (agora import svd_basis.pt mlp_regressor.pt --run RUN)"))
    return rows
