"""`agora train`: train AGORA's G and D on a dataset folder (one process, or several via torchrun).

Also runnable as `python -m agora_cli.train ...` (same options): that is what `--gpus N` /
`--cpu-procs N` re-execute through `python -m torch.distributed.run`.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Annotated, Optional

import typer

from agora_cli.common import console, setup_runtime, user_errors
from agora_cli.options import FlameEyelidsOpt, FlameOpt, FlameUvOpt
from agora_core.errors import AgoraError

ConfigOpt = Annotated[Path, typer.Option("--config", help="Training config YAML (e.g. configs/demo.yaml).")]
DataOpt = Annotated[Optional[Path], typer.Option("--data", help="Dataset folder (agora prep-data output); not needed with --dry-run.", show_default=False)]
OutOpt = Annotated[Optional[Path], typer.Option("--out", help="Run folder: checkpoints/, samples/, log.jsonl, config.yaml; not needed with --dry-run.", show_default=False)]


@user_errors
def train(
    config: ConfigOpt,
    data: DataOpt = None,
    out: OutOpt = None,
    resume: Annotated[bool, typer.Option("--resume/--no-resume", help="Continue from the run folder's newest checkpoint (default when it has one).")] = True,
    kimg: Annotated[Optional[float], typer.Option("--kimg", help="Override total_kimg (thousands of real images).")] = None,
    batch: Annotated[Optional[int], typer.Option("--batch", help="Override batch_size (total over all processes).")] = None,
    gpus: Annotated[int, typer.Option("--gpus", help="Train on N GPUs (re-runs itself through torchrun).")] = 1,
    cpu_procs: Annotated[int, typer.Option("--cpu-procs", help="Train in N CPU processes with gloo (testing DDP).")] = 1,
    device: Annotated[str, typer.Option("--device", help="auto, cpu or cuda.")] = "auto",
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Build the models, print parameter counts, exit.")] = False,
    flame: FlameOpt = None,
    flame_uv: FlameUvOpt = None,
    flame_eyelids: FlameEyelidsOpt = None,
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="Override a config key: --set loss.r1_gamma=2 (repeatable).")] = None,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="Show the progress line.")] = True,
) -> None:
    """Train the AGORA generator and discriminator (paper sec. 3.8, 4)."""
    from agora_core.run_config import load_config, parse_set_options

    if device not in ("auto", "cpu", "cuda"):
        raise AgoraError(f"--device {device!r}: choose auto, cpu or cuda")
    if gpus > 1 and cpu_procs > 1:
        raise AgoraError("--gpus and --cpu-procs are exclusive")
    if not dry_run and (data is None or out is None):
        raise AgoraError("train needs --data DATA and --out RUN (only --dry-run goes without them)")
    overrides: dict = parse_set_options(set_ or [])
    if kimg is not None:
        overrides["total_kimg"] = kimg
    if batch is not None:
        overrides["batch_size"] = batch
    if flame:
        overrides["head.flame_pkl"] = str(flame)
    if flame_uv:
        overrides["head.flame_uv"] = str(flame_uv)
    if flame_eyelids:
        overrides["head.flame_eyelids"] = str(flame_eyelids)
    cfg = load_config(config, overrides)
    if not dry_run:
        from agora_core.gaussians.files import check_output_path

        check_output_path(out, "--out", folder=True)
    nproc = max(gpus, cpu_procs)
    if nproc > 1 and int(os.environ.get("WORLD_SIZE", "1")) == 1:
        _relaunch(nproc, config, data, out, resume, overrides, "cpu" if cpu_procs > 1 else "cuda", progress)
        return
    setup_runtime(cfg.threads or None)
    if dry_run:
        _dry_run(cfg)
        return
    from agora_core.train.loop import train as train_loop

    last = train_loop(cfg, data, out, resume=resume, progress=progress, device=device)
    if int(os.environ.get("RANK", "0")) == 0:
        console.print(f"done: {last}")


def _relaunch(nproc: int, config: Path, data: Path, out: Path, resume: bool, overrides: dict, device: str,
              progress: bool) -> None:
    """Run this command again in `nproc` processes through torch.distributed.run."""
    from agora_core.train.distributed import relaunch_command

    if device == "cuda":
        import torch

        if torch.cuda.device_count() < nproc:
            raise AgoraError(f"--gpus {nproc}: only {torch.cuda.device_count()} CUDA device(s) visible")
    args = ["--config", str(config), "--data", str(data), "--out", str(out), "--device", device,
            "--resume" if resume else "--no-resume", "--progress" if progress else "--no-progress"]
    for key, value in overrides.items():
        args += ["--set", f"{key}={value}"]
    cmd = relaunch_command(nproc, args)
    console.print(f"[dim]launching {nproc} processes: {' '.join(cmd)}[/]", highlight=False, soft_wrap=True)
    rc = subprocess.call(cmd)
    if rc != 0:
        raise typer.Exit(rc)


def _dry_run(cfg) -> None:
    import torch

    from agora_core.head.build import build_head
    from agora_core.train.build import build_models, parameter_counts

    torch.manual_seed(cfg.seed)
    head = build_head(cfg.head)
    G, D = build_models(cfg, head)
    counts = parameter_counts(G, D)
    rows = [("head model", f"{head.model_id} ({head.num_vertices} vertices)"),
            ("identity branch", f"{counts['identity_branch']:,} parameters"),
            ("deformation branch", f"{counts['deformation_branch']:,} parameters"),
            ("generator total", f"{counts['generator_total']:,} parameters"),
            ("discriminator", f"{counts['discriminator']:,} parameters"),
            ("gaussians", f"{counts['gaussians']:,}"),
            ("render", f"{cfg.resolution}x{cfg.resolution}, batch {cfg.batch_size}, {cfg.total_kimg:g} kimg")]
    for label, value in rows:
        console.print(f"{label:<20}{value}", highlight=False)

if __name__ == "__main__":
    typer.run(train)
