"""`agora invert` as one function: photos, a video or dataset views -> avatar.pt (the CLI and the
Python API, agora_core/api.py, both call `invert_from_inputs`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from agora_core.errors import AgoraError
from agora_core.invert.run import InvertResult


@dataclass
class PTISettings:
    """The PTI knobs `agora invert` exposes (the rest of `PTIConfig` keeps its defaults)."""

    w_steps: int = 450  # stage 1 steps (pivot w)
    g_steps: int = 350  # stage 2 steps at most (generator tuning)
    w_lr: float = 0.01  # stage 1 peak learning rate
    g_lr: float = 3e-4  # stage 2 Adam learning rate
    locality: bool = False  # PTI's locality regulariser in stage 2
    tune_flame: bool | None = None  # tune β, ψ, θ with w (None: with several frames)
    stop_lpips: float | None = None  # stop tuning at this perceptual value (None: PTI's 0.06 with AlexNet LPIPS)
    seed: int = 0  # w noise and locality samples


def invert_from_inputs(ckpt: str | Path, out: str | Path, inputs: list[str] | tuple[str, ...] = (), *,
                       dataset: str | Path | None = None, index: list[int] | None = None,
                       heldout: list[int] | None = None, preview_size: int = 256, frames: int | None = None,
                       aligned: bool = False, matting: bool = True, perceptual_weights: str | Path | None = None,
                       settings: PTISettings = PTISettings(), ply: str | Path | None = None,
                       device: str | None = None, progress: bool = True, smirk: str | None = None,
                       modnet: str | None = None, flame: str | None = None, flame_uv: str | None = None,
                       flame_eyelids: str | None = None,
                       say: Callable[[str], None] = lambda m: None,
                       warn: Callable[[str], None] = lambda m: None) -> InvertResult:
    """PTI of the model `ckpt` on photos / one video (`inputs`) or `dataset` views (`index`) into `out`.

    `heldout` (with `dataset`): views of the same person PTI never sees, scored before and after tuning
    (PSNR) and shown in the preview, whose tiles are `preview_size` pixels.

    `say` gets the one progress line ("PTI on N frame(s) ..."), `warn` the notes (fallback loss,
    a head that SMIRK's FLAME 2020 estimates do not fit). Problems are `AgoraError`s, raised before
    any output is written.
    """
    from agora_core.devices import resolve_device
    from agora_core.gaussians.files import check_output_path
    from agora_core.invert.checkpoint_io import load_base_generator
    from agora_core.invert.losses import make_reconstruction_loss
    from agora_core.invert.lpips_distance import PTI_LPIPS_STOP
    from agora_core.invert.pti import PTIConfig
    from agora_core.invert.run import invert

    out = Path(out)
    if out.suffix != ".pt":
        raise AgoraError(f"--out {out}: the avatar file must end in .pt")
    check_output_path(out, "--out")
    if ply is not None:
        check_output_path(ply, "--ply")
    if dataset is None and (index or heldout):
        raise AgoraError(f"{'--index' if index else '--heldout'} needs --dataset DIR")
    if dataset is not None and (frames is not None or aligned):
        raise AgoraError("--frames/--aligned apply to photos and videos, not --dataset")
    dev = resolve_device(device)
    base = load_base_generator(ckpt, dev, flame, flame_uv, flame_eyelids)
    head, res = base.generator.head, base.resolution
    if dataset is not None:
        from agora_core.invert.targets import target_from_dataset

        fitted = list(index or [])
        target = target_from_dataset(dataset, fitted, head, res)
        if set(heldout or []) & set(fitted):
            raise AgoraError(f"--heldout {sorted(set(heldout) & set(fitted))}: also in --index; a held-out view is one "
                             "PTI never sees")
        heldout_target = target_from_dataset(dataset, list(heldout), head, res) if heldout else None
    else:
        from agora_core.invert.photo_inputs import FaceTools, collect_images, target_from_images

        heldout_target = None
        images, names = collect_images([Path(p) for p in inputs], frames)
        tools = FaceTools.load(smirk, modnet, aligned, matting, dev)
        target = target_from_images(images, names, tools, head, res)
        from agora_core.head.build import SMIRK_FLAME_ID, head_ids_match

        if not head_ids_match(SMIRK_FLAME_ID, head.model_id):
            warn(f"SMIRK estimates FLAME 2020 parameters, but the checkpoint's head is '{head.model_id}'; "
                 "the fit will be poor")
    loss_fn = make_reconstruction_loss(str(perceptual_weights) if perceptual_weights else None, dev, warn=warn)
    stop = settings.stop_lpips
    if stop is None:  # PTI's threshold only means something on the scale it was set on (AlexNet LPIPS)
        stop = PTI_LPIPS_STOP if loss_fn.perceptual_name == "lpips-alex" else None
    config = PTIConfig(w_steps=settings.w_steps, g_steps=settings.g_steps, w_lr=settings.w_lr, g_lr=settings.g_lr,
                       locality=settings.locality, optimise_flame=settings.tune_flame, seed=settings.seed,
                       stop_perceptual=stop or None)
    say(f"PTI on {target.num_frames} frame(s) at {res}² ({'few-shot' if target.num_frames > 1 else 'one-shot'}), "
        f"base {base.source}")
    return invert(base, target, out, config, loss_fn, ply=ply, progress=progress, heldout=heldout_target,
                  preview_size=preview_size)
