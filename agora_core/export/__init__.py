"""Export (paper appendix 0.B.2.2): ONNX of AGORA's per-frame deformation path, and the static WebGL2
AGORA-M viewer bundle (neutral Gaussians + int16 fixed-point blendshapes + coefficient MLP, animated on the GPU).

- `onnx_export`: `DeformationLifting` (G_d + UV sampling + lifting as one module), ONNX export, parity.
- `web_bundle`: `write_web_bundle` (the bundle format: module docstring); viewer files in `web/`.
- `sources`: a training checkpoint + seed, or an avatar.pt -> generator, identity cache, neutral, w.
- `exporters`: what `agora export onnx|web|ply|splat|spz` run (AGORA-M files read with `mobile.GaussianBasis`/`CoefficientMLP`).
- `web_server`, `browser`, `browser_bench`: serving, headless Chromium over CDP, the frame-time benchmark.
- `demo_avatar`: an AGORA-M avatar of the procedural demo head (tests, benchmark, screenshots).
"""

from agora_core.export.browser_bench import run_browser_benchmark
from agora_core.export.exporters import OnnxReport, export_neutral, export_onnx, export_web
from agora_core.export.onnx_export import DeformationLifting, check_onnx_parity, export_deformation_onnx
from agora_core.export.web_bundle import write_web_bundle
from agora_core.export.web_server import BundleServer, serve_bundle

__all__ = [
    "BundleServer", "DeformationLifting", "OnnxReport", "check_onnx_parity", "export_deformation_onnx",
    "export_neutral", "export_onnx", "export_web", "run_browser_benchmark", "serve_bundle", "write_web_bundle",
]  # fmt: skip
