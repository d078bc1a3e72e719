"""FLAME trackers and the tracking metrics AED, AED-jaw, APD, ASD, AED-eyelids (paper Table 1).

Protocol (appendix 0.B.2.1 and the authors' evaluation scripts): render avatars from known FLAME parameters and
cameras, re-estimate FLAME from the images with a tracker, and report per parameter group the
RMSE over all samples × dimensions:

    AED = expression (first 50), AED-jaw = jaw (3), APD = head pose (3), ASD = shape,
    AED-eyelids = eyelids (2).

The authors drop failed fits silently; here a fit fails when the tracker returns a non-finite
value (or, with face detection, finds no face), and failed fits are counted and reported.

Head pose: the generator keeps the head's global rotation at zero and the camera orbits the head
(sec. 4), so the pose a tracker sees is the inverse camera rotation (`head_pose_from_camera`),
composed with the FLAME neck rotation when the driving parameters have one (the face turns by
R_camera · R_neck; SMIRK-built datasets have no neck, so this is the camera pose alone).

A tracker is anything with ``track(images [B, 3, R, R] in [0, 1]) -> dict`` (`FlameTracker`);
`EncoderTracker` is SMIRK's encoder (`agora_core.face.smirk.SmirkEncoder`) with its crop, loaded
from SMIRK_em1.pt or from a demo-head tracker trained by `agora train-tracker` (same state-dict
layout, plus a ``.json`` sidecar giving its input size).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from torch import Tensor

from agora_core.errors import AgoraError, file_error
from agora_core.face.camera import axis_angle_to_rotmat, head_pose_from_camera, rotmat_to_axis_angle
from agora_core.face.crop import SMIRK_CROP_SCALE, SMIRK_CROP_SIZE, box_square, crop_face, ffhq_aligned_box
from agora_core.face.smirk import NUM_EXPRESSION, NUM_SHAPE, SmirkEncoder, load_smirk_encoder
from agora_core.gaussians.files import atomic_write
from agora_core.head.flame_params import FlameParams, fit_coefficients
from agora_core.render.cameras import Camera
from agora_core.render.images import to_uint8_hwc

# metric name -> tracked parameter group (Table 1 and the authors' script names)
METRIC_GROUPS = {"aed": "expression", "aed_jaw": "jaw", "apd": "pose", "asd": "shape", "aed_eyelids": "eyelids"}
TRACKED_GROUPS = ("expression", "jaw", "eyelids", "pose", "shape")
TRACKER_FORMAT = "agora-tracker"
TRACKER_FORMAT_VERSION = 1


class FlameTracker(Protocol):
    """``track(images [B, 3, R, R] float in [0, 1]) -> dict`` with expression [B, 50], jaw [B, 3],
    eyelids [B, 2], pose [B, 3] (axis-angle head pose), shape [B, S']; a failed fit is a row of NaN."""

    def track(self, images: Tensor) -> dict[str, Tensor]: ...


# --- labels ------------------------------------------------------------------------------------------

def head_pose_label(camera_label: Tensor, neck: Tensor | None = None) -> Tensor:
    """The head pose a tracker should see: camera labels [B, 25], neck [B, 3] | None -> [B, 3].

    R = R_camera · R_neck, with R_camera the inverse camera rotation (`head_pose_from_camera`)."""
    assert camera_label.ndim == 2 and camera_label.shape[1] == 25, camera_label.shape
    pose = head_pose_from_camera(Camera.from_label(camera_label.double()))
    if neck is None:
        return pose.to(camera_label.dtype)
    assert neck.shape == pose.shape, (neck.shape, pose.shape)
    rot = axis_angle_to_rotmat(pose) @ axis_angle_to_rotmat(neck.double())
    return rotmat_to_axis_angle(rot).to(camera_label.dtype)


def smirk_crop_window(resolution: int) -> tuple[tuple[float, float], float]:
    """(centre, side) in pixels of the SMIRK crop of an FFHQ-aligned ``resolution``² image: SMIRK's
    rule (1.4 × the landmark box) applied to the box alignment puts the face in (crop.py)."""
    return box_square(ffhq_aligned_box(resolution, resolution), SMIRK_CROP_SCALE)


def weak_perspective_label(camera_label: Tensor, resolution: int) -> Tensor:
    """SMIRK's weak-perspective camera (s, tx, ty) of the FLAME origin in the SMIRK crop.

    SMIRK projects x_ndc = s · (X + t) (crop NDC in [-1, 1], y up). For a pinhole camera the
    origin at depth z lands at pixel p; one world unit there spans 2·fx·W / (z·side) NDC units, so
    s = 2·fx·W / (z·side) and t = ndc(p) / s. camera_label [B, 25] -> [B, 3]."""
    cam = Camera.from_label(camera_label.double())
    origin = cam.world2cam()[:, :3, 3]  # the world origin in camera coordinates
    k = cam.intrinsics
    u = k[:, 0, 0] * origin[:, 0] / origin[:, 2] + k[:, 0, 2]
    v = k[:, 1, 1] * origin[:, 1] / origin[:, 2] + k[:, 1, 2]
    (cx, cy), side = smirk_crop_window(resolution)
    px, py = u * resolution - 0.5, v * resolution - 0.5  # OpenCV pixel coordinates (crop.py)
    ndc_x, ndc_y = 2 * (px - cx) / side, -2 * (py - cy) / side
    s = 2 * k[:, 0, 0] * resolution / (origin[:, 2] * side)
    return torch.stack([s, ndc_x / s, ndc_y / s], dim=1).to(camera_label.dtype)


def tracking_targets(camera_label: Tensor, flame: FlameParams, num_shape: int = NUM_SHAPE) -> dict[str, Tensor]:
    """What a tracker should recover from an image rendered with (camera_label [B, 25], flame):
    expression [B, 50] (padded/trimmed), jaw [B, 3], eyelids [B, 2], pose [B, 3],
    shape [B, min(S, num_shape)] (only the coefficients the head model has)."""
    return {
        "expression": fit_coefficients(flame.expression.float(), NUM_EXPRESSION),
        "jaw": flame.jaw.float(),
        "eyelids": flame.eyelids.float(),
        "pose": head_pose_label(camera_label.float(), flame.neck).float(),
        "shape": flame.shape[:, :num_shape].float(),
    }


# --- RMSE per group --------------------------------------------------------------------------------

@dataclass
class TrackingErrors:
    """RMSE per group over the successful fits, and how many fits there were / failed."""

    rmse: dict[str, float]  # group -> RMSE over samples × dims (NaN when no fit succeeded)
    dims: dict[str, int]  # group -> number of dimensions compared
    samples: int  # fits attempted
    failed: int  # fits with a non-finite output (not silently dropped: reported)

    def as_metrics(self) -> dict[str, float]:
        """{aed, aed_jaw, apd, asd, aed_eyelids} -> RMSE."""
        return {metric: self.rmse[group] for metric, group in METRIC_GROUPS.items()}


def failed_fits(pred: dict[str, Tensor]) -> Tensor:
    """[B] bool: rows with any non-finite value in any tracked group."""
    rows = [~torch.isfinite(pred[g]).all(dim=1) for g in TRACKED_GROUPS if g in pred]
    return torch.stack(rows).any(dim=0)


def tracking_errors(pred: dict[str, Tensor], truth: dict[str, Tensor]) -> TrackingErrors:
    """RMSE per group between tracker outputs and targets (dicts of [N, D]); shape compares the
    first min(D_pred, D_truth) coefficients. Rows that failed (any non-finite output) are
    excluded from every group and counted."""
    failed = failed_fits(pred)
    ok = ~failed
    rmse, dims = {}, {}
    for group in TRACKED_GROUPS:
        p, t = pred[group].double(), truth[group].double()
        d = min(p.shape[1], t.shape[1])
        assert p.shape[0] == t.shape[0], (group, p.shape, t.shape)
        diff = (p[ok, :d] - t[ok, :d])
        rmse[group] = float(diff.pow(2).mean().sqrt()) if diff.numel() else float("nan")
        dims[group] = d
    return TrackingErrors(rmse, dims, int(failed.numel()), int(failed.sum()))


# --- SMIRK's encoder as a tracker ------------------------------------------------------------------

@dataclass(frozen=True)
class TrackerInfo:
    """The ``.json`` sidecar of a tracker checkpoint (SMIRK_em1.pt has none: the defaults)."""

    input_size: int = SMIRK_CROP_SIZE  # side of the (square) SMIRK crop the encoder reads
    kind: str = "smirk"  # "smirk" (SMIRK_em1.pt) or "agora-demo-tracker" (agora train-tracker)
    head_model: str = ""  # head model whose FLAME parameters it regresses ("" = real FLAME)
    num_shape: int = NUM_SHAPE  # shape coefficients it was trained on (the rest are meaningless)
    extra: dict = field(default_factory=dict)  # provenance: dataset, steps, held-out RMSE, ...

    def to_json(self) -> dict:
        return {"format": TRACKER_FORMAT, "format_version": TRACKER_FORMAT_VERSION, **asdict(self)}


def tracker_info_path(checkpoint: str | Path) -> Path:
    """tracker.pt -> tracker.json (beside it)."""
    return Path(checkpoint).with_suffix(".json")


def read_tracker_info(checkpoint: str | Path) -> TrackerInfo:
    """The sidecar of `checkpoint`, or SMIRK's defaults when there is none."""
    path = tracker_info_path(checkpoint)
    if not path.is_file():
        return TrackerInfo()
    try:
        doc = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise file_error(path, f"not valid JSON ({exc}); delete it or re-run agora train-tracker") from None
    if doc.get("format") != TRACKER_FORMAT or doc.get("format_version") != TRACKER_FORMAT_VERSION:
        raise file_error(path, f"not an {TRACKER_FORMAT} v{TRACKER_FORMAT_VERSION} sidecar")
    try:
        info = TrackerInfo(int(doc["input_size"]), str(doc["kind"]), str(doc.get("head_model", "")),
                           int(doc.get("num_shape", NUM_SHAPE)), dict(doc.get("extra", {})))
    except (KeyError, TypeError, ValueError) as exc:
        raise file_error(path, f"incomplete tracker sidecar ({exc})") from None
    if info.input_size < 32:
        raise file_error(path, f"input_size {info.input_size} is too small (>= 32)")
    return info


def save_tracker(path: str | Path, encoder: SmirkEncoder, info: TrackerInfo) -> Path:
    """Write the encoder state dict in the layout `load_smirk_encoder` reads (plain keys, tensors
    only; it rejects extra keys, hence the sidecar) and ``<stem>.json`` beside it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in encoder.state_dict().items()}
    with atomic_write(path) as f:
        torch.save(state, f)
    tracker_info_path(path).write_text(json.dumps(info.to_json(), indent=2))
    return path


def crop_for_tracker(images: np.ndarray, input_size: int, boxes: list | None = None) -> Tensor:
    """uint8 RGB [B, R, R, 3] -> [B, 3, S, S] float in [0, 1]: SMIRK crops (1.4 × the landmark box,
    `crop_face`) of each image's face box, or of the box FFHQ alignment puts the face in."""
    assert images.ndim == 4 and images.shape[3] == 3 and images.dtype == np.uint8, (images.shape, images.dtype)
    h, w = images.shape[1:3]
    aligned = ffhq_aligned_box(h, w)
    crops = [crop_face(img, aligned if boxes is None or boxes[i] is None else boxes[i], size=input_size)[0]
             for i, img in enumerate(images)]
    return torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).float() / 255.0


