"""Shared pieces of the tests/test_metrics_*.py modules (no tests here): stand-in networks with the
interfaces of the real ones (Inception features, ArcFace ONNX, a FLAME tracker) and a tiny
checkpoint written with the train stage's save function."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from test_train_fixtures import cached_build_head, tiny_config, write_tiny_dataset


class StandInFeatures(nn.Module):
    """Stand-in of the Inception feature network: uint8 [B, 3, H, W] -> float [B, 64].

    Fixed random convolutions over a 64² resize, then global mean and std pooling -- enough to
    tell image distributions apart, at a tiny fraction of Inception's cost."""

    def __init__(self, seed: int = 0):
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.conv1 = nn.Conv2d(3, 16, 3, stride=2)
        self.conv2 = nn.Conv2d(16, 32, 3, stride=2)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=gen) * 0.3)

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        assert images.dtype == torch.uint8 and images.ndim == 4 and images.shape[1] == 3
        x = nn.functional.interpolate(images.float() / 127.5 - 1, size=(64, 64), mode="bilinear", align_corners=False)
        x = torch.relu(self.conv2(torch.relu(self.conv1(x))))
        return torch.cat([x.mean(dim=(2, 3)), x.std(dim=(2, 3))], dim=1)


def write_tiny_arcface_onnx(path: Path, normalising_prefix: bool = False, seed: int = 0) -> Path:
    """An ONNX model with ArcFace's signature: input [B, 3, 112, 112] float -> output [B, 512].

    AveragePool 14×14 (-> [B, 3, 8, 8]), Flatten, MatMul with a fixed random [192, 512]. With
    `normalising_prefix` the graph starts with Sub and Mul nodes (an old MXNet-style export that
    normalises its input itself)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    weight = numpy_helper.from_array(rng.normal(size=(192, 512)).astype(np.float32), "W")
    nodes, src = [], "input.1"
    inits = [weight]
    if normalising_prefix:
        inits += [numpy_helper.from_array(np.array(127.5, np.float32), "mean"),
                  numpy_helper.from_array(np.array(1 / 127.5, np.float32), "scale")]
        nodes += [helper.make_node("Sub", [src, "mean"], ["sub_out"], name="Sub_0"),
                  helper.make_node("Mul", ["sub_out", "scale"], ["mul_out"], name="Mul_1")]
        src = "mul_out"
    nodes += [helper.make_node("AveragePool", [src], ["pooled"], kernel_shape=[14, 14], strides=[14, 14], name="pool"),
              helper.make_node("Flatten", ["pooled"], ["flat"], axis=1, name="flatten"),
              helper.make_node("MatMul", ["flat", "W"], ["683"], name="fc")]
    graph = helper.make_graph(
        nodes, "tiny_arcface",
        [helper.make_tensor_value_info("input.1", TensorProto.FLOAT, ["None", 3, 112, 112])],
        [helper.make_tensor_value_info("683", TensorProto.FLOAT, ["None", 512])], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def write_tiny_checkpoint(root: Path, n_images: int = 8, resolution: int = 16, **overrides) -> tuple[Path, Path]:
    """(checkpoint, dataset): the tiny training config's G saved with the train stage's
    `save_checkpoint` (as the loop writes it: G_ema, config, sampling defaults), and its dataset."""
    from agora_core.train.build import build_models
    from agora_core.train.checkpoint import save_checkpoint
    from agora_core.run_config import config_to_dict
    from agora_core.train.evaluation import sampling_defaults
    from agora_core.data.conditions import ConditionSampler
    from agora_core.data.format import read_dataset_index

    data = write_tiny_dataset(root / "data", n=n_images, resolution=resolution)
    config = tiny_config(resolution=resolution, **overrides)
    head = cached_build_head(config.head)
    torch.manual_seed(0)
    G, D = build_models(config, head)
    conditions = ConditionSampler(read_dataset_index(data), xflip=False, seed=0)
    path = save_checkpoint(root / "run" / "checkpoints" / "kimg000000.004.pt", {
        "G": G.state_dict(), "G_ema": G.state_dict(), "D": D.state_dict(), "step": 1, "nimg": 4, "kimg": 0.004,
        "world_size": 1, "config": config_to_dict(config), "head_model": head.model_id,
        "sampling": sampling_defaults(conditions)})
    return path, data


class NoisyTruthTracker:
    """Stand-in tracker: returns the true parameters of the frames it is shown (known in advance,
    in protocol order) plus fixed noise; rows listed in `fail_rows` come back as NaN."""

    def __init__(self, truth: dict[str, torch.Tensor], noise: dict[str, torch.Tensor], fail_rows=()):
        self.truth, self.noise, self.fail_rows, self.seen = truth, noise, set(fail_rows), 0

    def track(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        b = images.shape[0]
        rows = slice(self.seen, self.seen + b)
        out = {k: (v[rows] + self.noise[k][rows]).clone() for k, v in self.truth.items()}
        for i in range(b):
            if self.seen + i in self.fail_rows:
                for v in out.values():
                    v[i] = float("nan")
        self.seen += b
        return out
