"""`agora eval`: FID, KID, ID, AED/AED-jaw/APD/ASD/AED-eyelids and SWD of a checkpoint (paper sec. 4)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from agora_cli.common import console, setup_runtime, user_errors
from agora_cli.options import ProgressOpt, SmirkOpt, ThreadsOpt
from agora_core.devices import resolve_device
from agora_core.errors import AgoraError


@user_errors
def evaluate(
    checkpoint: Annotated[Path, typer.Argument(help="A checkpoint (RUN/checkpoints/kimg*.pt), a run folder (its newest) or an imported run (agora import).")],
    data: Annotated[Path, typer.Option("--data", help="Dataset folder: real images for FID/KID/SWD, camera + FLAME distribution for sampling.")],
    metrics: Annotated[Optional[str], typer.Option("--metrics", help="Comma-separated: fid,kid,id,aed,swd (aed also gives aed_jaw, apd, asd, aed_eyelids). Default: all.")] = None,
    json_out: Annotated[Optional[Path], typer.Option("--json", help="Write the results and the protocol used to this JSON file.")] = None,
    quick: Annotated[bool, typer.Option("--quick", help="A CPU-sized subset of the protocol (256 FID images, 10×5 AED renders, 32 ID pairs, 64 SWD images).")] = False,
    n: Annotated[Optional[int], typer.Option("--n", min=2, help="Generated images for FID/KID (paper 50000).")] = None,
    real: Annotated[Optional[int], typer.Option("--real", min=0, help="Real images for FID/KID statistics (0 = the whole dataset).")] = None,
    identities: Annotated[Optional[int], typer.Option("--identities", min=1, help="AED/APD identities (paper 500).")] = None,
    pairs: Annotated[Optional[int], typer.Option("--pairs", min=1, help="AED/APD expression/pose pairs per identity (paper 20).")] = None,
    id_pairs: Annotated[Optional[int], typer.Option("--id-pairs", min=1, help="ID: same-identity image pairs (paper 1000).")] = None,
    swd_images: Annotated[Optional[int], typer.Option("--swd-images", min=2, help="SWD: real and generated images (default 1000).")] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of every draw (z, dataset items, noise, KID subsets).")] = 0,
    batch: Annotated[int, typer.Option("--batch", min=1, help="Images rendered per generator call.")] = 16,
    inception: Annotated[Optional[Path], typer.Option("--inception", help="Inception-v3 weights for FID/KID: torch-fidelity's weights-inception-2015-12-05-6726825d.pth (a plain state dict; TorchScript and pickles are refused).")] = None,
    arcface: Annotated[Optional[Path], typer.Option("--arcface", help="ArcFace recognition ONNX for ID (insightface buffalo_l w600k_r50.onnx).")] = None,
    tracker: Annotated[Optional[Path], typer.Option("--tracker", help="FLAME tracker for AED/APD: an `agora train-tracker` checkpoint (demo head) or SMIRK_em1.pt (real FLAME; same as --smirk).")] = None,
    smirk: SmirkOpt = None,
    detect_faces: Annotated[bool, typer.Option("--detect-faces", help="Detect the face before tracking (no face = a failed fit) instead of the fixed aligned crop.")] = False,
    strict: Annotated[bool, typer.Option("--strict", help="Metrics named in --metrics whose weights are missing are errors, not 'needs weights'.")] = False,
    device: Annotated[str, typer.Option("--device", help="auto, cpu or cuda.")] = "auto",
    threads: ThreadsOpt = 0,
    progress: ProgressOpt = True,
) -> None:
    """Evaluate a checkpoint with the paper's metrics (protocol of appendix 0.B.2.1; --quick for a CPU-sized subset)."""

    from agora_core.assets import resolve_asset
    from agora_core.metrics.evaluate import EvalWeights, evaluate as run_evaluation, parse_metrics, result_rows
    from agora_core.metrics.protocol import QUICK_PROTOCOL, ProtocolConfig

    if tracker is not None and smirk is not None:
        raise AgoraError("--tracker and --smirk both name a FLAME tracker; give one")
    if json_out is not None:
        from agora_core.gaussians.files import check_output_path

        check_output_path(json_out, "--json")
    device = str(resolve_device(device))
    chosen = parse_metrics(metrics)
    if tracker is None and smirk is None:  # $AGORA_SMIRK / assets.yaml, when configured
        found = resolve_asset("smirk_ckpt")
        tracker = found.path if found.path is not None else None
    protocol = QUICK_PROTOCOL if quick else ProtocolConfig()
    overrides = {"fid_images": n, "fid_real_images": real, "identities": identities, "pairs_per_identity": pairs,
                 "id_pairs": id_pairs, "swd_images": swd_images}
    protocol = dataclasses.replace(protocol, seed=seed, batch=batch, **{k: v for k, v in overrides.items() if v is not None})
    setup_runtime(threads or None)
    doc = run_evaluation(checkpoint, data, chosen, protocol,
                         EvalWeights(inception=inception, arcface=arcface, tracker=tracker or smirk),
                         strict=strict and metrics is not None, detect_faces=detect_faces, quick=quick,
                         device=device, progress=progress)

    table = Table(title=f"agora eval {checkpoint}" + (" (--quick)" if quick else ""))
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_column("detail")
    for row in result_rows(doc):
        table.add_row(*row)
    console.print(table)
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(doc, indent=2))
        console.print(f"wrote {json_out}")


if __name__ == "__main__":
    typer.run(evaluate)