class EncoderTracker:
    """SMIRK's encoder as a `FlameTracker`.

    Images are FFHQ-aligned renders, so by default the SMIRK crop is taken where alignment puts
    the face ("cropping and alignment consistent with training", appendix 0.B.2.1). With a
    `detector` the face is detected per image instead; no face = a failed fit (NaN row).
    """

    def __init__(self, encoder: SmirkEncoder, info: TrackerInfo | None = None, detector=None,
                 device: str | torch.device = "cpu"):
        self.encoder = encoder.eval().to(device)
        self.info = info or TrackerInfo()
        self.detector = detector
        self.device = torch.device(device)

    @torch.inference_mode()
    def track(self, images: Tensor) -> dict[str, Tensor]:
        assert images.ndim == 4 and images.shape[1] == 3, images.shape
        rgb = to_uint8_hwc(images)
        boxes, found = None, torch.ones(len(rgb), dtype=torch.bool)
        if self.detector is not None:
            boxes = []
            for i, img in enumerate(rgb):
                faces = self.detector.detect(img)
                found[i] = bool(faces)
                boxes.append(max(faces, key=lambda d: d.area).box if faces else None)
        crops = crop_for_tracker(rgb, self.info.input_size, boxes).to(self.device)
        out = self.encoder(crops)
        pred = {"expression": out["expression_params"], "jaw": out["jaw_params"], "eyelids": out["eyelid_params"],
                "pose": out["pose_params"], "shape": out["shape_params"][:, : self.info.num_shape],
                "cam": out["cam"]}
        pred = {k: v.float().cpu() for k, v in pred.items()}
        if not found.all():
            for v in pred.values():
                v[~found] = float("nan")
        return pred


def load_tracker(path: str | Path, detector=None, device: str | torch.device = "cpu") -> EncoderTracker:
    """`EncoderTracker` from SMIRK_em1.pt or an `agora train-tracker` checkpoint (+ sidecar)."""
    info = read_tracker_info(path)
    try:
        encoder = load_smirk_encoder(path, device)
    except AgoraError as exc:
        raise AgoraError(f"{exc} (--tracker/--smirk)") from None
    return EncoderTracker(encoder, info, detector, device)


__all__ = [
    "METRIC_GROUPS",
    "TRACKED_GROUPS",
    "EncoderTracker",
    "FlameTracker",
    "TrackerInfo",
    "TrackingErrors",
    "crop_for_tracker",
    "failed_fits",
    "head_pose_label",
    "load_tracker",
    "read_tracker_info",
    "save_tracker",
    "smirk_crop_window",
    "tracking_errors",
    "tracking_targets",
    "weak_perspective_label",
]
