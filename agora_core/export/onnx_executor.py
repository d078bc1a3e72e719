"""ONNX Runtime as the executor of AGORA's per-frame path (`agora bench|reenact --executor`).

`AgoraGenerator.animate` per frame is FLAME (LBS), the deformation branch G_d, the UV sampling and
the lifting (sec. 3.4-3.5). `OnnxAnimator` runs FLAME in torch, batched as `animate` does (neck and
eyes included), and the rest as the graph of `onnx_export.DeformationLifting` in ONNX Runtime, one
row at a time (the graph has batch 1). The graph is exported at start-up from the generator in
memory into a temporary folder, read back and the folder removed: nothing is cached or downloaded,
and a model whose weights change (PTI) is exported again by whoever builds a new animator. The
identity's tensors (tap features, styles, raw identity attributes) are the graph's inputs, converted
once; colour is not animated (sec. 3.4), so the SH coefficients are the identity's, computed once
by `lifting.canonical_gaussians` as `animate` computes them.

Same Gaussians as `animate` up to float32 rounding (the convolutions and GridSample sum in another
order; tests/test_export_onnx_executor.py). Noise is each layer's constant buffer ("const"), as
reenactment and the benchmark run; float32 only (no `deform_dtype`), so `--precision`
(`devices.resolve_precision`) and `--executor` are decided together by `build_per_frame_path`.

Executors: "torch" (`animate`; inside `torch.inference_mode` its inference formulation,
models/stylegan2_inference.py), "onnxruntime" (this module; an `AgoraError` where it cannot run)
and "auto": ONNX Runtime on a CPU when it imports and the model exports, else torch. Measured on
this project's 2 shared cores (README, "ONNX Runtime as the executor"): see `DEFAULT_EXECUTOR`.
"""

from __future__ import annotations

import importlib
import tempfile
import warnings
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from agora_core.devices import resolve_precision
from agora_core.errors import AgoraError, AgoraWarning
from agora_core.gaussians import GaussianSet
from agora_core.head import FlameParams
from agora_core.models.agora_generator import AgoraGenerator, IdentityCache
from agora_core.models.lifting import canonical_gaussians

Executor = Literal["torch", "onnxruntime", "auto"]
EXECUTORS: tuple[str, ...] = ("torch", "onnxruntime", "auto")
DEFAULT_EXECUTOR: Executor = "torch"


def onnxruntime_available() -> bool:
    """Whether `import onnxruntime` works (a core dependency, but a broken install should not stop torch)."""
    try:
        importlib.import_module("onnxruntime")
    except Exception:  # noqa: BLE001  an ImportError, or a wheel whose native library fails to load
        return False
    return True


