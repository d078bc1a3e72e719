"""`agora invert`: PTI of the AGORA generator on one or a few frames of a person (paper sec. 4.2,
appendix 0.A.2.1) -> `avatar.pt` (+ losses JSON, before/after preview PNG, optional .ply). Held-out
views (dataset views PTI never sees) measure what the inputs' PSNR cannot: the avatar's other views.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from agora_core.errors import AgoraError
from agora_core.inference import neutral_gaussians
from agora_core.invert.avatar_file import AvatarFile, temp_path
from agora_core.invert.checkpoint_io import BaseGenerator
from agora_core.invert.losses import ReconstructionLoss, psnr
from agora_core.invert.pti import PTIConfig, broadcast_w, invert_pivot, render_frames, tune_generator
from agora_core.invert.report import (
    heldout_rows,
    preview_grid,
    preview_row,
    render_heldout,
    sidecar_paths,
    write_json,
    write_png,
)
from agora_core.render.images import DISPLAY_SIZE
from agora_core.invert.targets import InversionTarget


@dataclass
class InvertResult:
    avatar: Path
    losses: Path
    preview: Path
    ply: Path | None
    psnr_pivot: float  # mean PSNR over the frames after stage 1, dB
    psnr_final: float  # after stage 2
    stage1_steps: int
    stage2_steps: int
    stopped_early: str
    psnr_heldout_pivot: float | None = None  # mean PSNR over the held-out views at the pivot (before tuning)
    psnr_heldout_final: float | None = None  # after tuning


def _progress(enabled: bool):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    disable=not enabled, transient=False)


def invert(base: BaseGenerator, target: InversionTarget, out: str | Path, config: PTIConfig = PTIConfig(),
           loss_fn: ReconstructionLoss | None = None, ply: str | Path | None = None, progress: bool = True,
           heldout: InversionTarget | None = None, preview_size: int = DISPLAY_SIZE) -> InvertResult:
    """PTI of `base` on `target`; tunes `base.generator` in place and writes the avatar files.

    `heldout`: views of the same person that are not fitted, rendered with the avatar before and after
    tuning (PSNR in the result and the losses JSON, a preview row each). `preview_size`: pixels per
    preview tile.

    Every output is written to a temporary name first and renamed only when all are complete.
    """
    out = Path(out)
    if out.suffix != ".pt":
        raise AgoraError(f"--out {out}: the avatar file must end in .pt")
    if target.resolution != base.resolution:
        raise AgoraError(f"internal: target at {target.resolution}² but the model renders {base.resolution}²")
    G = base.generator
    dev = next(G.parameters()).device
    target = target.to(dev)
    loss_fn = (loss_fn or ReconstructionLoss(None)).to(dev)
    torch.manual_seed(config.seed)

    with _progress(progress) as bar:
        pivot = invert_pivot(G, target, base.mapping_camera, config, loss_fn, bar)
        before = preview_row(G, pivot.w, pivot.params, target, frames=1)
        pivot_shape = pivot.params.flame().shape[:1].detach()
        if heldout is not None:
            heldout = heldout.to(dev)
            heldout_before = render_heldout(G, pivot.w, pivot_shape, heldout)
        tuned = tune_generator(G, pivot.w, pivot.params, target, config, loss_fn, pivot.w_avg, bar)
    after = preview_row(G, pivot.w, pivot.params, target)
    rows = [before, after]
    heldout_psnr = {}
    if heldout is not None:
        heldout_after = render_heldout(G, pivot.w, pivot_shape, heldout)
        rows.append(heldout_rows(heldout.images, heldout_after, heldout_before))
        heldout_psnr = {"psnr_heldout_pivot": float(psnr(heldout_before, heldout.images).mean()),
                        "psnr_heldout_final": float(psnr(heldout_after, heldout.images).mean()),
                        "heldout_sources": list(heldout.sources)}

    with torch.no_grad():
        ws = broadcast_w(pivot.w, G.num_ws)
        flame, cameras = pivot.params.flame(), pivot.params.cameras(target.cameras)
        final = psnr(render_frames(G, ws, flame, cameras, target.resolution), target.images)
        cache = G.identity(None, None, flame.shape[:1], ws=ws, noise_mode="const")
        neutral = neutral_gaussians(G, cache)

    exported = pivot.params.export()
    frames = {k: v for k, v in exported.items() if k != "shape"}  # per frame: FLAME but shape, camera_rotation
    frames["camera"] = cameras.to_label().float()
    psnr_pivot = pivot.curve.psnr[-1] if pivot.curve.psnr else float(psnr(before[:, 1], before[:, 0]).mean())
    summary = {"config": dataclasses.asdict(config), "perceptual": loss_fn.perceptual_name,
               "frames": target.num_frames, "stage1_steps": len(pivot.curve.loss), "stage2_steps": tuned.steps,
               "stopped_early": tuned.stopped_early, "psnr_pivot": psnr_pivot,
               "psnr_final": float(final.mean()), "psnr_final_per_frame": [float(x) for x in final], **heldout_psnr}
    avatar = AvatarFile(
        generator=G.state_dict(), generator_config=base.generator_config_dict(),
        head_config=base.head_config_dict(), head_model=base.head_model, resolution=base.resolution,
        w=pivot.w, shape=exported["shape"], frames=frames, crops=target.crops_uint8(),
        neutral={k: getattr(neutral, k) for k in ("means", "log_scales", "quats", "sh", "opacities")},
        mapping_camera=base.mapping_camera, sources=list(target.sources), base_checkpoint=base.source,
        pti={k: v for k, v in summary.items() if k not in ("config", "heldout_sources")} | {"settings": summary["config"]})

    losses_path, preview_path = sidecar_paths(out)
    ply_path = Path(ply) if ply is not None else None
    outputs = [losses_path, preview_path] + ([ply_path] if ply_path is not None else [])
    temps = {p: temp_path(p) for p in outputs}
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        write_json(temps[losses_path], {"stage1": pivot.curve.as_dict(), "stage2": tuned.curve.as_dict(), **summary})
        write_png(temps[preview_path], preview_grid(torch.cat(rows), preview_size))
        if ply_path is not None:
            from agora_core.gaussians import write_ply

            ply_path.parent.mkdir(parents=True, exist_ok=True)
            write_ply(temps[ply_path], neutral.to("cpu"))
        avatar.save(out)
        for final_path, tmp in temps.items():
            os.replace(tmp, final_path)
    finally:
        for tmp in temps.values():
            tmp.unlink(missing_ok=True)
    return InvertResult(out, losses_path, preview_path, ply_path, psnr_pivot, float(final.mean()),
                        len(pivot.curve.loss), tuned.steps, tuned.stopped_early,
                        heldout_psnr.get("psnr_heldout_pivot"), heldout_psnr.get("psnr_heldout_final"))
