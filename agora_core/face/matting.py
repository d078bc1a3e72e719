"""Portrait matting with MODNet's official ONNX export, through onnxruntime.

Follows MODNet's ``onnx/inference_onnx.py``: RGB normalised to (x - 127.5) / 127.5; resized with
INTER_AREA so that an image smaller or larger than 512 in both sides gets its shorter side to 512
(otherwise it keeps its size); both sides floored to multiples of 32; the matte resized back with
INTER_AREA. One deviation: the matte is resized as float and clipped to [0, 1] instead of being
quantised to uint8 first. GGHEAD/AGORA composite the matted image on white.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from agora_core.assets import require_asset
from agora_core.errors import AgoraError, file_error
from agora_core.face.detect import check_rgb_image

MODNET_REF_SIZE = 512  # `ref_size` of MODNet's ONNX inference script
MODNET_INPUT = "input"  # (B, 3, H, W) float32
MODNET_OUTPUT = "output"  # (B, 1, H, W) float32 in [0, 1]


def modnet_input_size(height: int, width: int, ref_size: int = MODNET_REF_SIZE) -> tuple[int, int]:
    """(height, width) MODNet runs at for an image of this size (``get_scale_factor`` logic)."""
    assert height > 0 and width > 0, (height, width)
    if max(height, width) < ref_size or min(height, width) > ref_size:
        if width >= height:
            rh, rw = ref_size, int(width / height * ref_size)
        else:
            rh, rw = int(height / width * ref_size), ref_size
    else:
        rh, rw = height, width
    return rh - rh % 32, rw - rw % 32


def modnet_preprocess(image_rgb: np.ndarray, ref_size: int = MODNET_REF_SIZE) -> np.ndarray:
    """RGB uint8 [H, W, 3] -> float32 [1, 3, h, w] in [-1, 1], h and w multiples of 32."""
    check_rgb_image(image_rgb)
    rh, rw = modnet_input_size(*image_rgb.shape[:2], ref_size=ref_size)
    if rh == 0 or rw == 0:
        raise AgoraError(f"image of {image_rgb.shape[1]}x{image_rgb.shape[0]} px is too small to matte (min 32 px)")
    x = (image_rgb.astype(np.float32) - 127.5) / 127.5
    x = cv2.resize(x, (rw, rh), interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(x.transpose(2, 0, 1)[None])


def composite_on_white(image_rgb: np.ndarray, matte: np.ndarray) -> np.ndarray:
    """``matte * image + (1 - matte) * 255``: [H, W, 3] uint8, [H, W] float in [0, 1] -> uint8."""
    check_rgb_image(image_rgb)
    assert matte.shape == image_rgb.shape[:2], (matte.shape, image_rgb.shape)
    alpha = matte.astype(np.float32)[..., None]
    out = alpha * image_rgb.astype(np.float32) + (1.0 - alpha) * 255.0
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def onnx_providers() -> list[str]:
    """CUDA execution provider when onnxruntime has it, then CPU."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    return [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]


class ModnetMatter:
    """MODNet ONNX matting: ``matter(image_rgb uint8 [H, W, 3]) -> matte float32 [H, W] in [0, 1]``."""

    def __init__(self, onnx_path: str | Path, providers: list[str] | None = None):
        import onnxruntime as ort

        self.path = Path(onnx_path)
        if not self.path.is_file():
            raise file_error(self.path, "MODNet ONNX file not found; pass --modnet PATH")
        options = ort.SessionOptions()
        options.log_severity_level = 3  # onnxruntime's warnings are not the user's problem
        try:
            self._session = ort.InferenceSession(
                str(self.path), sess_options=options, providers=providers or onnx_providers()
            )
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidProtobuf types
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            problem = f"not a loadable ONNX model ({first[:200]}); pass MODNet's ONNX export"
            raise file_error(self.path, problem) from None
        self._check_signature()

    @classmethod
    def from_asset(cls, explicit: str | Path | None = None) -> "ModnetMatter":
        """Load the file given by --modnet / $AGORA_MODNET / assets.yaml (one-line error if none)."""
        return cls(require_asset("modnet_onnx", explicit))

    def _check_signature(self) -> None:
        inputs = self._session.get_inputs()
        outputs = [o.name for o in self._session.get_outputs()]
        if len(inputs) != 1 or inputs[0].name != MODNET_INPUT or MODNET_OUTPUT not in outputs:
            raise file_error(
                self.path,
                f"not a MODNet ONNX export: expected one input '{MODNET_INPUT}' and an output "
                f"'{MODNET_OUTPUT}', found inputs {[i.name for i in inputs]}, outputs {outputs}; "
                "use modnet_photographic_portrait_matting.onnx from MODNet's onnx/ export",
            )
        shape = inputs[0].shape
        if len(shape) != 4 or (isinstance(shape[1], int) and shape[1] != 3):
            raise file_error(self.path, f"MODNet input must be (B, 3, H, W), found {shape}")

    def __call__(self, image_rgb: np.ndarray) -> np.ndarray:
        """RGB uint8 [H, W, 3] -> alpha matte float32 [H, W] in [0, 1] (1 = person)."""
        h, w = image_rgb.shape[:2]
        x = modnet_preprocess(image_rgb)
        (matte,) = self._session.run([MODNET_OUTPUT], {MODNET_INPUT: x})
        assert matte.shape == (1, 1) + x.shape[2:], (matte.shape, x.shape)
        matte = cv2.resize(matte[0, 0].astype(np.float32), (w, h), interpolation=cv2.INTER_AREA)
        return np.clip(matte, 0.0, 1.0)


__all__ = [
    "MODNET_REF_SIZE",
    "ModnetMatter",
    "composite_on_white",
    "modnet_input_size",
    "modnet_preprocess",
    "onnx_providers",
]
