"""Face detection: a `FaceDetector` protocol with an OpenCV Haar backend and a mediapipe backend.

Every backend returns `Detection`s whose ``box`` is in *landmark-box* terms: the tight box of a
dense face-mesh (mediapipe's 468 points: forehead top to chin, cheek to cheek), which is what
SMIRK's crop (1.4 x the box's mean side, crop.py) was trained with. The Haar cascade's own box is
tighter and sits higher (eyebrows to just below the mouth), so `HaarDetector` converts it with
the two calibration constants below and keeps the original as ``raw_box``.

Images are RGB uint8 [H, W, 3] throughout.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

import cv2
import numpy as np

from agora_core.errors import AgoraError

# Haar box -> landmark box. Estimated on skimage's astronaut photo: Haar (frontalface_default)
# gives a 95 px square spanning eyebrows to below the mouth; mediapipe's canonical face model
# (canonical_face_model.obj: forehead top y=8.26, chin y=-9.40, half width 7.74, eyes y~2.6,
# mouth y~-4.0), fitted to the photo's eyes and mouth, spans a box of mean side ~108 px whose
# centre is ~7 px lower. Not re-measured against mediapipe output (not installed here).
HAAR_TO_LANDMARK_SCALE = 1.14  # landmark-box side / Haar box side
HAAR_TO_LANDMARK_SHIFT = 0.07  # landmark-box centre is this many Haar sides below the Haar centre

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
        boxes, neighbours = self._cascade.detectMultiScale2(
            gray, scaleFactor=self.scale_factor, minNeighbors=self.min_neighbors, minSize=(min_side, min_side)
        )
        return [
            Detection(box=haar_to_landmark_box(b), score=float(n), raw_box=_xywh_to_xyxy(b))
            for b, n in zip(np.asarray(boxes).reshape(-1, 4), np.asarray(neighbours).reshape(-1))
        ]


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

    UNTESTED HERE: mediapipe is an optional extra (it needs numpy<2, protobuf<5) and is not
    installed in the development environment. Written against the documented solutions API:
    ``FaceMesh(static_image_mode, max_num_faces, refine_landmarks, min_detection_confidence)``,
    ``process(rgb) -> results.multi_face_landmarks[i].landmark[j].{x, y}`` normalised to [0, 1].
    The box is the landmarks' tight box, as in SMIRK.
    """

    name = "mediapipe"

    def __init__(self, max_faces: int = 4, min_confidence: float = 0.5):
        import mediapipe as mp  # optional extra; ImportError is handled by default_detector()

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
    """True when ``import mediapipe`` works (the optional extra is installed)."""
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
    return max(detections, key=lambda d: d.area)


__all__ = [
    "Detection",
    "FaceDetector",
    "HAAR_TO_LANDMARK_SCALE",
    "HAAR_TO_LANDMARK_SHIFT",
    "HaarDetector",
    "MediapipeDetector",
    "NoFaceError",
    "default_detector",
    "detect_largest_face",
    "haar_to_landmark_box",
    "mediapipe_available",
]
