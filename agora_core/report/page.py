"""`agora report OUT`: one page (OUT/index.html) showing what `make demo` made, from the files in OUT.

Reads (each optional: a missing file becomes a line saying which command makes it) the names
`scripts/demo.sh` writes, listed in `DemoFiles`; writes the plots and the dataset examples into
OUT/report/ and the page last, every file atomically. The page is static HTML with relative links
(no script, nothing fetched from the network), so it opens from the file system.
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass
from pathlib import Path

from agora_core.errors import AgoraError
from agora_core.gaussians.files import atomic_write_bytes

ASSETS = "report"  # OUT/report/: plots and the dataset examples


@dataclass(frozen=True)
class DemoFiles:
    """What scripts/demo.sh writes into OUT (paths relative to OUT)."""

    dataset: str = "demo_data"
    samples: str = "demo_samples.png"
    avatar: str = "demo_avatar.pt"  # + demo_avatar.preview.png, demo_avatar.losses.json
    reenact: str = "demo_reenact.mp4"
    reenact_m: str = "demo_reenact_m.mp4"
    basis: str = "basis.safetensors"
    bench: str = "bench.json"
    eval: str = "eval.json"
    site: str = "site"
    train_run: str = "demo_run"  # make demo-train

    def preview(self) -> str:
        return self.avatar.removesuffix(".pt") + ".preview.png"

    def losses(self) -> str:
        return self.avatar.removesuffix(".pt") + ".losses.json"


@dataclass
class Section:
    title: str
    body: str  # HTML


def build_report(out: str | Path, model: str | Path | None = None, files: DemoFiles = DemoFiles()) -> Path:
    """Write OUT/index.html (and OUT/report/*.png) from what is in OUT; returns the page's path.

    Args:
        model: the model the demo ran on (a model folder: its model.json and log.jsonl are shown).
    """
    out = Path(out)
    if not out.is_dir():
        raise AgoraError(f"{out}: no such folder; run make demo (or pass the folder it wrote)")
    model = Path(model) if model is not None else None
    sections = [_model_section(model), _dataset_section(out, files), _samples_section(out, files),
                _inversion_section(out, files), _reenact_section(out, files), _timing_section(out, files),
                _basis_section(out, files), _training_section(out, files, model), _eval_section(out, files),
                _viewer_section(out, files)]
    page = _page(sections)
    path = out / "index.html"
    atomic_write_bytes(path, page.encode())
    return path


def _missing(what: str, command: str) -> str:
    return f'<p class="missing">No {html.escape(what)} yet: <code>{html.escape(command)}</code> makes it.</p>'


def _img(src: str, alt: str, width: int | None = None) -> str:
    w = f' style="max-width:{width}px"' if width else ""
    return f'<img src="{html.escape(src)}" alt="{html.escape(alt)}"{w}>'


def _write_asset(out: Path, name: str, data: bytes) -> str:
    atomic_write_bytes(out / ASSETS / name, data)
    return f"{ASSETS}/{name}"


def _model_section(model: Path | None) -> Section:
    if model is None:
        return Section("Model", "<p>Model not given (agora report OUT --model MODEL).</p>")
    from agora_core.inference.model_folder import is_model_folder, read_manifest

    if not is_model_folder(model):
        return Section("Model", f"<p><code>{html.escape(str(model))}</code> (a training run or checkpoint).</p>")
    doc = read_manifest(model)
    gen = doc["config"].get("generator", {})
    rows = [("folder", str(model)), ("trained", f"{doc.get('kimg')} kimg (thousands of images shown)"),
            ("render size", f"{doc['resolution']}²"), ("head model", doc["head_model"]),
            ("UV planes / Gaussian grid", f"{gen.get('uv_resolution')}² / {gen.get('gaussian_grid')}²")]
    return Section("Model", _table(None, rows))


def _dataset_section(out: Path, files: DemoFiles) -> Section:
    folder = out / files.dataset
    if not (folder / "dataset.json").is_file():
        return Section("Training data (examples)", _missing("dataset", "agora prep-data --synthetic N out/demo_data"))
    import torch

    from agora_core.data.format import read_dataset_index
    from agora_core.invert.targets import images_to_tensor, read_rgb
    from agora_core.render.images import enlarge
    from agora_core.render.images import image_grid

    index = read_dataset_index(folder)
    n = min(8, len(index))
    images = images_to_tensor([read_rgb(index.root / index.files[i]) for i in range(n)], index.header.resolution)
    images = torch.cat([enlarge(images, 160), images.new_ones(8 - n, 3, 160, 160)])
    import cv2

    ok, png = cv2.imencode(".png", cv2.cvtColor(image_grid(images, 2, 4), cv2.COLOR_RGB2BGR))
    src = _write_asset(out, "dataset.png", png.tobytes())
    return Section("Training data (examples)",
                   f"{_img(src, 'dataset examples')}<p>{len(index)} synthetic images of random demo-head "
                   f"identities at {index.header.resolution}² with exact FLAME labels (shown enlarged).</p>")


def _samples_section(out: Path, files: DemoFiles) -> Section:
    if not (out / files.samples).is_file():
        return Section("Random avatars", _missing("sample grid", "agora sample MODEL --out out/demo_samples.png"))
    return Section("Random avatars", f"{_img(files.samples, 'random avatars', 1024)}<p>New identities drawn "
                   "from the model (neutral expression, frontal camera), rendered at its resolution and enlarged.</p>")


def _inversion_section(out: Path, files: DemoFiles) -> Section:
    if not (out / files.preview()).is_file():
        return Section("Few-shot inversion", _missing("inversion", "agora invert --dataset ... --heldout 3"))
    body = _img(files.preview(), "inversion preview", 1024)
    body += ("<p>Rows: the base model at the pivot (before tuning), then each input view after tuning, then the "
             "held-out view. Columns: input | reconstruction | novel view | new expression; held-out row: truth | "
             "after tuning | before tuning.</p>")
    losses = out / files.losses()
    if losses.is_file():
        doc = json.loads(losses.read_text())
        rows = [("input views", _db(doc.get("psnr_pivot")), _db(doc.get("psnr_final")))]
        if "psnr_heldout_final" in doc:
            rows.append(("held-out view (never fitted)", _db(doc.get("psnr_heldout_pivot")), _db(doc["psnr_heldout_final"])))
        body += _table(["PSNR", "before tuning (pivot)", "after tuning"], rows)
    return Section("Few-shot inversion of a held-out identity", body)


def _db(x) -> str:
    return "–" if x is None else f"{float(x):.2f} dB"


def _reenact_section(out: Path, files: DemoFiles) -> Section:
    body = ""
    for name, label in ((files.reenact, "AGORA (full model)"), (files.reenact_m, "AGORA-M (blendshapes + MLP)")):
        if (out / name).is_file():
            body += (f'<figure><video src="{html.escape(name)}" controls autoplay muted loop playsinline></video>'
                     f"<figcaption>{label}: ground truth (left) and the inverted avatar driven by the same "
                     "parameters (right)</figcaption></figure>")
    return Section("Reenactment", body or _missing("reenactment video", "agora reenact ... --side-by-side"))


def _timing_section(out: Path, files: DemoFiles) -> Section:
    if not (out / files.bench).is_file():
        return Section("AGORA vs AGORA-M timings", _missing("benchmark", "agora bench --json out/bench.json"))
    from agora_core.report.plots import timing_bars

    bench = json.loads((out / files.bench).read_text())
    src = _write_asset(out, "timings.png", timing_bars(bench))
    return Section("AGORA vs AGORA-M timings", _img(src, "timings bar chart"))


def _basis_section(out: Path, files: DemoFiles) -> Section:
    if not (out / files.basis).is_file():
        return Section("AGORA-M blendshapes", _missing("basis", "agora extract-basis MODEL --out out/basis.safetensors"))
    from agora_core.mobile.basis_file import GaussianBasis
    from agora_core.report.plots import explained_variance_plot

    basis = GaussianBasis.load(out / files.basis)
    src = _write_asset(out, "explained_variance.png", explained_variance_plot(
        {g: v.numpy() for g, v in basis.explained_variance.items()}))
    return Section("AGORA-M blendshapes", _img(src, "explained variance"))


def _training_section(out: Path, files: DemoFiles, model: Path | None) -> Section:
    from agora_core.report.plots import swd_curve

    logs = {}
    if model is not None and (model / "log.jsonl").is_file():
        logs["shipped model"] = model / "log.jsonl"
    if (out / files.train_run / "log.jsonl").is_file():
        logs["make demo-train"] = out / files.train_run / "log.jsonl"
    if not logs:
        return Section("Training curve", _missing("training log", "make demo-train"))
    src = _write_asset(out, "swd_curve.png", swd_curve(logs))
    return Section("Training curve", _img(src, "SWD training curve"))


def _eval_section(out: Path, files: DemoFiles) -> Section:
    if not (out / files.eval).is_file():
        return Section("Evaluation", _missing("evaluation", "agora eval MODEL --json out/eval.json"))
    doc = json.loads((out / files.eval).read_text())
    rows = []
    for name, entry in doc.get("metrics", {}).items():
        value = entry.get("value")
        shown = f"{value:.4g}" if isinstance(value, (int, float)) else "–"
        rows.append((name, shown, entry.get("status", ""), entry.get("note", "") or entry.get("needs", "")))
    return Section("Evaluation", _table(["metric", "value", "status", "note"], rows)
                   + f"<p>{html.escape(str(doc.get('dataset_images')))} dataset images, "
                   f"{'quick protocol' if doc.get('quick') else 'full protocol'}.</p>")


def _viewer_section(out: Path, files: DemoFiles) -> Section:
    if not (out / files.site / "index.html").is_file():
        return Section("Interactive viewer", _missing("web bundle", "agora export web ..."))
    return Section("Interactive viewer", f'<p><a href="{files.site}/index.html">The AGORA-M WebGL2 viewer</a> '
                   f"animates the avatar in the browser. It loads its files over HTTP: run "
                   f"<code>agora export serve {html.escape(str(out / files.site))}</code> and open the address it "
                   "prints.</p>")


def _table(columns: list[str] | None, rows: list[tuple]) -> str:
    head = "<tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in columns) + "</tr>" if columns else ""
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table>{head}{body}</table>"


STYLE = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
h1{font-size:1.6em}h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:2em}
img,video{max-width:100%;height:auto;border:1px solid #eee}figure{margin:1em 0}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ddd;padding:.3em .6em;text-align:left}
.missing{color:#a60}code{background:#f4f4f4;padding:0 .2em}"""


def _page(sections: list[Section]) -> str:
    body = "".join(f"<section><h2>{html.escape(s.title)}</h2>{s.body}</section>" for s in sections)
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>agora demo</title>'
            f'<meta name="viewport" content="width=device-width,initial-scale=1"><style>{STYLE}</style></head>'
            f"<body><h1>agora demo: what make demo made</h1><p>AGORA: animatable 3D Gaussian head avatars "
            f"from a GAN, and AGORA-M, their blendshape runtime, on the procedural demo head.</p>{body}</body></html>\n")
