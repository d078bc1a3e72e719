"""`agora doctor`: what this installation can do, and which real assets are present.

Pure data collection; the CLI formats it. Nothing here downloads or compiles anything.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass, field

from agora_core.assets import ASSETS, ResolvedAsset, resolve_asset


@dataclass
class Check:
    name: str
    ok: bool
    detail: str


@dataclass
class DoctorReport:
    runtime: list[Check] = field(default_factory=list)
    assets: list[ResolvedAsset] = field(default_factory=list)
    asset_problems: dict[str, str] = field(default_factory=dict)  # asset key -> one-line error
    demo_ready: bool = False
    demo_detail: str = ""


def validate_assets(found: dict[str, ResolvedAsset]) -> dict[str, str]:
    """Load every asset that was found, the way the stages will; one-line problems by key."""
    from agora_core.errors import AgoraError

    problems: dict[str, str] = {}

    def check(key: str, load):
        try:
            return load()
        except AgoraError as exc:
            problems[key] = str(exc)
            return None

    pkl, obj = found.get("flame_pkl"), found.get("flame_uv_obj")
    num_vertices = None  # of the FLAME model, which the eyelid blendshapes must fit
    if pkl and obj:
        from agora_core.head.flame_io import flame_assets_from_pickle

        assets = check("flame_pkl", lambda: flame_assets_from_pickle(pkl.path, obj.path))
        num_vertices = assets.num_vertices if assets is not None else None
    elif pkl:
        from agora_core.head.flame_io import load_flame_pickle

        data = check("flame_pkl", lambda: load_flame_pickle(pkl.path))
        num_vertices = len(data["v_template"]) if data is not None and "v_template" in data else None
    if "flame_eyelids" in found:
        from agora_core.head.flame_io import load_eyelid_blendshapes

        check("flame_eyelids", lambda: load_eyelid_blendshapes(found["flame_eyelids"].path, num_vertices))
    if "smirk_ckpt" in found:
        from agora_core.face.smirk import load_smirk_encoder

        check("smirk_ckpt", lambda: load_smirk_encoder(found["smirk_ckpt"].path))
    if "modnet_onnx" in found:
        from agora_core.face.matting import ModnetMatter

        check("modnet_onnx", lambda: ModnetMatter(found["modnet_onnx"].path))
    if "perceptual_weights" in found:
        from agora_core.invert.lpips_distance import read_backbone_state

        check("perceptual_weights", lambda: read_backbone_state(found["perceptual_weights"].path))
    return problems


def _lpips_check(report: DoctorReport) -> Check:
    """Whether invert's perceptual term is real LPIPS (package + backbone file), and what it falls back to."""
    from agora_core.invert.lpips_distance import lpips_available, read_backbone_state

    usable, detail = lpips_available()
    weights = next((res for res in report.assets if res.spec.key == "perceptual_weights"), None)
    if weights is None or not weights.found or "perceptual_weights" in report.asset_problems:
        return Check("LPIPS", False, f"{detail}; no usable backbone file (--perceptual-weights): invert uses L2 + SSIM")
    net = read_backbone_state(weights.path)[0]
    if not usable:
        fallback = "the uncalibrated VGG16 distance" if net == "vgg" else "nothing (AlexNet needs lpips)"
        return Check("LPIPS", False, f"{detail}: invert uses {fallback}")
    stop = "PTI's 0.06 stop applies" if net == "alex" else "calibrated, but PTI's 0.06 stop was set on AlexNet: off"
    return Check("LPIPS", True, f"real LPIPS ({detail} heads, {'AlexNet' if net == 'alex' else 'VGG16'} backbone "
                                f"from {weights.path}); {stop}")


def _torch_checks() -> list[Check]:
    checks = [Check("python", True, platform.python_version())]
    try:
        import torch
    except Exception as exc:  # the one thing the toolkit cannot run without
        return checks + [Check("torch", False, f"import failed: {exc}")]
    checks.append(Check("torch", True, f"{torch.__version__}, {torch.get_num_threads()} CPU threads"))
    if torch.cuda.is_available():
        names = ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
        checks.append(Check("CUDA", True, f"{torch.cuda.device_count()} device(s): {names}"))
    else:
        checks.append(Check("CUDA", False, "not available: training and rendering run on the CPU backend"))
    return checks


def _gsplat_check() -> Check:
    from agora_core.render import gsplat_status

    usable, reason = gsplat_status()
    return Check("gsplat", usable, reason)


def _cpu_rasterizer_check() -> Check:
    from agora_core.render.rasterizer_numba import numba, numba_available

    if numba_available():
        return Check("CPU rasterizer", True, f"numba {numba.__version__}: compiled kernels (rasterize backend 'auto' on CPU)")
    return Check("CPU rasterizer", True, "numba not importable: the pure-PyTorch path is used (same images, ~5-30x slower)")


def _face_detector_check() -> Check:
    """Which backend prep-data/invert/reenact detect faces with (both work; mediapipe is SMIRK's own)."""
    from agora_core.face.detect import mediapipe_available

    if mediapipe_available():
        import mediapipe

        return Check("face detector", True, f"mediapipe {getattr(mediapipe, '__version__', '?')} face mesh "
                                            "(SMIRK's own crop landmarks)")
    return Check("face detector", True, "OpenCV Haar cascade, its box mapped to mediapipe's landmark box by "
                                        "measured factors; mediapipe 0.10.21 (not a dependency) gives SMIRK's own crops")


def _demo_check() -> tuple[bool, str]:
    """The demo runs when the procedural head builds and goes through the FLAME-format loader."""
    try:
        from agora_core.head import demo_head_model

        head = demo_head_model(mouth_interior=True)
    except Exception as exc:
        return False, f"demo head failed to build: {type(exc).__name__}: {exc}"
    return True, (f"demo head ready ({head.num_vertices} vertices with the mouth interior, "
                  f"{head.num_shape} shape / {head.num_expr} expression components)")


def collect_report(explicit: dict[str, str | None] | None = None) -> DoctorReport:
    """Runtime checks, asset lookup (flags > env > assets.yaml) and demo readiness."""
    explicit = explicit or {}
    report = DoctorReport()
    report.runtime = _torch_checks()
    report.runtime.append(_gsplat_check())
    report.runtime.append(_cpu_rasterizer_check())
    report.runtime.append(_face_detector_check())
    report.assets = [resolve_asset(key, explicit.get(key)) for key in ASSETS]
    report.asset_problems = validate_assets({res.spec.key: res for res in report.assets if res.found})
    report.runtime.append(_lpips_check(report))
    report.demo_ready, report.demo_detail = _demo_check()
    return report
