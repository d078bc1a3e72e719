"""`agora prep-data`: a folder of photos -> a dataset folder, or a synthetic demo-head dataset."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from agora_cli.common import console, setup_runtime, user_errors
from agora_cli.options import ModnetOpt, SmirkOpt
from agora_core.devices import resolve_device
from agora_core.errors import AgoraError

USAGE = "prep-data takes DIR OUT (a folder of photos, the dataset folder to write), or OUT alone with --synthetic N"


@user_errors
def prep_data(
    paths: Annotated[
        list[Path],
        typer.Argument(metavar="[DIR] OUT", help="Folder of .jpg/.png/.webp photos (searched recursively) and the dataset folder to write; only OUT with --synthetic.", show_default=False),
    ],
    synthetic: Annotated[Optional[int], typer.Option("--synthetic", metavar="N", min=1, help="Render N images of random demo-head identities instead of reading photos.")] = None,
    resolution: Annotated[Optional[int], typer.Option("--resolution", help="Dataset image side in pixels (default 512; 64 with --synthetic).")] = None,
    seed: Annotated[Optional[int], typer.Option("--seed", help="Random seed of --synthetic (default 0).")] = None,
    mirror: Annotated[bool, typer.Option("--mirror", help="Also store each photo's x-flip, analysed on its own (paper: mirror, then estimate); also stores each image's flip estimate for the Dataset's xflip.")] = False,
    aligned: Annotated[bool, typer.Option("--aligned", help="Inputs are FFHQ-aligned square crops: skip face detection.")] = False,
    limit: Annotated[Optional[int], typer.Option("--limit", min=1, help="Use only the first N photos (sorted by path).")] = None,
    device: Annotated[Optional[str], typer.Option("--device", help="Torch device for SMIRK (default: cuda if available, else cpu).")] = None,
    workers: Annotated[int, typer.Option("--workers", min=0, help="Threads decoding photos ahead of the models (0: none).")] = 2,
    smirk: SmirkOpt = None,
    modnet: ModnetOpt = None,
) -> None:
    """Prepare a training dataset: detect, crop, matte (MODNet), estimate FLAME (SMIRK) and camera per photo.

    Resumable: rerun the same command on the same OUT after an interruption. Unusable photos are listed with a reason in OUT/rejected.jsonl.
    """
    if synthetic is not None:
        _synthetic(paths, synthetic, resolution, seed, mirror=mirror, aligned=aligned, limit=limit, device=device, smirk=smirk, modnet=modnet)
        return
    if len(paths) != 2:
        raise AgoraError(f"{USAGE}; got {len(paths)} path(s)")
    if seed is not None:
        raise AgoraError("--seed applies only to --synthetic; drop it")
    from agora_core.data.prep import PrepConfig, prepare_dataset


    setup_runtime()
    input_dir, out = paths
    config = PrepConfig(
        resolution=512 if resolution is None else resolution, mirror=mirror, aligned=aligned, limit=limit,
        workers=workers, device=str(resolve_device(device)),
    )
    summary = prepare_dataset(input_dir, out, config, smirk=smirk, modnet=modnet)

    table = Table(title=f"prep-data {input_dir} -> {out}")
    table.add_column("")
    table.add_column("count", justify="right")
    table.add_row("photos found", str(summary.found))
    table.add_row("already done (resumed)", str(summary.resumed))
    table.add_row("processed", str(summary.processed))
    table.add_row("images written", str(summary.written))
    for reason, count in summary.rejected.items():
        table.add_row(f"rejected: {reason}", str(count))
    table.add_row("dataset images", str(summary.dataset_images))
    table.add_row("images/s", f"{summary.images_per_s:.2f}")
    console.print(table)
    if summary.dataset_images == 0:
        raise AgoraError(f"{input_dir}: no usable photo; reasons in {Path(out) / 'rejected.jsonl'}")
    console.print(f"dataset: {out} ({summary.dataset_images} images at {config.resolution}²)")


def _synthetic(paths: list[Path], n: int, resolution: int | None, seed: int | None, **real_only) -> None:
    """`--synthetic N OUT`: render N demo-head images with `make_synthetic_dataset`."""
    if len(paths) != 1:
        raise AgoraError(f"--synthetic N takes one path, OUT; got {len(paths)}")
    given = [name for name, value in real_only.items() if value not in (None, False)]
    if given:
        raise AgoraError(f"--{given[0]} does not apply to --synthetic; drop it")
    from agora_core.data.synthetic import make_synthetic_dataset

    setup_runtime()
    out = make_synthetic_dataset(n, paths[0], resolution=64 if resolution is None else resolution, seed=seed or 0, progress=True)
    console.print(f"synthetic dataset: {out} ({n} images)")
