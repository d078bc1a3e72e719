"""`agora train-tracker`: a FLAME tracker for the demo head, so AED/APD (and driving avatars from
videos of the demo world) work offline without SMIRK's weights.

The network is SMIRK's encoder itself (`SmirkEncoder`: three timm MobileNetV3 backbones built
with pretrained=False, global pooling, linear heads), trained from scratch on a synthetic
dataset's images, whose labels are exact: expression (first 50), jaw, eyelids, shape (the head
model's coefficients), the head pose (inverse camera rotation composed with the neck, see
`tracking.head_pose_label`) and SMIRK's weak-perspective camera of the crop.

Input: the SMIRK crop (1.4 × the face box, taken where FFHQ alignment puts the face -- the same
crop `EncoderTracker` takes at evaluation) at `input_size`² instead of SMIRK's 224²: the backbones
are fully convolutional with global pooling, so any size works. By default the size follows the
images (`auto_input_size`: 64² for the 64² demo images, whose crop spans ~54 source pixels);
fwd+bwd costs ~1.3 GFLOP per image at 64², 5.3 at 128², 16 at 224².
The checkpoint is the plain encoder state dict `load_smirk_encoder` reads (so every command that
accepts SMIRK_em1.pt accepts it); the input size and provenance go into the ``.json`` sidecar.
A tracker trained at 64² should be fed 64² crops (the sidecar says so; `load_tracker` honours
it); for a consumer that always feeds 224² crops, train with ``--input-size 224``.

Loss: per group, MSE divided by the group's label variance on the training split (floored), so
the 50 expression coefficients do not drown the 3 jaw angles. Reported: held-out RMSE per group
next to the predict-the-training-mean baseline.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from torch import Tensor

from agora_core.data.format import read_dataset_index
from agora_core.data.torch_dataset import load_image_rgb
from agora_core.errors import AgoraError
from agora_core.head import FlameParams
from agora_core.face.smirk import NUM_EXPRESSION, NUM_EYELIDS, NUM_JAW, NUM_SHAPE, SmirkEncoder
from agora_core.metrics.tracking import (
    TrackerInfo, crop_for_tracker, save_tracker, smirk_crop_window, tracking_targets, weak_perspective_label,
)

# encoder output key of each trained group
GROUP_OUTPUTS = {"expression": "expression_params", "jaw": "jaw_params", "eyelids": "eyelid_params",
                 "pose": "pose_params", "shape": "shape_params", "cam": "cam"}
VARIANCE_FLOOR = 1e-2  # groups with (nearly) constant labels, e.g. the camera, get at most this weight


@dataclass(frozen=True)
class TrackerTrainConfig:
    """Training settings of the demo-head tracker."""

    steps: int = 1500  # optimiser steps
    batch: int = 32  # images per step
    input_size: int = 0  # crop side fed to the encoder (SMIRK: 224); 0 = auto (`auto_input_size`)
    lr: float = 1e-3  # Adam learning rate, cosine-decayed to 5 % over the run
    holdout: float = 0.1  # fraction of the dataset kept out of training for the reported RMSE
    seed: int = 0  # split, batches, weights, augmentation
    colour_jitter: float = 0.1  # per-channel gain/offset jitter (robustness to the GAN's colours)
    shape: bool = True  # also train the shape backbone (ASD); off saves ~45 % of the compute

    def __post_init__(self) -> None:
        for name in ("steps", "batch"):
            if getattr(self, name) <= 0:
                raise AgoraError(f"--{name} must be positive, got {getattr(self, name)}")
        if self.input_size != 0 and not 32 <= self.input_size <= 512:
            raise AgoraError(f"--input-size {self.input_size}: expected 32..512")
        if not 0 <= self.holdout < 1:
            raise AgoraError(f"--holdout {self.holdout}: expected a fraction in [0, 1)")


def auto_input_size(resolution: int) -> int:
    """The SMIRK crop's side in source pixels, rounded up to a multiple of 32, within 64..224: no
    upsampling beyond the information the images have (64² demo images -> 64)."""
    (_, _), side = smirk_crop_window(resolution)
    return int(min(224, max(64, 32 * math.ceil(side / 32))))


@dataclass
class TrackerReport:
    """What training achieved on the held-out images."""

    path: Path
    input_size: int
    heldout_images: int
    rmse: dict[str, float]  # group -> held-out RMSE of the tracker
    baseline_rmse: dict[str, float]  # group -> held-out RMSE of predicting the training mean
    seconds: float


def load_training_set(data: str | Path, input_size: int) -> tuple[Tensor, dict[str, Tensor], str, int]:
    """Crops uint8 [N, 3, S, S] and targets (dicts of [N, D]) of a dataset folder; its head model
    id and the number of shape coefficients trained."""
    index = read_dataset_index(data)
    n, res = len(index), index.header.resolution
    images = np.stack([load_image_rgb(Path(data) / f) for f in index.files])
    if images.shape[1:3] != (res, res):
        raise AgoraError(f"{Path(data) / 'dataset.json'}: images are {images.shape[2]}x{images.shape[1]}, "
                         f"header says {res}")
    crops = torch.cat([(crop_for_tracker(images[i : i + 64], input_size) * 255).round().to(torch.uint8)
                       for i in range(0, n, 64)])
    cameras = torch.from_numpy(index.cameras)
    flame = FlameParams.from_dict(index.flame)
    num_shape = min(flame.num_shape, NUM_SHAPE)
    targets = tracking_targets(cameras, flame, num_shape)
    targets["cam"] = weak_perspective_label(cameras, res).float()
    return crops, targets, index.header.head_model, num_shape


def _forward(encoder: SmirkEncoder, images: Tensor, num_shape: int, clamp: bool = True) -> dict[str, Tensor]:
    """Encoder outputs per group; the shape backbone runs only when shape is trained (num_shape > 0).

    With ``clamp=False`` (training) the expression head's outputs are taken before SMIRK's clamps
    (eyelids to [0, 1], jaw x through relu, jaw y/z to ±0.2): trained from scratch, a clamped
    output that starts out of range gets no gradient and stays dead. The labels lie inside the
    ranges, so the clamped forward used at evaluation agrees once training fits them."""
    out = dict(encoder.pose_encoder(images))
    if clamp:
        out.update(encoder.expression_encoder(images))
    else:
        head = encoder.expression_encoder
        raw = head.expression_layers(head.encoder(images)[-1].mean(dim=(2, 3)))  # SMIRK's pooled features
        out["expression_params"], out["eyelid_params"], out["jaw_params"] = raw.split(
            [NUM_EXPRESSION, NUM_EYELIDS, NUM_JAW], dim=1)
    if num_shape > 0:
        out.update(encoder.shape_encoder(images))
    return {g: out[k][:, :num_shape] if g == "shape" else out[k] for g, k in GROUP_OUTPUTS.items() if k in out}


def _jitter(x: Tensor, amount: float, gen: torch.Generator) -> Tensor:
    """Per-image, per-channel gain and offset in ±amount (images in [0, 1])."""
    if amount <= 0:
        return x
    b = x.shape[0]
    gain = 1 + amount * (2 * torch.rand(b, 3, 1, 1, generator=gen) - 1)
    offset = amount * (2 * torch.rand(b, 3, 1, 1, generator=gen) - 1)
    return (x * gain + offset).clamp(0, 1)


@torch.no_grad()
def predict(encoder: SmirkEncoder, crops: Tensor, num_shape: int, batch: int = 64) -> dict[str, Tensor]:
    """Encoder outputs per group for uint8 crops [N, 3, S, S] (eval mode)."""
    encoder.eval()
    parts = [_forward(encoder, crops[i : i + batch].float() / 255, num_shape) for i in range(0, len(crops), batch)]
    return {g: torch.cat([p[g] for p in parts]) for g in parts[0]}


def group_rmse(pred: dict[str, Tensor], truth: dict[str, Tensor]) -> dict[str, float]:
    """RMSE over samples × dims per group of `pred`."""
    return {g: float((pred[g].double() - truth[g].double()).pow(2).mean().sqrt()) for g in pred}


def train_tracker(data: str | Path, out: str | Path, config: TrackerTrainConfig = TrackerTrainConfig(), *,
                  progress: bool = True) -> TrackerReport:
    """Train the demo-head tracker on the dataset folder `data`; write `out` (+ ``.json``)."""
    t0 = time.perf_counter()
    input_size = config.input_size or auto_input_size(read_dataset_index(data).header.resolution)
    crops, targets, head_model, num_shape = load_training_set(data, input_size)
    if not config.shape:
        num_shape = 0
        del targets["shape"]
    n = crops.shape[0]
    gen = torch.Generator().manual_seed(config.seed)
    perm = torch.randperm(n, generator=gen)
    n_val = min(n - 1, max(1, round(config.holdout * n))) if config.holdout > 0 and n > 1 else 0
    val_idx, train_idx = perm[:n_val], perm[n_val:]
    train_t = {g: v[train_idx] for g, v in targets.items()}
    weights = {g: 1.0 / max(float(v.var(dim=0, unbiased=False).mean()), VARIANCE_FLOOR) for g, v in train_t.items()}

    torch.manual_seed(config.seed)
    encoder = SmirkEncoder().train()
    opt = torch.optim.Adam(encoder.parameters(), lr=config.lr)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(s, config.steps) / config.steps)))
    columns = [TextColumn("train-tracker"), BarColumn(), MofNCompleteColumn(), TextColumn("loss {task.fields[loss]}"),
               TimeElapsedColumn(), TimeRemainingColumn()]
    with Progress(*columns, disable=not progress) as bar:
        task = bar.add_task("steps", total=config.steps, loss="—")
        for step in range(config.steps):
            idx = train_idx[torch.randint(0, len(train_idx), (config.batch,), generator=gen)]
            images = _jitter(crops[idx].float() / 255, config.colour_jitter, gen)
            pred = _forward(encoder, images, num_shape, clamp=False)
            loss = sum(weights[g] * (pred[g] - targets[g][idx]).pow(2).mean() for g in pred)
            if not torch.isfinite(loss):
                raise AgoraError(f"train-tracker: non-finite loss at step {step}; lower --lr")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            bar.update(task, advance=1, loss=f"{loss.item():.3f}")

    rmse, baseline = {}, {}
    if n_val:
        val_t = {g: v[val_idx] for g, v in targets.items()}
        rmse = group_rmse(predict(encoder, crops[val_idx], num_shape), val_t)
        mean_pred = {g: train_t[g].mean(0, keepdim=True).expand_as(val_t[g]) for g in val_t}
        baseline = group_rmse(mean_pred, val_t)
    seconds = time.perf_counter() - t0
    info = TrackerInfo(input_size=input_size, kind="agora-demo-tracker", head_model=head_model,
                       num_shape=num_shape,
                       extra={"dataset": str(data), "images": n, "heldout_images": n_val,
                              **asdict(config), "input_size": input_size,
                              "heldout_rmse": rmse, "baseline_rmse": baseline, "seconds": round(seconds, 1)})
    path = save_tracker(out, encoder.eval(), info)
    return TrackerReport(path, input_size, n_val, rmse, baseline, seconds)


__all__ = ["TrackerReport", "TrackerTrainConfig", "auto_input_size", "group_rmse", "load_training_set", "predict", "train_tracker"]
