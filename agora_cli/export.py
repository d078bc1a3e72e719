"""`agora export onnx|web|ply|splat|spz|serve`: deployable files of an avatar (paper appendix 0.B.2.2)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Optional

import typer

from agora_cli.common import console, setup_runtime, user_errors
from agora_cli.options import ThreadsOpt

export_app = typer.Typer(
    help="Export an avatar: ONNX of the per-frame deformation path, a WebGL2 AGORA-M viewer, .ply/.splat/.spz; or a trained model as a model folder.",
    no_args_is_help=True,
)

SourceArg = Annotated[Path, typer.Argument(help="An avatar.pt (agora invert), or a training checkpoint / run folder or an imported run (agora import) with --seed.")]
SeedOpt = Annotated[Optional[int], typer.Option("--seed", help="With a checkpoint or imported run: the avatar `agora sample --seed N --n 1` draws.")]
TruncationOpt = Annotated[float, typer.Option("--truncation", help="With a checkpoint or imported run: truncation ψ of w (1 = none).")]
PortOpt = Annotated[int, typer.Option("--port", help="Port on 127.0.0.1 for --serve (0 = any free port).")]


def _serve(site: Path, port: int) -> None:
    from agora_core.export.web_server import BundleServer

    server = BundleServer(site, port).start()
    console.print(f"serving {site} at [bold]{server.url}[/] (Ctrl-C to stop)")
    try:
        while True:
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    console.print("stopped")


@export_app.command("onnx")
@user_errors
def onnx(
    source: SourceArg,
    out: Annotated[Path, typer.Option("--out", help="ONNX file to write (+ <out>.identity.safetensors beside it).")] = Path("deform.onnx"),
    seed: SeedOpt = None,
    truncation: TruncationOpt = 0.7,
    opset: Annotated[int, typer.Option("--opset", help="ONNX opset (>= 16 for GridSample).")] = 17,
    threads: ThreadsOpt = 0,
) -> None:
    """Deformation branch + lifting as ONNX (inputs: cached identity, posed mesh points, ψ, jaw, eyelids)."""
    from agora_core.gaussians.files import check_output_path

    check_output_path(out, "--out")
    setup_runtime(threads or None)
    from agora_core.export.exporters import export_onnx

    report = export_onnx(source, out, seed, truncation, opset)
    console.print(f"wrote {report.onnx_path} ({report.num_gaussians} Gaussians) and {report.sidecar_path}")
    console.print(f"onnxruntime vs PyTorch on {len(report.parity)} random frames: max abs error "
                  f"{report.max_abs_error:.2e}, relative {report.max_relative_error:.2e}")


@export_app.command("web")
@user_errors
def web(
    source: SourceArg,
    basis: Annotated[Optional[Path], typer.Option("--basis", help="basis.safetensors (agora extract-basis; default for an imported run: its imported pair).")] = None,
    mlp: Annotated[Optional[Path], typer.Option("--mlp", help="mlp.safetensors (agora fit-mlp; default for an imported run: its imported pair).")] = None,
    out: Annotated[Path, typer.Option("--out", help="Folder of the static site.")] = Path("site"),
    seed: SeedOpt = None,
    truncation: TruncationOpt = 0.7,
    sequence: Annotated[Optional[Path], typer.Option("--sequence", help="driving_sequence.json to play (default: a synthetic demo clip).")] = None,
    serve: Annotated[bool, typer.Option("--serve", help="Serve the site on 127.0.0.1 after writing it (Ctrl-C to stop).")] = False,
    port: PortOpt = 8000,
    threads: ThreadsOpt = 0,
) -> None:
    """AGORA-M WebGL2 viewer bundle (format 4): neutral Gaussians, int16 fixed-point blendshapes, the MLP, the viewer (no build step)."""
    from agora_core.gaussians.files import check_output_path

    check_output_path(out, "--out", folder=True)
    setup_runtime(threads or None)
    from agora_core.export.exporters import export_web

    site = export_web(source, basis, mlp, out, seed, truncation, sequence)
    console.print(f"wrote {site}/ (open index.html through a web server, e.g. agora export serve {site})")
    if serve:
        _serve(site, port)


@export_app.command("serve")
@user_errors
def serve_site(
    site: Annotated[Path, typer.Argument(help="A folder written by agora export web.")] = Path("site"),
    port: PortOpt = 8000,
) -> None:
    """Serve an exported web bundle on 127.0.0.1."""
    _serve(site, port)


def _neutral(kind: str, source: Path, out: Path, seed: Optional[int], truncation: float, threads: int,
             sh_degree: Optional[int] = None) -> None:
    from agora_core.gaussians.files import check_output_path

    check_output_path(out, "--out")
    setup_runtime(threads or None)
    from agora_core.export.exporters import export_neutral

    console.print(f"wrote {export_neutral(source, out, kind, seed, truncation, sh_degree)}")


@export_app.command("ply")
@user_errors
def ply(
    source: SourceArg,
    out: Annotated[Path, typer.Option("--out", help=".ply file (INRIA 3DGS layout).")] = Path("neutral.ply"),
    seed: SeedOpt = None,
    truncation: TruncationOpt = 0.7,
    sh_degree: Annotated[Optional[int], typer.Option("--sh-degree", help="SH degree of the file, up to 3 (higher bands "
                                                     "written as zeros); 3 = the 62-float layout Unity's importer needs.")] = None,
    threads: ThreadsOpt = 0,
) -> None:
    """The avatar's neutral Gaussians as a 3DGS .ply (SuperSplat, Unity with --sh-degree 3, three.js viewers)."""
    _neutral("ply", source, out, seed, truncation, threads, sh_degree)


@export_app.command("splat")
@user_errors
def splat(
    source: SourceArg,
    out: Annotated[Path, typer.Option("--out", help=".splat file (antimatter15 layout).")] = Path("neutral.splat"),
    seed: SeedOpt = None,
    truncation: TruncationOpt = 0.7,
    threads: ThreadsOpt = 0,
) -> None:
    """The avatar's neutral Gaussians as an antimatter15 .splat (WebGL splat viewers)."""
    _neutral("splat", source, out, seed, truncation, threads)


@export_app.command("spz")
@user_errors
def spz(
    source: SourceArg,
    out: Annotated[Path, typer.Option("--out", help=".spz file (Niantic compressed splats, version 3).")] = Path("neutral.spz"),
    seed: SeedOpt = None,
    truncation: TruncationOpt = 0.7,
    threads: ThreadsOpt = 0,
) -> None:
    r"""The avatar's neutral Gaussians as a Niantic .spz (needs the gsply package: pip install 'agora\[spz]')."""
    _neutral("spz", source, out, seed, truncation, threads)


@export_app.command("model")
@user_errors
def model(
    run: Annotated[Path, typer.Argument(help="A run folder of agora train (its newest checkpoint) or a checkpoint .pt.")],
    out: Annotated[Path, typer.Option("--out", help="Model folder to write (generator.safetensors, model.json, log.jsonl).")] = Path("models/demo"),
    force: Annotated[bool, typer.Option("--force", help="Replace a model already in --out.")] = False,
) -> None:
    """A trained model as a small folder every stage reads (G_ema float32 + resolved config): what models/demo ships."""
    from agora_core.inference import export_model, load_model

    folder = export_model(run, out, force)
    loaded = load_model(folder)  # read back through the loader every stage uses
    size = sum(p.stat().st_size for p in folder.iterdir() if p.is_file()) / 1e6
    console.print(f"wrote {folder}/ ({loaded.generator.num_gaussians:,} Gaussians, {loaded.resolution}², "
                  f"{size:.1f} MB)")
