"""Frame time of the AGORA-M web viewer in headless Chromium (software WebGL2 unless a GPU is exposed):
what `agora bench --device browser` runs.

One browser session, one page, the same splats and camera; animated frames (new parameters from the
bundle's driving sequence: MLP, blend, projection, sort upkeep, draw) alternate with static frames
(the same splats drawn again: no animation work), so both see the same machine load. Each frame is
finished on the GPU (a 1-pixel read) before its clock stops, so the times include the GPU work;
sorting runs in the viewer's worker, so only its main-thread cost (coefficient readback, order upload)
is in a frame.

Without a bundle, `bench_browser` writes a temporary one like `agora bench --device cpu` builds its
avatar: the checkpoint's generator (or a randomly initialised one of a config), one identity, and the
AGORA-M files given (or random ones of the same shapes): same cost per frame, meaningless pixels.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from agora_core.errors import AgoraError
from agora_core.export.browser import HeadlessBrowser, find_chromium
from agora_core.export.web_bundle import FORMAT_VERSION
from agora_core.export.web_server import serve_bundle


def run_browser_benchmark(bundle_dir: str | Path, frames: int = 100, width: int = 512, height: int = 512,
                          warmup: int = 10) -> dict:
    """Benchmark a bundle written by `agora export web`.

    Returns:
        {"animated": stats, "static": stats, "ratio": animated / static median frame time,
         "sorts": re-sorts during the run, "renderer": WebGL renderer string, "gaussians",
         "active_gaussians", "k", "width", "height", "frames"},
        where stats = {"frames", "mean_ms", "median_ms", "p90_ms", "fps" (1000 / median)}.
    """
    bundle_dir = Path(bundle_dir)
    if not (bundle_dir / "avatar.json").is_file():
        raise AgoraError(f"{bundle_dir}: no avatar.json; export a bundle with `agora export web` first")
    manifest = json.loads((bundle_dir / "avatar.json").read_text())
    if manifest.get("format_version") != FORMAT_VERSION:
        raise AgoraError(f"{bundle_dir}/avatar.json: format_version {manifest.get('format_version')}, this agora "
                         f"benchmarks {FORMAT_VERSION}; re-export the bundle with `agora export web`")
    camera = manifest["default_camera"]
    with serve_bundle(bundle_dir) as server, HeadlessBrowser() as browser:
        page = browser.open(server.url + "index.html?autoplay=0&ui=0", width, height)
        page.evaluate("window.agora.ready", await_promise=True, timeout=120)
        page.evaluate(f"""(async () => {{
            const {{ orbitCamera }} = await import('./viewer.js');
            window.agora.setCamera(orbitCamera({json.dumps(camera)}, {width}, {height}));
            await window.agora.renderOnce();
        }})()""", await_promise=True, timeout=120)
        result = page.evaluate(f"window.agora.benchmark({{frames: {frames}, warmup: {warmup}}})", await_promise=True,
                               timeout=120 + frames * 20.0)
        renderer = page.evaluate("""(() => { const gl = document.createElement('canvas').getContext('webgl2');
            const ext = gl && gl.getExtension('WEBGL_debug_renderer_info');
            return gl ? (ext ? gl.getParameter(ext.UNMASKED_RENDERER_WEBGL) : gl.getParameter(gl.RENDERER)) : 'none'; })()""")
    for stats in (result["animated"], result["static"]):
        stats["fps"] = 1000.0 / max(stats["median_ms"], 1e-6)
    ratio = result["animated"]["median_ms"] / max(result["static"]["median_ms"], 1e-6)
    return {**result, "ratio": ratio, "renderer": renderer, "frames": frames}


@dataclass
class BrowserBench:
    """`bench_browser`'s answer: the `run_browser_benchmark` dict, where the bundle came from, notes."""

    result: dict
    bundle: str  # the bundle folder, or "temporary (...)"
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"device": "browser", "bundle": self.bundle, **self.result, "notes": self.notes}


def bench_browser(bundle: str | Path | None, checkpoint: str | Path | None, config: str | Path | None, *,
                  frames: int, size: int, warmup: int, gaussians: int | None = None,
                  basis_path: str | Path | None = None, mlp_path: str | Path | None = None, k: int = 64,
                  hidden: int = 256, seed: int = 0) -> BrowserBench:
    """Time the web viewer on `bundle`, or on a temporary bundle (module docstring) at `size`² pixels."""
    if find_chromium() is None:
        raise AgoraError("--device browser: chromium not found; install it (apt-get install chromium) or set "
                         "$AGORA_CHROMIUM to its path")
    if bundle is not None:
        return BrowserBench(run_browser_benchmark(bundle, frames, size, size, warmup), str(bundle))
    with tempfile.TemporaryDirectory(prefix="agora-bench-web-") as tmp:
        notes, source = write_bench_bundle(Path(tmp), checkpoint, config, gaussians=gaussians, basis_path=basis_path,
                                           mlp_path=mlp_path, k=k, hidden=hidden, seed=seed)
        result = run_browser_benchmark(Path(tmp) / "site", frames, size, size, warmup)
    return BrowserBench(result, f"temporary ({source})", notes)


def write_bench_bundle(folder: Path, checkpoint: str | Path | None, config: str | Path | None, *,
                       gaussians: int | None, basis_path: str | Path | None, mlp_path: str | Path | None, k: int,
                       hidden: int, seed: int) -> tuple[list[str], str]:
    """`folder`/site: the bundle of `run_bench`'s avatar (same model, identity, random AGORA-M files).
    Returns (notes on what is random, a description of the avatar)."""
    import torch

    from agora_core.bench.bench_setup import bench_identity, random_basis, random_regressor
    from agora_core.bench.reenactment import BenchConfig
    from agora_core.export.exporters import read_agora_m
    from agora_core.inference import neutral_gaussians
    from agora_core.export.web_bundle import write_web_bundle
    from agora_core.mobile import GaussianBasis, load_agora_model

    model = load_agora_model(checkpoint, config, gaussians=gaussians, seed=seed)
    g, notes = model.generator, []
    if model.random_init:
        notes.append(f"no checkpoint: the avatar is a randomly initialised model of {config} (same cost per frame, "
                     f"meaningless pixels)")
    cache, _ = bench_identity(model, seed, BenchConfig.truncation_psi)
    with torch.no_grad():
        neutral = neutral_gaussians(g, cache)
    if basis_path is None:  # stages meet through files: write the random ones in the documented layouts
        basis_path = random_basis(g.num_gaussians, k, seed).save(folder / "basis.safetensors")
        notes.append(f"no --basis: random K = {k} blendshapes moving every Gaussian (same cost, meaningless pixels)")
    if mlp_path is None:
        regressor = random_regressor(g.config.w_dim, g.config.expr_cond_dim, GaussianBasis.load(basis_path).k, hidden, seed)
        mlp_path = regressor.save(folder / "mlp.safetensors", train_mse=0.0, val_mse=0.0)
        notes.append(f"no --mlp: a random regressor (hidden {hidden})")
    write_web_bundle(folder / "site", neutral, cache.ws[0, 0], *read_agora_m(basis_path, mlp_path),
                     source={"avatar": f"{model.source} seed {seed}", "basis": str(basis_path), "mlp": str(mlp_path)})
    return notes, f"{model.source}, {g.num_gaussians} Gaussians"
