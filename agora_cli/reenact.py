"""`agora reenact`: drive an avatar with a video (tracked through face/) or a parameter file; and
`agora reenact-demo-params`: a synthetic driving sequence for the demo."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Annotated, Optional

import typer

from agora_cli.common import console, err_console, setup_runtime, user_errors
from agora_cli.options import (BasisFormatOpt, DeviceOpt, ExecutorOpt, FlameEyelidsOpt, FlameOpt, FlameUvOpt, ModnetOpt, PrecisionOpt,
                               ProgressOpt, SmirkOpt, ThreadsOpt)
from agora_core.devices import resolve_device
from agora_core.errors import AgoraError


def parse_smooth(smooth: str, no_smooth: bool) -> tuple[int, int] | None:
    """`--smooth W,O` -> (W, O) (odd W > O >= 0), or None with --no-smooth."""
    if no_smooth:
        return None
    try:
        w, o = (int(x) for x in smooth.split(","))
    except ValueError:
        raise AgoraError(f"--smooth {smooth}: expected WINDOW,ORDER, e.g. 5,3") from None
    if w < 1 or w % 2 == 0 or not 0 <= o < w:
        raise AgoraError(f"--smooth {smooth}: the window must be odd and larger than the order")
    return w, o


@user_errors
def reenact(
    avatar: Annotated[Path, typer.Argument(help="Avatar file from `agora invert`, or an imported run (agora import) with --seed.")],
    driving: Annotated[Optional[Path], typer.Argument(help="Driving video (omit with --params).", show_default=False)] = None,
    out: Annotated[Path, typer.Option("--out", help="mp4 to write.")] = Path("reenact.mp4"),
    params: Annotated[Optional[Path], typer.Option("--params", help="Drive from parameters instead: .npz (agora's, VHAP/GaussianAvatars flame_param, DECA/EMOCA codes, SMIRK outputs), the authors' driving_sequence.json, or a folder of per-frame files (SMIRK, EMOCA, .npz).")] = None,
    fps: Annotated[Optional[float], typer.Option("--fps", help="With --params: frames per second of the parameters (default: the file's, else 25).")] = None,
    accept_flame_mismatch: Annotated[bool, typer.Option("--accept-flame-mismatch", help="Drive with parameters of another FLAME release than the avatar's (FLAME 2020), e.g. VHAP/GaussianAvatars' FLAME 2023.")] = False,
    seed: Annotated[Optional[int], typer.Option("--seed", help="With an imported run: the identity to drive (as agora sample --seed).")] = None,
    truncation: Annotated[float, typer.Option("--truncation", help="With an imported run: truncation ψ of the identity.")] = 0.7,
    audio: Annotated[Optional[Path], typer.Option("--audio", help="Sound track to add (a sound file or a video with sound); default: the driving video's own sound.")] = None,
    save_params: Annotated[Optional[Path], typer.Option("--save-params", help="Write the tracked (unsmoothed) parameters (.npz or .json).")] = None,
    smooth: Annotated[str, typer.Option("--smooth", help="Savitzky–Golay WINDOW,ORDER over time.")] = "5,3",
    no_smooth: Annotated[bool, typer.Option("--no-smooth", help="Do not smooth the parameters.")] = False,
    side_by_side: Annotated[bool, typer.Option("--side-by-side", help="Put the driving frame (or the ground truth) left of the render.")] = False,
    ground_truth: Annotated[Optional[Path], typer.Option("--ground-truth", help="Demo-identity dataset: render its person with the same parameters on the left.")] = None,
    mobile: Annotated[bool, typer.Option("--mobile", help="Render with AGORA-M (BlendshapeAvatar) instead of the full model.")] = False,
    basis: Annotated[Optional[Path], typer.Option("--basis", help="AGORA-M basis.safetensors (with --mobile).")] = None,
    mlp: Annotated[Optional[Path], typer.Option("--mlp", help="AGORA-M mlp.safetensors (with --mobile).")] = None,
    resolution: Annotated[Optional[int], typer.Option("--resolution", help="Render size (default: the avatar's).")] = None,
    size: Annotated[int, typer.Option("--size", help="Pixels of each panel in the video: the render enlarged (bicubic) to this size.")] = 256,
    batch: Annotated[int, typer.Option("--batch", min=1, help="Frames rendered per batch.")] = 8,
    aligned: Annotated[bool, typer.Option("--aligned", help="Video frames are FFHQ-aligned crops: skip detection.")] = False,
    device: DeviceOpt = None,
    threads: ThreadsOpt = 0,
    progress: ProgressOpt = True,
    smirk: SmirkOpt = None,
    modnet: ModnetOpt = None,
    flame: FlameOpt = None,
    flame_uv: FlameUvOpt = None,
    flame_eyelids: FlameEyelidsOpt = None,
    executor: ExecutorOpt = "torch",
    precision: PrecisionOpt = "float32",
    basis_format: BasisFormatOpt = "float32",
) -> None:
    """Reenact an avatar: per-frame expression, jaw and head pose from a video or a parameter file."""

    from agora_core.invert.avatar_file import AvatarFile
    from agora_core.invert.video_io import VIDEO_FPS_RANGE
    from agora_core.reenact.driving import DrivingSequence, check_flame_version
    from agora_core.reenact.run import reenact as run_reenact

    if (driving is None) == (params is None):
        raise AgoraError("reenact needs a driving video or --params FILE (exactly one)")
    if fps is not None and driving is not None:
        raise AgoraError("--fps sets the frame rate of --params; a driving video has its own")
    if fps is not None and not VIDEO_FPS_RANGE[0] <= fps <= VIDEO_FPS_RANGE[1]:
        raise AgoraError(f"--fps {fps:g}: expected {VIDEO_FPS_RANGE[0]:g} to {VIDEO_FPS_RANGE[1]:g}")
    if save_params is not None and driving is None:
        raise AgoraError("--save-params writes what was tracked from a video; it does not apply to --params")
    from agora_core.inference import is_imported_run, is_model_folder

    imported = is_imported_run(avatar) or is_model_folder(avatar)  # a model with seeds, not one avatar
    if imported and seed is None:
        raise AgoraError(f"{avatar} is a model folder: add --seed N to choose the identity (as agora sample --seed N)")
    if not imported and seed is not None:
        raise AgoraError("--seed chooses the identity of an imported run or model folder; an avatar file has its own")
    if is_imported_run(avatar) and mobile and basis is None and mlp is None:  # the run's imported AGORA-M pair
        basis, mlp = avatar / "basis.safetensors", avatar / "mlp.safetensors"
    if mobile and (basis is None or mlp is None):
        raise AgoraError("--mobile needs --basis basis.safetensors and --mlp mlp.safetensors")
    if imported and ground_truth is not None:
        raise AgoraError("--ground-truth renders a demo-dataset person; it does not apply to an imported run")
    if not mobile and (basis is not None or mlp is not None):
        raise AgoraError("--basis/--mlp apply to --mobile; add --mobile")
    from agora_core.export.onnx_executor import check_executor, check_precision

    if basis_format != "float32" and not mobile:
        raise AgoraError(f"--basis-format {basis_format} applies to --mobile (AGORA-M); add --mobile")
    if check_executor(executor) != "torch" and mobile:
        raise AgoraError(f"--executor {executor} runs the full model's per-frame path; --mobile runs AGORA-M: drop one")
    if check_precision(precision, executor) != "float32" and mobile:
        raise AgoraError(f"--precision {precision} applies to the full model's per-frame path; --mobile runs AGORA-M: "
                         "drop one")
    if side_by_side and driving is None and ground_truth is None:
        raise AgoraError("--side-by-side with --params needs --ground-truth DATASET (there is no driving video)")
    if out.suffix.lower() != ".mp4":
        raise AgoraError(f"--out {out}: the video must end in .mp4")
    from agora_core.gaussians.files import check_output_path

    check_output_path(out, "--out")
    if save_params is not None:
        check_output_path(save_params, "--save-params")
    window = parse_smooth(smooth, no_smooth)
    from agora_core.reenact.sound import audio_file, audio_of_video

    track = audio_file(audio) if audio is not None else None  # fail on a bad sound file before any work
    setup_runtime(threads or None)
    dev = resolve_device(device)
    if imported:  # fail on a bad run before tracking a long video
        from agora_core.inference import load_model

        loaded, res = None, resolution or load_model(avatar).resolution
    else:
        loaded = AvatarFile.load(avatar)  # fail on a bad avatar before tracking a long video
        res = resolution or loaded.resolution
    left = None
    if driving is not None:
        from rich.progress import Progress

        from agora_core.assets import resolve_asset
        from agora_core.invert.photo_inputs import FaceTools
        from agora_core.reenact.tracking import track_video

        matting = bool(modnet) or resolve_asset("modnet_onnx").found
        tools = FaceTools.load(smirk, modnet, aligned, matting, dev)
        with Progress(disable=not progress) as bar:
            tracked = track_video(driving, tools, res, bar)
        if tracked.missing:
            err_console.print(f"[yellow]warning:[/] no face in {tracked.missing} of {tracked.sequence.num_frames} "
                              "frames; their parameters are held from the previous frame", highlight=False, soft_wrap=True)
        if tracked.truncated:
            err_console.print(f"[yellow]warning:[/] {driving}: decoding stopped at a damaged frame after "
                              f"{tracked.sequence.num_frames} frames", highlight=False, soft_wrap=True)
        if save_params is not None:
            tracked.sequence.save(save_params)
            console.print(f"wrote {save_params}", soft_wrap=True)
        if tracked.variable_rate:
            err_console.print(f"note: {driving} has a variable frame rate; its frames are put on "
                              f"{tracked.sequence.fps:g} fps by their timestamps", highlight=False, soft_wrap=True)
        if track is None:
            track = audio_of_video(driving, tracked.start)
        sequence = tracked.sequence
        left = tracked.crops if side_by_side and ground_truth is None else None
    else:
        sequence = DrivingSequence.load(params)
        check_flame_version(sequence, params, accept_flame_mismatch)
        if fps is not None:
            sequence = replace(sequence, fps=fps)
    if window is not None:
        sequence = sequence.smoothed(*window)
    if imported:
        from agora_core.reenact.run import reenact_imported

        result = reenact_imported(avatar, seed, sequence, out, truncation=truncation, resolution=res,
                                  mobile=(basis, mlp) if mobile else None, left=left, batch=batch, device=dev,
                                  audio=track, progress=progress, size=size, executor=executor,
                                  precision=precision, basis_format=basis_format)
    else:
        result = run_reenact(loaded, sequence, out, resolution=res, mobile=(basis, mlp) if mobile else None, left=left,
                             ground_truth=ground_truth, batch=batch, device=dev, flame_pkl=flame, flame_uv=flame_uv,
                             flame_eyelids=flame_eyelids, audio=track, progress=progress, size=size,
                             executor=executor, precision=precision, basis_format=basis_format)
    sound = f", sound of {track.path}" if track is not None else ""
    console.print(f"wrote {result.out}: {result.frames} frames at {result.fps:g} fps{sound} "
                  f"({result.render_fps:.1f} frames/s rendered, {'AGORA-M' if mobile else 'full AGORA'})", soft_wrap=True)


@user_errors
def demo_params(
    out: Annotated[Path, typer.Argument(help="Driving parameters to write (.npz or .json).")],
    frames: Annotated[int, typer.Option("--frames", min=1, help="Number of frames.")] = 48,
    fps: Annotated[float, typer.Option("--fps", help="Frames per second.")] = 24.0,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the trajectories.")] = 0,
) -> None:
    """Write a smooth synthetic driving sequence (expression, jaw, blinks, head turns) for the demo."""
    from agora_core.invert.video_io import VIDEO_FPS_RANGE
    from agora_core.reenact.demo_sequence import make_demo_sequence

    if not VIDEO_FPS_RANGE[0] <= fps <= VIDEO_FPS_RANGE[1]:
        raise AgoraError(f"--fps {fps:g}: expected {VIDEO_FPS_RANGE[0]:g} to {VIDEO_FPS_RANGE[1]:g}")
    path = make_demo_sequence(frames, fps, seed).save(out)
    console.print(f"wrote {path} ({frames} frames at {fps:g} fps)", soft_wrap=True)
