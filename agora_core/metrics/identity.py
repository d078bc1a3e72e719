"""ID: identity consistency, the ArcFace cosine similarity of two renders of one identity (Table 1).

Recognition network: insightface's ``buffalo_l`` recognition model ``w600k_r50.onnx`` (user file,
run by onnxruntime). Its preprocessing follows insightface's ``ArcFaceONNX``: a 112² aligned RGB
crop, (x − 127.5) / 127.5 -- unless the graph's first nodes already subtract and multiply (old
MXNet exports), then raw 0..255 -- and the embedding is L2-normalised.

Alignment: insightface aligns a detected face's five landmarks to ArcFace's template. Our renders
are FFHQ-aligned (the dataset framing), so the landmarks sit where FFHQ alignment puts them and
the ArcFace crop is a fixed window (`arcface_window`), no detector needed.

Score: the authors report ``sqrt(mean cosine)`` (their evaluation script); we report the mean cosine and,
for comparison with the paper, its square root.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from agora_core.errors import file_error
from agora_core.face.crop import square_crop_transform, warp_crop
from agora_core.render.images import to_uint8_hwc

ARCFACE_SIZE = 112
# insightface's ArcFace template (112², arcface_dst): eyes, nose tip, mouth corners
ARCFACE_TEMPLATE = np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366],
                             [41.5493, 92.3655], [70.7299, 92.2041]])
# FFHQ alignment (recreate_aligned_images): crop side = max(2·eye-to-eye, 1.8·eye-to-mouth) · 2,
# centre = eye midpoint + 0.1·eye-to-mouth. With the template's proportions (eye-to-mouth 1.155 ×
# eye-to-eye) the 1.8·eye-to-mouth term wins: eye-to-mouth = side / 3.6, eyes at 0.5 − 0.1/3.6.
FFHQ_EYE_TO_MOUTH = 1 / 3.6  # fraction of the aligned image side
FFHQ_EYE_Y = 0.5 - 0.1 * FFHQ_EYE_TO_MOUTH


def arcface_window(resolution: int) -> tuple[float, float, float]:
    """(x0, y0, side) in pixels of the ArcFace 112² crop of an FFHQ-aligned ``resolution``² image:
    the similarity taking the template's eye midpoint to (0.5, FFHQ_EYE_Y)·R and its eye-to-mouth
    distance to FFHQ_EYE_TO_MOUTH·R (≈ the central 76 % of the image)."""
    eyes = ARCFACE_TEMPLATE[:2].mean(0)
    mouth = ARCFACE_TEMPLATE[3:].mean(0)
    scale = FFHQ_EYE_TO_MOUTH * resolution / float(np.linalg.norm(mouth - eyes))  # image px per template px
    x0 = 0.5 * resolution - scale * eyes[0]
    y0 = FFHQ_EYE_Y * resolution - scale * eyes[1]
    return x0, y0, scale * ARCFACE_SIZE


def arcface_crops(images: Tensor) -> np.ndarray:
    """[B, 3, R, R] float in [0, 1] (FFHQ-aligned) -> uint8 RGB [B, 112, 112, 3]."""
    assert images.ndim == 4 and images.shape[1] == 3 and images.shape[2] == images.shape[3], images.shape
    x0, y0, side = arcface_window(images.shape[2])
    # window corners in [0, R] -> OpenCV pixel-centre coordinates (crop.py): shift by -0.5
    transform = square_crop_transform((x0 + side / 2 - 0.5, y0 + side / 2 - 0.5), side, ARCFACE_SIZE)
    rgb = to_uint8_hwc(images)
    return np.stack([warp_crop(img, transform) for img in rgb])


class ArcFaceEmbedder:
    """ArcFace recognition ONNX model: ``embed(images [B, 3, R, R] in [0, 1]) -> [B, D]`` unit
    embeddings (rows of NaN where the network output was not finite)."""

    def __init__(self, path: str | Path, device: str | torch.device = "cpu"):
        import onnx
        import onnxruntime as ort

        path = Path(path)
        if not path.is_file():
            raise file_error(path, "ArcFace model not found; pass --arcface PATH (insightface buffalo_l w600k_r50.onnx)")
        try:
            graph = onnx.load(str(path)).graph
            providers = ["CPUExecutionProvider"]
            if torch.device(device).type == "cuda" and "CUDAExecutionProvider" in ort.get_available_providers():
                providers.insert(0, "CUDAExecutionProvider")
            self.session = ort.InferenceSession(str(path), providers=providers)
        except Exception as exc:  # noqa: BLE001 - any parse/load failure
            raise file_error(path, f"not a loadable ONNX model ({type(exc).__name__}); --arcface") from None
        inp = self.session.get_inputs()[0]
        if len(inp.shape) != 4 or list(inp.shape[1:]) != [3, ARCFACE_SIZE, ARCFACE_SIZE]:
            raise file_error(path, f"input {inp.shape} is not [B, 3, 112, 112]; pass ArcFace's w600k_r50.onnx")
        self.input_name = inp.name
        self.output_name = self.session.get_outputs()[0].name
        # insightface's rule: a graph that starts by subtracting and multiplying normalises itself
        names = [n.name for n in graph.node[:8]]
        normalises = (any(n.startswith(("Sub", "_minus")) for n in names)
                      and any(n.startswith(("Mul", "_mul")) for n in names))
        self.input_mean, self.input_std = (0.0, 1.0) if normalises else (127.5, 127.5)
        self.path = path

    def embed(self, images: Tensor, batch: int = 32) -> Tensor:
        crops = arcface_crops(images)  # RGB, as insightface's blobFromImages(swapRB=True) feeds it
        out = []
        for i in range(0, len(crops), batch):
            blob = (crops[i : i + batch].astype(np.float32) - self.input_mean) / self.input_std
            feats = self.session.run([self.output_name], {self.input_name: blob.transpose(0, 3, 1, 2).copy()})[0]
            out.append(torch.from_numpy(np.asarray(feats, dtype=np.float32)))
        feats = torch.cat(out)
        return feats / feats.norm(dim=1, keepdim=True).clamp_min(1e-12)


def pair_cosines(a: Tensor, b: Tensor) -> Tensor:
    """Row-wise cosine similarity of unit embeddings a, b [N, D] -> [N]."""
    assert a.shape == b.shape and a.ndim == 2, (a.shape, b.shape)
    return (a * b).sum(dim=1)


def id_scores(cosines: Tensor) -> dict[str, float | int]:
    """Mean cosine over the finite pairs, sqrt of it (the authors' reported ID), pair counts."""
    ok = torch.isfinite(cosines)
    mean = float(cosines[ok].double().mean()) if ok.any() else float("nan")
    return {"mean_cosine": mean, "paper_id": math.sqrt(mean) if mean >= 0 else float("nan"),
            "pairs": int(cosines.numel()), "failed": int((~ok).sum())}


__all__ = ["ARCFACE_SIZE", "ArcFaceEmbedder", "arcface_crops", "arcface_window", "id_scores", "pair_cosines"]
