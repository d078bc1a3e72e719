"""What `agora invert` writes beside the avatar: the before/after preview PNG and the loss curves.

Preview rows: the base generator at the pivot (before tuning), then the tuned one for each input
frame; columns: input | reconstruction | novel view (camera orbited 0.5 rad in yaw) | new expression
(jaw open, a few expression coefficients set). With held-out views (`agora invert --heldout`, views of
the dataset that PTI never saw), one more row each: truth | tuned | before tuning | blank. Each tile is
rendered at the model's resolution and enlarged to the preview size (`render.images.enlarge`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import Tensor

from agora_core.head import FlameParams
from agora_core.invert.pti import FrameParameters, broadcast_w, render_frames, rotate_cameras
from agora_core.invert.targets import InversionTarget
from agora_core.models.agora_generator import AgoraGenerator
from agora_core.render import Camera

NOVEL_VIEW_YAW = 0.5  # radians the preview's novel-view camera orbits
NEW_JAW = 0.3  # jaw opening (radians) of the preview's new expression
NEW_EXPRESSION = (1.5, -1.0, 1.0)  # its first expression coefficients


def preview_flame(flame: FlameParams) -> FlameParams:
    """The frames' FLAME with a new expression: jaw open, the first coefficients set."""
    expression, jaw = torch.zeros_like(flame.expression), torch.zeros_like(flame.jaw)
    k = min(len(NEW_EXPRESSION), expression.shape[1])
    expression[:, :k] = torch.tensor(NEW_EXPRESSION[:k], dtype=expression.dtype)
    jaw[:, 0] = NEW_JAW
    return flame.replace(expression=expression, jaw=jaw)


@torch.no_grad()
def preview_row(G: AgoraGenerator, w: Tensor, params: FrameParameters, target: InversionTarget,
                frames: int | None = None) -> Tensor:
    """[F', 4, 3, R, R]: input, reconstruction, novel view, new expression for the first `frames`
    frames (all by default), rendered in one batch (the identity branch runs once)."""
    f = target.num_frames if frames is None else min(frames, target.num_frames)
    flame = params.flame()[:f]
    cameras = params.cameras(target.cameras)
    cameras = Camera(cameras.cam2world[:f], cameras.intrinsics[:f])
    yaw = torch.zeros(f, 3, device=w.device)
    yaw[:, 1] = NOVEL_VIEW_YAW
    novel = rotate_cameras(cameras, yaw)
    new = preview_flame(flame)
    batch = FlameParams.cat([flame, flame, new])
    cams = Camera(torch.cat([cameras.cam2world, novel.cam2world, cameras.cam2world]),
                  torch.cat([cameras.intrinsics] * 3))
    images = render_frames(G, broadcast_w(w, G.num_ws), batch, cams, target.resolution).reshape(3, f, 3, *target.images.shape[-2:])
    return torch.stack([target.images[:f], images[0], images[1], images[2]], dim=1).clamp(0, 1)


@torch.no_grad()
def render_heldout(G: AgoraGenerator, w: Tensor, shape: Tensor, heldout: InversionTarget) -> Tensor:
    """[F, 3, R, R]: the avatar (pivot w [1, w_dim], β [1, S]) in the held-out views' own labels
    (dataset camera and expression: nothing of them was fitted)."""
    flame = heldout.flame.replace(shape=shape.expand(heldout.num_frames, -1))
    return render_frames(G, broadcast_w(w, G.num_ws), flame, Camera.from_label(heldout.cameras),
                         heldout.resolution).clamp(0, 1)


def heldout_rows(truth: Tensor, tuned: Tensor, before: Tensor) -> Tensor:
    """[F, 4, 3, R, R] preview rows of held-out views: truth | tuned | before tuning | blank."""
    return torch.stack([truth, tuned, before, torch.ones_like(truth)], dim=1).clamp(0, 1)


def preview_grid(rows: Tensor, size: int | None = None) -> np.ndarray:
    """[N, 4, 3, R, R] in [0, 1] -> uint8 RGB [N·S, 4·S, 3], each tile enlarged to S = `size` (default R)."""
    from agora_core.render.images import enlarge

    if size is not None:
        rows = enlarge(rows.flatten(0, 1), size).reshape(*rows.shape[:3], size, size)
    n, c, _, r, _ = rows.shape
    grid = rows.permute(0, 3, 1, 4, 2).reshape(n * r, c * r, 3)
    return (grid * 255 + 0.5).to(torch.uint8).cpu().numpy()


def write_png(path: Path, rgb: np.ndarray) -> Path:
    """PNG written to `path` directly (callers pass a temporary name and rename)."""
    ok, data = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    assert ok
    path.write_bytes(data.tobytes())
    return path


def write_json(path: Path, doc: dict) -> Path:
    with open(path, "w") as f:
        json.dump(doc, f, indent=1)
        f.flush()
        os.fsync(f.fileno())
    return path


def sidecar_paths(out: Path) -> tuple[Path, Path]:
    """(losses JSON, preview PNG) beside the avatar: avatar.losses.json, avatar.preview.png."""
    return out.with_name(out.stem + ".losses.json"), out.with_name(out.stem + ".preview.png")
