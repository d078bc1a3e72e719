"""Pivotal Tuning Inversion (PTI, Roich et al. 2022) of the AGORA generator (paper sec. 4.2,
appendix 0.A.2.1).

Stage 1 (`invert_pivot`): the pivot latent w — one w for every synthesis layer (PTI's W space) —
starts at the mean w and is optimised against all frames with PTI's projector schedule (lr 0.01,
cosine ramp-down over the last 25 %, linear ramp-up over the first 5 %, Gaussian noise on w decaying
over the first 75 %). With several frames (few-shot, 0.A.2.1) the FLAME parameters are tuned jointly:
one shape β shared by all frames, per-frame expression ψ, jaw / eyelids θ and a small head-rotation
correction (carried by the camera, which orbits the unrotated head), all starting from the
estimates and pulled back towards them by an L2 term.
Stage 2 (`tune_generator`): w and FLAME fixed, every generator weight is tuned (Adam 3e-4, at most
350 steps), stopping early when the loss plateaus; optionally with PTI's locality regulariser.

Both stages render through the identity/animate split: `identity()` once per step (it depends on w
and β), `animate()` for all frames in one batch. Noise inputs are held constant (PTI optimises
noise maps too; the AGORA identity branch's are fixed to their "const" buffers here).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from agora_core.face.camera import axis_angle_to_rotmat
from agora_core.head import FLAME_KEYS, FlameParams
from agora_core.invert.losses import LossTerms, ReconstructionLoss, psnr
from agora_core.invert.targets import InversionTarget
from agora_core.models.agora_generator import AgoraGenerator
from agora_core.render import Camera, rasterize
from agora_core.inference import mapping_labels

PTI_W_SPACE_SIZE = 18 * 512  # PTI's ws (StyleGAN2 1024²): its locality α = 30 is a distance there


@dataclass(frozen=True)
class PTIConfig:
    """Settings of both PTI stages (defaults: PTI's, except where a comment says otherwise)."""

    # --- stage 1: pivot w (PTI projector) ---
    w_steps: int = 450  # optimisation steps of w
    w_lr: float = 0.01  # peak learning rate of w
    w_lr_rampup: float = 0.05  # fraction of the steps the lr ramps up over
    w_lr_rampdown: float = 0.25  # fraction of the steps the lr ramps (cosine) down over
    w_noise: float = 0.05  # initial std of the noise added to w, in units of the std of w
    w_noise_ramp: float = 0.75  # fraction of the steps the noise decays over (quadratically)
    w_avg_samples: int = 4096  # z samples for the mean and spread of w (PTI: 10000)
    optimise_flame: bool | None = None  # tune β, ψ, θ with w (None: only with several frames, 0.A.2.1)
    flame_lr: float = 0.003  # learning rate of the FLAME parameters
    flame_reg: float = 0.1  # weight of the L2 pull of FLAME parameters back to their estimates
    # --- stage 2: generator weights ---
    g_steps: int = 350  # at most this many steps
    g_lr: float = 3e-4  # Adam learning rate of all G weights
    plateau_window: int = 25  # stop when the mean loss of the last window improved on the window
    plateau_tol: float = 0.005  # before it by less than this fraction (checked from 2 windows on)
    stop_perceptual: float | None = None  # also stop when the perceptual term falls below this
    #   (PTI: AlexNet LPIPS ≤ 0.06; `agora invert` sets it with AlexNet LPIPS, lpips_distance.py)
    locality: bool = False  # PTI's locality regulariser (G keeps its outputs around the pivot)
    locality_alpha: float = 30.0  # distance from the pivot of the regularised codes, in PTI's
    #   18×512 ws space (scaled here by √(size of our ws / PTI's) so each coordinate moves alike)
    locality_l2: float = 0.1  # weight of its L2 term
    locality_perceptual: float = 0.1  # weight of its perceptual term
    locality_truncation: float = 0.5  # truncation of the random codes it moves towards (PTI 0.5)
    seed: int = 0  # noise on w, locality samples


@dataclass
class Curve:
    """Per-step losses of one stage (JSON-ready lists)."""

    loss: list[float] = field(default_factory=list)
    l2: list[float] = field(default_factory=list)
    perceptual: list[float] = field(default_factory=list)
    psnr: list[float] = field(default_factory=list)  # mean PSNR over the frames, dB
    extra: dict[str, list[float]] = field(default_factory=dict)

    def add(self, terms: LossTerms, images: Tensor, target: Tensor, **extra: float) -> None:
        self.loss.append(float(terms.total.detach()))
        self.l2.append(float(terms.l2.detach()))
        self.perceptual.append(float(terms.perceptual.detach()))
        self.psnr.append(float(psnr(images.detach(), target).mean()))
        for k, v in extra.items():
            self.extra.setdefault(k, []).append(float(v))

    def as_dict(self) -> dict:
        return {"loss": self.loss, "l2": self.l2, "perceptual": self.perceptual, "psnr": self.psnr, **self.extra}


class FrameParameters(nn.Module):
    """FLAME parameters of the frames (shape shared) and per-frame camera rotation corrections.

    Starts at the estimates; `deviation()` is the squared distance from them (mean per group).
    """

    def __init__(self, flame: FlameParams, tunable: bool):
        super().__init__()
        init = {**flame.as_dict(), "shape": flame.shape.mean(dim=0, keepdim=True),
                "camera_rotation": flame.expression.new_zeros(flame.batch_size, 3)}
        for name, value in init.items():
            self.register_buffer(f"init_{name}", value.detach().clone().float())
            self.register_parameter(name, nn.Parameter(value.detach().clone().float(), requires_grad=tunable))
        # neck and eyes: SMIRK estimates neither; they stay as given
        self.neck.requires_grad_(False)
        self.eyes.requires_grad_(False)

    @property
    def num_frames(self) -> int:
        return self.expression.shape[0]

    def deviation(self) -> Tensor:
        terms = [(getattr(self, n) - getattr(self, f"init_{n}")).pow(2).mean()
                 for n, p in self.named_parameters() if p.requires_grad]
        return torch.stack(terms).sum() if terms else self.expression.new_zeros(())

    def flame(self) -> FlameParams:
        """The frames' FLAME parameters, shape broadcast to the frames."""
        fields = {k: getattr(self, k) for k in FLAME_KEYS}
        return FlameParams(**fields | {"shape": self.shape.expand(self.num_frames, -1)})

    def cameras(self, labels: Tensor) -> Camera:
        return rotate_cameras(Camera.from_label(labels), self.camera_rotation)

    def export(self) -> dict[str, Tensor]:
        """Detached tensors (what the avatar file stores)."""
        return {n: p.detach().clone() for n, p in self.named_parameters()}


def rotate_cameras(cameras: Camera, axis_angle: Tensor) -> Camera:
    """Cameras orbited about the world origin by R(axis_angle) [B, 3] (= the head rotated by Rᵀ)."""
    b = cameras.cam2world.shape[0]
    rot = axis_angle_to_rotmat(axis_angle.to(cameras.cam2world.dtype))
    if rot.shape[0] != b:
        rot = rot.expand(b, 3, 3)
    top = torch.cat([rot @ cameras.cam2world[:, :3, :3], (rot @ cameras.cam2world[:, :3, 3:])], dim=2)
    cam2world = torch.cat([top, cameras.cam2world[:, 3:]], dim=1)
    return Camera(cam2world, cameras.intrinsics)


def broadcast_w(w: Tensor, num_ws: int) -> Tensor:
    """[B, w_dim] -> [B, num_ws, w_dim] (one w for every layer: PTI's W space)."""
    return w[:, None, :].expand(-1, num_ws, -1)


def render_frames(G: AgoraGenerator, ws: Tensor, flame: FlameParams, cameras: Camera,
                  resolution: int) -> Tensor:
    """One avatar (ws [1, num_ws, w_dim], β flame.shape[:1]) in F poses: [F, 3, R, R] in [0, 1]."""
    cache = G.identity(None, None, flame.shape[:1], ws=ws, noise_mode="const")
    out = G.animate(cache, flame, noise_mode="const")
    rgb, _ = rasterize(out.gaussians, cameras, resolution, resolution, background=1.0)
    return rgb


@torch.no_grad()
def w_statistics(G: AgoraGenerator, camera: Tensor, samples: int, seed: int) -> tuple[Tensor, float]:
    """Mean w [w_dim] and spread √(E‖w − w̄‖²) of the mapping (PTI), with mapping label [c_dim]."""
    gen = torch.Generator().manual_seed(seed)
    dev = camera.device
    ws, chunk = [], 1024
    for start in range(0, samples, chunk):
        n = min(chunk, samples - start)
        z = torch.randn(n, G.config.z_dim, generator=gen).to(dev)
        shape = torch.zeros(n, G.head.num_shape, device=dev)
        ws.append(G.mapping(z, camera.reshape(1, -1).expand(n, -1), shape=shape)[:, 0])
    w = torch.cat(ws)
    mean = w.mean(dim=0)
    return mean, float((w - mean).pow(2).sum(dim=1).mean().sqrt())


def _lr_schedule(t: float, config: PTIConfig) -> float:
    """PTI projector's learning-rate factor at progress t in [0, 1]."""
    ramp = min(1.0, (1.0 - t) / config.w_lr_rampdown)
    ramp = 0.5 - 0.5 * math.cos(ramp * math.pi)
    return ramp * min(1.0, t / config.w_lr_rampup)


@dataclass
class PivotResult:
    w: Tensor  # [1, w_dim] the pivot (no grad)
    params: FrameParameters  # FLAME of the frames (tuned in the few-shot case), frozen
    curve: Curve
    w_avg: Tensor  # [w_dim]
    w_std: float


def invert_pivot(G: AgoraGenerator, target: InversionTarget, mapping_camera: Tensor, config: PTIConfig,
                 loss_fn: ReconstructionLoss, progress=None) -> PivotResult:
    """PTI stage 1: the pivot w (and, few-shot, the FLAME parameters) for `target`.

    Args:
        G: frozen generator; mapping_camera [c_dim]: the label its mapping is sampled with.
        progress: optional `rich.progress.Progress` (a task is added).
    """
    dev = target.images.device
    w_avg, w_std = w_statistics(G, mapping_camera.to(dev), config.w_avg_samples, config.seed)
    tune_flame = config.optimise_flame if config.optimise_flame is not None else target.num_frames > 1
    params = FrameParameters(target.flame, tune_flame).to(dev)
    w = nn.Parameter(w_avg[None].clone())
    groups = [{"params": [w], "lr": config.w_lr, "base_lr": config.w_lr}]
    if tune_flame:
        groups.append({"params": [p for p in params.parameters() if p.requires_grad], "lr": config.flame_lr,
                       "base_lr": config.flame_lr})
    opt = torch.optim.Adam(groups, betas=(0.9, 0.999))
    gen = torch.Generator().manual_seed(config.seed + 1)
    curve = Curve()
    task = progress.add_task("PTI 1/2: pivot w", total=config.w_steps) if progress is not None else None
    for step in range(config.w_steps):
        t = step / max(config.w_steps, 1)
        factor = _lr_schedule(t, config)
        for g in opt.param_groups:
            g["lr"] = g["base_lr"] * factor
        noise_scale = w_std * config.w_noise * max(0.0, 1.0 - t / config.w_noise_ramp) ** 2
        w_noisy = w + torch.randn(w.shape, generator=gen).to(dev) * noise_scale
        images = render_frames(G, broadcast_w(w_noisy, G.num_ws), params.flame(), params.cameras(target.cameras),
                               target.resolution)
        terms = loss_fn(images, target.images)
        reg = params.deviation()
        loss = terms.total + config.flame_reg * reg
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        curve.add(terms, images, target.images, flame_deviation=float(reg.detach()))
        if task is not None:
            progress.update(task, advance=1, description=f"PTI 1/2: pivot w  loss {curve.loss[-1]:.4f}  "
                                                          f"PSNR {curve.psnr[-1]:.1f} dB")
    params.requires_grad_(False)
    return PivotResult(w.detach(), params, curve, w_avg, w_std)


def _plateaued(losses: list[float], window: int, tol: float) -> bool:
    """Mean of the last `window` losses improved on the window before by less than `tol` (relative)."""
    if window <= 0 or len(losses) < 2 * window:
        return False
    prev = sum(losses[-2 * window:-window]) / window
    cur = sum(losses[-window:]) / window
    return prev - cur < tol * abs(prev)


@dataclass
class TuneResult:
    curve: Curve
    steps: int  # steps taken
    stopped_early: str  # "" (ran all steps), "plateau" or "perceptual"


def tune_generator(G: AgoraGenerator, w: Tensor, params: FrameParameters, target: InversionTarget,
                   config: PTIConfig, loss_fn: ReconstructionLoss, w_avg: Tensor | None = None,
                   progress=None) -> TuneResult:
    """PTI stage 2: tune all of G's weights (in place) so that the pivot w renders the frames.

    Args:
        w: [1, w_dim] pivot; params: frozen FLAME of the frames; w_avg: [w_dim] for the locality
        regulariser's truncated random codes.
    """
    ws = broadcast_w(w, G.num_ws).detach()
    flame, cameras = params.flame(), params.cameras(target.cameras)
    frozen = copy.deepcopy(G).eval().requires_grad_(False) if config.locality else None
    G.requires_grad_(True)
    opt = torch.optim.Adam([p for p in G.parameters() if p.requires_grad], lr=config.g_lr)
    gen = torch.Generator().manual_seed(config.seed + 2)
    alpha = config.locality_alpha * math.sqrt(ws[0].numel() / PTI_W_SPACE_SIZE)
    curve, stopped, steps = Curve(), "", 0
    task = progress.add_task("PTI 2/2: tune G", total=config.g_steps) if progress is not None else None
    for step in range(config.g_steps):
        images = render_frames(G, ws, flame, cameras, target.resolution)
        terms = loss_fn(images, target.images)
        loss = terms.total
        extra = {}
        if frozen is not None:
            reg = _locality_loss(G, frozen, ws, flame, cameras, target.resolution, alpha, config, loss_fn, w_avg, gen)
            loss = loss + reg
            extra["locality"] = float(reg.detach())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        steps = step + 1
        curve.add(terms, images, target.images, **extra)
        if task is not None:
            progress.update(task, advance=1, description=f"PTI 2/2: tune G  loss {curve.loss[-1]:.4f}  "
                                                          f"PSNR {curve.psnr[-1]:.1f} dB")
        if config.stop_perceptual is not None and curve.perceptual[-1] <= config.stop_perceptual:
            stopped = "perceptual"
            break
        if _plateaued(curve.loss, config.plateau_window, config.plateau_tol):
            stopped = "plateau"
            break
    if task is not None:
        progress.update(task, total=steps, completed=steps)
    G.requires_grad_(False)
    return TuneResult(curve, steps, stopped)


def _locality_loss(G, frozen, ws, flame, cameras, resolution, alpha, config, loss_fn, w_avg, gen) -> Tensor:
    """PTI's locality regulariser: a code α away from the pivot, towards a random (truncated)
    one, must render as the untuned G renders it (L2 + perceptual, weights 0.1 each)."""
    dev = ws.device
    with torch.no_grad():
        z = torch.randn(1, G.config.z_dim, generator=gen).to(dev)
        c = mapping_labels(G, Camera(cameras.cam2world[:1], cameras.intrinsics[:1]))
        shape = flame.shape[:1]
        w_rand = frozen.mapping(z, c, shape=shape)[:, :1]
        if w_avg is not None:
            w_rand = w_avg.lerp(w_rand, config.locality_truncation)
        direction = w_rand.expand_as(ws) - ws
        ws_r = ws + alpha * direction / direction.norm().clamp_min(1e-8)
        first = flame[:1]
        cam = Camera(cameras.cam2world[:1], cameras.intrinsics[:1])
        reference = render_frames(frozen, ws_r, first, cam, resolution)
    images = render_frames(G, ws_r, first, cam, resolution)
    terms = loss_fn(images, reference)
    return config.locality_l2 * terms.l2 + config.locality_perceptual * terms.perceptual
