"""`agora invert`: an avatar from one or a few photos (or video frames) by PTI; and
`agora invert-demo-data`: the demo's input, views of one synthetic demo-head identity."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from agora_cli.common import console, err_console, setup_runtime, user_errors
from agora_cli.options import DeviceOpt, FlameEyelidsOpt, FlameOpt, FlameUvOpt, ModnetOpt, ProgressOpt, SmirkOpt, ThreadsOpt
from agora_core.errors import AgoraError


def parse_indices(index: list[str] | None, extra: list[str], flag: str = "--index") -> list[int]:
    """`--index 0 1 2` (trailing numbers arrive as positional inputs), `--index 0,1,2` or repeated."""
    items = [part for item in (index or []) for part in item.replace(",", " ").split()] + list(extra)
    try:
        return [int(x) for x in items]
    except ValueError:
        bad = next(x for x in items if not x.lstrip("-").isdigit())
        raise AgoraError(f"{flag} {bad}: dataset indices are integers") from None


@user_errors
def invert(
    inputs: Annotated[Optional[list[str]], typer.Argument(metavar="PHOTO... | VIDEO", help="Photos of one person, or one video (with --dataset: nothing).", show_default=False)] = None,
    ckpt: Annotated[Path, typer.Option("--ckpt", help="Base checkpoint (RUN/checkpoints/kimg*.pt), a run folder (its newest) or an imported run (agora import).")] = ...,
    out: Annotated[Path, typer.Option("--out", help="Avatar file to write (.pt); avatar.losses.json and avatar.preview.png go beside it.")] = Path("avatar.pt"),
    frames: Annotated[Optional[int], typer.Option("--frames", help="Frames to pick from a video (sharpest in equal time runs; default 3).")] = None,
    dataset: Annotated[Optional[Path], typer.Option("--dataset", help="Take images and exact labels from this dataset folder instead of photos (demo head: no SMIRK model).")] = None,
    index: Annotated[Optional[list[str]], typer.Option("--index", help="Dataset indices with --dataset: --index 0 1 2 (or 0,1,2).")] = None,
    heldout: Annotated[Optional[list[str]], typer.Option("--heldout", help="With --dataset: views of the same person kept out of the fit (--heldout 3 or 3,4); PSNR on them before/after tuning, one preview row each.")] = None,
    size: Annotated[int, typer.Option("--size", min=8, help="Pixels per preview tile (each rendered at the model's resolution and enlarged).")] = 256,
    aligned: Annotated[bool, typer.Option("--aligned", help="Photos are FFHQ-aligned crops: skip face detection.")] = False,
    matting: Annotated[bool, typer.Option("--matting/--no-matting", help="Matte with MODNet onto white (off: photos already on white).")] = True,
    perceptual_weights: Annotated[Optional[Path], typer.Option("--perceptual-weights", help="LPIPS backbone: torchvision AlexNet (PTI's) or VGG16 state dict (torch.save); else $AGORA_PERCEPTUAL_WEIGHTS or assets.yaml; without it: L2 + SSIM.")] = None,
    stop_lpips: Annotated[Optional[float], typer.Option("--stop-lpips", min=0.0, help="Stop tuning once the perceptual term is at most this (default: PTI's 0.06 with AlexNet LPIPS, off otherwise; 0 = off).")] = None,
    locality: Annotated[bool, typer.Option("--locality", help="PTI's locality regulariser in stage 2.")] = False,
    tune_flame: Annotated[Optional[bool], typer.Option("--tune-flame/--no-tune-flame", help="Tune β, ψ, θ with w in stage 1 (default: with several frames).")] = None,
    w_steps: Annotated[int, typer.Option("--w-steps", min=0, help="Stage 1 steps (pivot w).")] = 450,
    g_steps: Annotated[int, typer.Option("--g-steps", min=0, help="Stage 2 steps at most (generator tuning).")] = 350,
    w_lr: Annotated[float, typer.Option("--w-lr", help="Stage 1 peak learning rate.")] = 0.01,
    g_lr: Annotated[float, typer.Option("--g-lr", help="Stage 2 Adam learning rate.")] = 3e-4,
    ply: Annotated[Optional[Path], typer.Option("--ply", help="Also write the neutral avatar as a 3DGS .ply.")] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the w noise and locality samples.")] = 0,
    device: DeviceOpt = None,
    threads: ThreadsOpt = 0,
    progress: ProgressOpt = True,
    smirk: SmirkOpt = None,
    modnet: ModnetOpt = None,
    flame: FlameOpt = None,
    flame_uv: FlameUvOpt = None,
    flame_eyelids: FlameEyelidsOpt = None,
) -> None:
    """Invert photos of a person into an animatable avatar (PTI: pivot w, then generator tuning)."""
    from agora_core.invert.from_inputs import PTISettings, invert_from_inputs

    inputs = list(inputs or [])
    indices = parse_indices(index, inputs) if dataset is not None else index  # index without --dataset: refused there
    kept_out = parse_indices(heldout, [], flag="--heldout") if heldout and dataset is not None else heldout
    setup_runtime(threads or None)
    settings = PTISettings(w_steps=w_steps, g_steps=g_steps, w_lr=w_lr, g_lr=g_lr, locality=locality,
                           tune_flame=tune_flame, stop_lpips=stop_lpips, seed=seed)
    result = invert_from_inputs(
        ckpt, out, [] if dataset is not None else inputs, dataset=dataset, index=indices, heldout=kept_out,
        preview_size=size, frames=frames,
        aligned=aligned, matting=matting, perceptual_weights=perceptual_weights, settings=settings, ply=ply,
        device=device, progress=progress, smirk=smirk, modnet=modnet, flame=flame, flame_uv=flame_uv,
        flame_eyelids=flame_eyelids, say=lambda m: console.print(m, soft_wrap=True),
        warn=lambda m: err_console.print(f"[yellow]note:[/] {m}", highlight=False, soft_wrap=True))
    console.print(f"PSNR on the input view(s): {result.psnr_pivot:.2f} dB after stage 1, {result.psnr_final:.2f} dB "
                  f"after tuning ({result.stage2_steps} steps{', stopped at ' + result.stopped_early if result.stopped_early else ''})",
                  soft_wrap=True)
    if result.psnr_heldout_final is not None:
        console.print(f"PSNR on the held-out view(s): {result.psnr_heldout_pivot:.2f} dB before tuning, "
                      f"{result.psnr_heldout_final:.2f} dB after", soft_wrap=True)
    console.print(f"wrote {result.avatar}, {result.losses}, {result.preview}" + (f", {result.ply}" if result.ply else ""), soft_wrap=True)


@user_errors
def demo_data(
    out: Annotated[Path, typer.Argument(help="Dataset folder to write (4 views of one demo-head person).")],
    seed: Annotated[int, typer.Option("--seed", help="Identity seed (appearance, shape, expressions).")] = 0,
    resolution: Annotated[int, typer.Option("--resolution", help="Image side in pixels (use the checkpoint's).")] = 64,
) -> None:
    """Write views of ONE synthetic demo-head identity for `agora invert --dataset OUT --index 0 1 2`
    (index 3 is a held-out view) and `agora reenact --ground-truth OUT`."""
    from agora_core.invert.demo_data import make_demo_identity_dataset

    setup_runtime()
    path = make_demo_identity_dataset(out, resolution=resolution, seed=seed)
    console.print(f"demo identity {seed}: {path} (views 0-2 to invert, 3 held out)", soft_wrap=True)
