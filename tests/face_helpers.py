"""Test data for the face/ tests: toy MODNet-format ONNX models, the astronaut photo, SMIRK."""

from __future__ import annotations

import functools
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
import torch
from format_fixtures import FIXTURES
from onnx import TensorProto, helper

SMIRK_FIXTURE = FIXTURES / "smirk_em1_format_random.pt"
SMIRK_FIXTURE_IO = FIXTURES / "smirk_em1_format_random_io.pt"

# Where the astronaut's face is in skimage.data.astronaut() (512², checked by eye).
ASTRONAUT_FACE_X = (150.0, 250.0)
ASTRONAUT_FACE_Y = (40.0, 180.0)


def astronaut() -> np.ndarray:
    """skimage's astronaut photo, RGB uint8 [512, 512, 3]."""
    from skimage import data

    return data.astronaut()


def write_astronaut_video(path: Path, frames: int, dx: int, dy: int = 0) -> Path:
    """A 10 fps mp4 of the astronaut's 384² head-and-shoulders crop, frame i rolled by (dx·i, dy·i) px."""
    from agora_core.invert.video_io import Mp4Writer

    photo = astronaut()[:384, 64:448]
    with Mp4Writer(path, 10) as w:
        for i in range(frames):
            w.append(np.roll(np.roll(photo, dx * i, axis=1), dy * i, axis=0))
        w.finish()
    return path


def write_mean_sigmoid_onnx(path: Path, input_name: str = "input", output_name: str = "output") -> Path:
    """A MODNet-format ONNX model computing ``sigmoid(mean over channels)``: (B, 3, H, W) float32
    -> (B, 1, H, W), dynamic batch/height/width, like the official export's signature."""
    x = helper.make_tensor_value_info(input_name, TensorProto.FLOAT, ["batch", 3, "height", "width"])
    y = helper.make_tensor_value_info(output_name, TensorProto.FLOAT, ["batch", 1, "height", "width"])
    nodes = [
        helper.make_node("ReduceMean", [input_name], ["mean"], axes=[1], keepdims=1),
        helper.make_node("Sigmoid", ["mean"], [output_name]),
    ]
    graph = helper.make_graph(nodes, "toy_modnet", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8  # readable by any onnxruntime from 1.10 on
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def toy_matte(image_rgb: np.ndarray) -> np.ndarray:
    """What the toy model gives at full resolution: sigmoid(mean((x - 127.5) / 127.5)), [H, W]."""
    x = (image_rgb.astype(np.float64) - 127.5) / 127.5
    return 1.0 / (1.0 + np.exp(-x.mean(axis=2)))


@functools.lru_cache(maxsize=1)
def smirk_estimator():
    """`SmirkEstimator` with the random-weight fixture in SMIRK_em1.pt's layout (built once)."""
    from agora_core.face.smirk import SmirkEstimator

    return SmirkEstimator(SMIRK_FIXTURE)


@pytest.fixture(scope="module", autouse=True)
def one_thread_per_module():
    """One torch/OpenCV thread for a module (import it into the test module to switch it on): the
    models are tiny per call, and other test runs share the cores."""
    torch_threads, cv2_threads = torch.get_num_threads(), cv2.getNumThreads()
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    yield
    torch.set_num_threads(torch_threads)
    cv2.setNumThreads(cv2_threads)
