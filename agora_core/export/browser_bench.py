"""Frame time of the AGORA-M web viewer in headless Chromium (software WebGL2 unless a GPU is exposed).

One browser session, one page, the same splats and camera; animated frames (new parameters from the
bundle's driving sequence: MLP, blend, projection, sort upkeep, draw) alternate with static frames
(the same splats drawn again: no animation work), so both see the same machine load. Each frame is
finished on the GPU (a 1-pixel read) before its clock stops, so the times include the GPU work;
sorting runs in the viewer's worker, so only its main-thread cost (readback, upload) is in a frame.
"""

from __future__ import annotations

import json
from pathlib import Path

from agora_core.errors import AgoraError
from agora_core.export.browser import HeadlessBrowser
from agora_core.export.web_server import serve_bundle


def run_browser_benchmark(bundle_dir: str | Path, frames: int = 100, width: int = 512, height: int = 512,
                          warmup: int = 10) -> dict:
    """Benchmark a bundle written by `agora export web`.

    Returns:
        {"animated": stats, "static": stats, "ratio": animated / static median frame time,
         "sorts": re-sorts during the run, "renderer": WebGL renderer string, "gaussians", "k",
         "width", "height", "frames"}, where stats = {"frames", "mean_ms", "median_ms", "p90_ms"}.
    """
    bundle_dir = Path(bundle_dir)
    if not (bundle_dir / "avatar.json").is_file():
        raise AgoraError(f"{bundle_dir}: no avatar.json; export a bundle with `agora export web` first")
    camera = json.loads((bundle_dir / "avatar.json").read_text())["default_camera"]
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
    ratio = result["animated"]["median_ms"] / max(result["static"]["median_ms"], 1e-6)
    return {**result, "ratio": ratio, "renderer": renderer, "frames": frames}