def onnx_session(path_or_bytes: str | Path | bytes, threads: int | None = None):
    """An ONNX Runtime CPU session on `threads` intra-op threads (default: torch's), one inter-op thread.

    Its idle threads do not spin: the rasterizer's threads run right after each frame, and on a
    shared machine a spinning pool takes their core."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads or torch.get_num_threads()
    opts.inter_op_num_threads = 1
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.log_severity_level = 3  # onnxruntime's warnings are not the user's problem
    model = path_or_bytes if isinstance(path_or_bytes, bytes) else str(path_or_bytes)
    return ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])


class OnnxAnimator:
    """`generator.animate(cache, …, noise_mode="const")` with G_d + lifting in ONNX Runtime (module docstring).

    Args:
        generator: a model with a deformation branch, on the CPU.
        cache: one identity (batch 1), from `generator.identity`.
        threads: ONNX Runtime's intra-op threads (default: torch's thread count).
    """

    def __init__(self, generator: AgoraGenerator, cache: IdentityCache, threads: int | None = None):
        from agora_core.export.onnx_export import OUTPUT_NAMES, export_deformation_onnx, input_names

        assert cache.batch_size == 1, cache.batch_size
        self.generator, self.cache = generator, cache.detach()
        with tempfile.TemporaryDirectory(prefix="agora-onnx-") as tmp:
            path = export_deformation_onnx(generator, self.cache, Path(tmp) / "deform.onnx")
            graph = path.read_bytes()
        self.session = onnx_session(graph, threads)
        self.outputs = list(OUTPUT_NAMES)
        c = self.cache
        self._identity = {"tap_features": c.tap_features, "ws": c.ws, "raw_main": c.raw_main}
        if "tap_skip_image" in input_names(generator):
            self._identity["tap_skip_image"] = c.tap_skip_image
        self._identity = {k: v.float().cpu().numpy() for k, v in self._identity.items()}
        with torch.no_grad():  # colour is the identity's: the canonical SH of `animate` (any anchor points)
            self.sh = canonical_gaussians(c.raw_main, c.raw_main.new_zeros(1, generator.num_gaussians, 3),
                                          generator.config).sh

    def animate(self, flame: FlameParams) -> GaussianSet:
        """Posed Gaussians [B, N] for B frames of FLAME parameters, as `AgoraGenerator.animate`."""
        g, b = self.generator, flame.batch_size
        with torch.no_grad():  # FLAME in torch, the whole batch at once
            mesh = g.head(flame.replace(shape=self.cache.shape.expand(b, -1)))
            points = g.mesh_points(mesh).float().cpu().numpy()
        graph_inputs = flame.padded(n_expr=g.config.expr_cond_dim)
        expr, jaw, lids = (x.float().cpu().numpy() for x in (graph_inputs.expression, flame.jaw, flame.eyelids))
        rows = [self.session.run(self.outputs, {**self._identity, "mesh_points": points[i:i + 1],
                                                "expression": expr[i:i + 1], "jaw": jaw[i:i + 1],
                                                "eyelids": lids[i:i + 1]}) for i in range(b)]
        means, log_scales, quats, opacities = (torch.from_numpy(np.concatenate(parts)) for parts in zip(*rows))
        return GaussianSet(means, log_scales, quats, self.sh.expand(b, *self.sh.shape[1:]), opacities)


def check_executor(executor: str) -> str:
    """`executor` if it is one of `EXECUTORS`, else an `AgoraError` naming --executor."""
    if executor not in EXECUTORS:
        raise AgoraError(f"--executor {executor!r}: choose one of {', '.join(EXECUTORS)}")
    return executor


def _why_not(generator: AgoraGenerator, cache: IdentityCache, device: torch.device) -> str | None:
    """Why ONNX Runtime cannot run this model here (the flag's fix), or None when it can."""
    if device.type != "cpu":
        return f"it runs on the CPU, not {device.type}; use --device cpu or --executor torch"
    if generator.deformation_branch is None:
        return "this is a single-branch model (no deformation branch to export); use --executor torch"
    if cache.batch_size != 1:
        return f"it animates one identity at a time, not {cache.batch_size}; use --executor torch"
    if not onnxruntime_available():
        return "onnxruntime does not import; reinstall it (pip install onnxruntime) or use --executor torch"
    return None


def build_animator(executor: str, generator: AgoraGenerator, cache: IdentityCache,
                   device: torch.device | str = "cpu", threads: int | None = None) -> OnnxAnimator | None:
    """The ONNX Runtime animator `executor` asks for, or None for torch's `animate`.

    "onnxruntime" where it cannot run is an `AgoraError` naming --executor; "auto" then (or when the
    export fails) falls back to torch, with an `AgoraWarning` for a failed export.
    """
    if check_executor(executor) == "torch":
        return None
    reason = _why_not(generator, cache, torch.device(device))
    if reason is not None:
        if executor == "onnxruntime":
            raise AgoraError(f"--executor onnxruntime: {reason}")
        return None
    if executor == "onnxruntime":
        return OnnxAnimator(generator, cache, threads)
    try:
        return OnnxAnimator(generator, cache, threads)
    except Exception as exc:  # noqa: BLE001  auto: any failure of the exporter or the runtime means torch
        warnings.warn(f"--executor auto: the ONNX export failed ({type(exc).__name__}: {exc}); animating with torch",
                      AgoraWarning, stacklevel=2)
        return None


def check_precision(precision: str, executor: str) -> str:
    """`precision` if it is one of `devices.PRECISIONS` and can run with `executor`: ONNX Runtime runs
    float32 only, so an explicit bfloat16 with an explicit onnxruntime is an `AgoraError`."""
    resolve_precision(precision, "cpu")  # the value's check
    if check_executor(executor) == "onnxruntime" and precision == "bfloat16":
        raise AgoraError("--precision bfloat16 with --executor onnxruntime: ONNX Runtime runs float32 only; "
                         "drop one of them")
    return precision


def build_per_frame_path(executor: str, precision: str, generator: AgoraGenerator, cache: IdentityCache,
                         device: torch.device | str = "cpu",
                         threads: int | None = None) -> tuple[OnnxAnimator | None, torch.dtype | None]:
    """What runs AGORA's per-frame path: (the ONNX Runtime animator or None for torch's `animate`, the
    `deform_dtype` torch's `animate` takes).

    A bfloat16 precision (asked for, or "auto"'s choice) needs torch: "auto" executor then means torch;
    an explicit "onnxruntime" wins over precision "auto" (float32) and conflicts with "bfloat16"
    (`check_precision`).
    """
    dtype = resolve_precision(check_precision(precision, executor), device)
    if dtype is not None and executor == "onnxruntime":
        dtype = None  # precision auto: the explicit executor wins, in float32
    if dtype is not None:
        return None, dtype
    return build_animator(executor, generator, cache, device, threads), None
