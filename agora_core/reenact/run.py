"""`agora reenact`: drive an avatar (from `agora invert`) with per-frame parameters and encode mp4.

Full AGORA path: the identity branch runs once (IdentityCache of the avatar's pivot w and shape
β), then `animate()` per batch of frames — the driver's shape is replaced by the avatar's, head
rotation is realised by the camera (as in the authors' reenactment script). AGORA-M path (`--mobile`): the avatar's cached
neutral Gaussians + the shared blendshape basis + the coefficient MLP of its w (eq. 10-11).
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from agora_core.errors import AgoraError, file_error
from agora_core.gaussians import GaussianSet
from agora_core.head import FlameParams
from agora_core.invert.avatar_file import AvatarFile, build_avatar_generator
from agora_core.invert.pti import broadcast_w
from agora_core.invert.video_io import Mp4Writer
from agora_core.mobile.blendshape_avatar import BlendshapeAvatar, check_basis_format
from agora_core.reenact.driving import DrivingSequence
from agora_core.reenact.sound import AudioTrack, mux_audio
from agora_core.render import Camera, rasterize
from agora_core.render.images import DISPLAY_SIZE, enlarge, to_uint8_hwc


class FullAvatar:
    """The AGORA generator with one identity cached (identity branch once): an avatar's tuned
    generator (`from_avatar`) or an imported run's seed identity. `executor` runs the per-frame path
    (torch, onnxruntime or auto) in `precision` (float32, bfloat16 or auto: `devices.resolve_precision`);
    the two are decided together by `export.onnx_executor.build_per_frame_path`."""

    def __init__(self, generator, cache, executor: str = "torch", device: str | torch.device = "cpu",
                 precision: str = "float32"):
        from agora_core.export.onnx_executor import build_per_frame_path

        self.G, self.cache = generator, cache
        self.num_expr = self.G.head.num_expr
        self.onnx, self.deform_dtype = build_per_frame_path(executor, precision, generator, cache, device)

    @staticmethod
    def from_avatar(avatar: AvatarFile, where: str | Path, device, flame_pkl=None, flame_uv=None,
                    flame_eyelids=None, executor: str = "torch", precision: str = "float32") -> "FullAvatar":
        G = build_avatar_generator(avatar, where, device, flame_pkl, flame_uv, flame_eyelids)
        dev = torch.device(device)
        with torch.no_grad():
            ws = broadcast_w(avatar.w.to(dev).float(), G.num_ws)
            cache = G.identity(None, None, avatar.shape.to(dev).float(), ws=ws, noise_mode="const")
        return FullAvatar(G, cache, executor, device, precision)

    @torch.inference_mode()  # the generator's inference path (models/stylegan2_inference.py)
    def animate(self, flame: FlameParams) -> GaussianSet:
        flame = flame.padded(n_expr=self.num_expr)
        if self.onnx is not None:
            return self.onnx.animate(flame)
        return self.G.animate(self.cache, flame, noise_mode="const", deform_dtype=self.deform_dtype).gaussians


class MobileAvatar:
    """AGORA-M: `BlendshapeAvatar(neutral, basis, mlp, w)` (sec. 3.7); neck and eyes are not animated."""

    def __init__(self, avatar):
        self.avatar = avatar

    @staticmethod
    def from_avatar(avatar: AvatarFile, basis_path: str | Path, mlp_path: str | Path, device,
                    basis_format: str = "float32") -> "MobileAvatar":
        basis, mlp = _agora_m_pair(basis_path, mlp_path)
        neutral = avatar.neutral_gaussians(device)
        if basis.num_gaussians != neutral.num_gaussians:
            raise file_error(basis_path, f"basis of {basis.num_gaussians} Gaussians, but the avatar has "
                                         f"{neutral.num_gaussians}; extract the basis from the avatar's base model")
        if mlp.w_dim != avatar.w.shape[1]:
            raise file_error(mlp_path, f"regressor for w_dim {mlp.w_dim}, but the avatar's w has {avatar.w.shape[1]}")
        return MobileAvatar(BlendshapeAvatar(neutral, basis.to(device), mlp.to(device), avatar.w.to(device).float(),
                                             basis_format=basis_format))

    @torch.no_grad()
    def animate(self, flame: FlameParams) -> GaussianSet:
        return self.avatar.animate(flame.padded(n_expr=self.avatar.mlp.expr_dim))  # e.g. VHAP's 100, the MLP's 50


def _agora_m_pair(basis_path: str | Path, mlp_path: str | Path):
    from agora_core.mobile.basis_file import GaussianBasis
    from agora_core.mobile.coefficient_mlp import CoefficientMLP

    basis = GaussianBasis.load(basis_path)
    mlp, _ = CoefficientMLP.load(mlp_path)
    if mlp.k != basis.k:
        raise file_error(mlp_path, f"regressor for K = {mlp.k}, but the basis {basis_path} has K = {basis.k}")
    return basis, mlp


@dataclass
class ReenactResult:
    out: Path
    frames: int
    fps: float  # of the video
    render_fps: float  # frames rendered per second


def reenact(avatar_path: str | Path | AvatarFile, driving: DrivingSequence, out: str | Path, *, resolution: int | None = None,
            mobile: tuple[str | Path, str | Path] | None = None, left: list[np.ndarray] | None = None,
            ground_truth: str | Path | None = None, batch: int = 8, device: str | torch.device = "cpu",
            flame_pkl: str | None = None, flame_uv: str | None = None, flame_eyelids: str | None = None,
            audio: AudioTrack | None = None, progress: bool = True, size: int = DISPLAY_SIZE,
            executor: str = "torch", precision: str = "float32", basis_format: str = "float32") -> ReenactResult:
    """Render `driving` with the avatar into `out` (mp4 at driving.fps), written to a temporary file
    renamed at the end.

    Args:
        audio: the sound track muxed in (its `start` plays with frame 0), or None for a silent video.
        mobile: (basis.safetensors, mlp.safetensors) for the AGORA-M path, else the full model.
        left: frames [R, R, 3] uint8 shown left of each render (the driving video's crops).
        ground_truth: a demo-identity dataset folder: its person rendered with the same parameters
            is shown on the left instead.
        size: pixels of each panel in the video: the render (at `resolution`) enlarged to it.
        executor: what runs the full model's per-frame path: torch, onnxruntime or auto (`FullAvatar`).
        precision: its number format: float32, bfloat16 or auto (`FullAvatar`).
        basis_format: how AGORA-M keeps its basis: float32 or int16 (`BlendshapeAvatar`).
    """
    check_basis_format(basis_format, device)
    out = Path(out)
    if out.suffix.lower() != ".mp4":
        raise AgoraError(f"--out {out}: the video must end in .mp4")
    avatar = avatar_path if isinstance(avatar_path, AvatarFile) else AvatarFile.load(avatar_path)
    where = getattr(avatar, "path", None) or avatar_path
    res = resolution or avatar.resolution
    if res < 8 or res % 2:
        raise AgoraError(f"--resolution {res}: an even number of pixels >= 8")
    model = (MobileAvatar.from_avatar(avatar, *mobile, device, basis_format) if mobile
             else FullAvatar.from_avatar(avatar, where, device, flame_pkl, flame_uv, flame_eyelids, executor,
                                         precision))
    cameras = driving.cameras()
    return _write_video(model, lambda idx, flame: Camera(cameras.cam2world[idx], cameras.intrinsics[idx]),
                        driving, out, res, left, ground_truth, batch, device, progress, size, audio)


def reenact_imported(run: str | Path, seed: int, driving: DrivingSequence, out: str | Path, *,
                     truncation: float = 0.7, resolution: int | None = None,
                     mobile: tuple[str | Path, str | Path] | None = None, left: list[np.ndarray] | None = None,
                     batch: int = 8, device: str | torch.device = "cpu", audio: AudioTrack | None = None,
                     progress: bool = True, size: int = DISPLAY_SIZE, executor: str = "torch",
                     precision: str = "float32", basis_format: str = "float32") -> ReenactResult:
    """Render `driving` with the seed identity (`inference.draw_identity`) of an imported run or a model
    folder into `out`. A model folder is driven through the sequence's cameras, as an avatar is.

    For an imported run, the authors' reenactment convention: the head stays unrotated and a DECA camera orbits the posed
    root joint by the driving head rotation, at the run's framing (s = 8). `mobile`: an AGORA-M pair,
    e.g. the run's imported `basis.safetensors` / `mlp.safetensors`, kept in `basis_format`.
    """
    from agora_core.inference import draw_identity, load_model

    check_basis_format(basis_format, device)
    out = Path(out)
    if out.suffix.lower() != ".mp4":
        raise AgoraError(f"--out {out}: the video must end in .mp4")
    model = load_model(run, device)
    res = resolution or model.resolution
    if res < 8 or res % 2:
        raise AgoraError(f"--resolution {res}: an even number of pixels >= 8")
    G = model.generator
    cache, shape = draw_identity(model, seed, 1, truncation)
    if mobile:
        basis, mlp = _agora_m_pair(*mobile)
        if basis.num_gaussians != G.num_gaussians:
            raise file_error(mobile[0], f"basis of {basis.num_gaussians} Gaussians, but {run} has {G.num_gaussians}")
        animator = MobileAvatar(BlendshapeAvatar.from_generator(G, cache, basis.to(device), mlp.to(device), basis_format))
    else:
        animator = FullAvatar(G, cache, executor, device, precision)
    if model.camera_convention == "eg3d":  # a model folder or training run: the driving cameras, as for avatars
        cams = driving.cameras()
        cameras_of = lambda idx, flame: Camera(cams.cam2world[idx], cams.intrinsics[idx])  # noqa: E731
    else:
        pose = torch.as_tensor(driving.global_pose, dtype=torch.float32)
        cameras_of = lambda idx, flame: model.cameras(shape, pose[idx], flame)  # noqa: E731
    return _write_video(animator, cameras_of, driving, out, res, left, None, batch, device, progress, size, audio)


def _write_video(model, cameras_of, driving: DrivingSequence, out: Path, res: int, left, ground_truth, batch: int,
                 device, progress: bool, size: int, audio: AudioTrack | None) -> ReenactResult:
    """The frame loop: animate a batch, render it with `cameras_of(indices, flame)` at `res`, enlarge
    each panel to `size` (`render.images.enlarge`), encode; with `audio`, the frames go to a silent
    temporary mp4 that `mux_audio` turns into `out`."""
    if size < 8 or size % 2:
        raise AgoraError(f"--size {size}: an even number of pixels >= 8")
    if audio is None:
        return _render_frames(model, cameras_of, driving, out, res, left, ground_truth, batch, device, progress, size)
    silent = out.with_name(f".{out.stem}.silent.{secrets.token_hex(4)}.tmp.mp4")
    try:
        result = _render_frames(model, cameras_of, driving, silent, res, left, ground_truth, batch, device, progress,
                                size)
        mux_audio(silent, audio, driving.num_frames / driving.fps, out)
    finally:
        silent.unlink(missing_ok=True)
    return replace(result, out=out)


def _render_frames(model, cameras_of, driving: DrivingSequence, out: Path, res: int, left, ground_truth, batch: int,
                   device, progress: bool, size: int) -> ReenactResult:
    person = None
    if ground_truth is not None:
        from agora_core.invert.demo_data import demo_identity_from_dataset

        person = demo_identity_from_dataset(ground_truth)
    if left is not None and len(left) != driving.num_frames:
        raise AgoraError(f"internal: {len(left)} side frames for {driving.num_frames} driving frames")
    flame = driving.flame()
    cameras = driving.cameras() if ground_truth is not None else None
    total = driving.num_frames

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    columns = [TextColumn("reenact"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[fps]:.1f} fps"),
               TimeRemainingColumn()]
    start = time.perf_counter()
    with Progress(*columns, disable=not progress) as bar, Mp4Writer(out, driving.fps) as writer:
        task = bar.add_task("reenact", total=total, fps=0.0)
        for s in range(0, total, batch):
            idx = torch.arange(s, min(total, s + batch))
            f = flame[idx].to(device)
            cams = cameras_of(idx, f).to(device)
            rgb, _ = rasterize(model.animate(f), cams, res, res, background=1.0)
            frames = to_uint8_hwc(enlarge(rgb, size))
            if person is not None:
                gt = person.render(flame[idx],
                                   Camera(cameras.cam2world[idx], cameras.intrinsics[idx]), res)
                frames = np.concatenate([to_uint8_hwc(enlarge(gt, size)), frames], axis=2)
            elif left is not None:
                side = np.stack([_resize(left[i], size) for i in idx.tolist()])
                frames = np.concatenate([side, frames], axis=2)
            for frame in frames:
                writer.append(frame)
            done = int(idx[-1]) + 1
            bar.update(task, completed=done, fps=done / max(time.perf_counter() - start, 1e-9))
        writer.finish()
    seconds = time.perf_counter() - start
    return ReenactResult(out, total, driving.fps, total / max(seconds, 1e-9))


def _resize(img: np.ndarray, size: int) -> np.ndarray:
    import cv2

    if img.shape[0] == size and img.shape[1] == size:
        return img
    interp = cv2.INTER_AREA if img.shape[0] > size else cv2.INTER_CUBIC
    return cv2.resize(img, (size, size), interpolation=interp)
