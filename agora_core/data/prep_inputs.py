"""prep-data's inputs: finding photos, telling images from non-images, decoding in threads.

Every input either decodes to RGB uint8 [H, W, 3] or becomes a `Rejection` with a
`RejectReason`; the run records it in OUT/rejected.jsonl and continues.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")
MIN_IMAGE_SIDE = 64  # px; smaller photos are rejected before detection


class RejectReason(str, enum.Enum):
    """Why an input photo did not become dataset images (the ``reason`` in rejected.jsonl)."""

    UNREADABLE = "unreadable"  # the file could not be read (I/O error, permissions)
    NOT_AN_IMAGE = "not_an_image"  # no JPEG/PNG/WebP signature (e.g. a text file renamed .jpg)
    CORRUPT = "corrupt"  # an image signature, but truncated or undecodable
    TOO_SMALL = "too_small"  # shorter side < MIN_IMAGE_SIDE
    NOT_SQUARE = "not_square"  # with aligned=True: FFHQ-aligned images are square
    NO_FACE = "no_face"  # no face detected (in the photo or, with mirror, in its flip)
    FACE_TOO_SMALL = "face_too_small"  # SMIRK crop from < MIN_SMIRK_SOURCE_SIDE source px
    ANALYSIS_FAILED = "analysis_failed"  # another per-image error from the face pipeline


@dataclass(frozen=True)
class Rejection:
    """An input that will not become dataset images, and why (one line, for rejected.jsonl)."""

    reason: RejectReason
    detail: str


def find_inputs(input_dir: Path, exclude: Path | None = None) -> list[str]:
    """Relative POSIX paths of the photos under ``input_dir`` (recursive, sorted), leaving out
    anything under ``exclude`` (the output folder, when it lies inside the input folder)."""
    input_dir = Path(input_dir)
    skip = None  # OUT's parts relative to DIR, when OUT lies inside DIR
    if exclude is not None and Path(exclude).resolve().is_relative_to(input_dir.resolve()):
        skip = Path(exclude).resolve().relative_to(input_dir.resolve()).parts
    found = []
    for path in input_dir.rglob("*"):
        if path.suffix.lower() not in IMAGE_SUFFIXES or not path.is_file():
            continue
        relative = path.relative_to(input_dir)
        if skip is not None and relative.parts[: len(skip)] == skip:
            continue
        found.append(relative.as_posix())
    return sorted(found)


def sniff_image(data: bytes) -> str | None:
    """The format from the file signature: "jpeg", "png", "webp", or None."""
    if data[:3] == b"\xff\xd8\xff":
        return "jpeg"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "png"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    return None


def is_complete(kind: str, data: bytes) -> bool:
    """Whether an image file is whole: a JPEG has an end-of-image marker after its last
    start-of-scan (entropy-coded data never contains FF D9), a PNG an IEND chunk, a WebP as
    many bytes as its RIFF header says. Decoders may otherwise return a half-grey image."""
    if kind == "jpeg":
        return data.rfind(b"\xff\xd9") > data.rfind(b"\xff\xda") >= 0
    if kind == "png":
        return b"IEND" in data[-32:]
    return len(data) >= 8 + int.from_bytes(data[4:8], "little")


def decode_photo(path: Path, aligned: bool = False) -> np.ndarray | Rejection:
    """Read and decode one input: RGB uint8 [H, W, 3] (EXIF orientation applied), or why not."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        return Rejection(RejectReason.UNREADABLE, f"cannot read ({exc.strerror or type(exc).__name__})")
    kind = sniff_image(data)
    if kind is None:
        return Rejection(RejectReason.NOT_AN_IMAGE, "no JPEG, PNG or WebP signature")
    if not is_complete(kind, data):
        return Rejection(RejectReason.CORRUPT, f"truncated {kind.upper()} file")
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if bgr is None:
        return Rejection(RejectReason.CORRUPT, f"{kind.upper()} data could not be decoded")
    h, w = bgr.shape[:2]
    if min(h, w) < MIN_IMAGE_SIDE:
        return Rejection(RejectReason.TOO_SMALL, f"{w}x{h} px; the shorter side must be at least {MIN_IMAGE_SIDE} px")
    if aligned and h != w:
        return Rejection(RejectReason.NOT_SQUARE, f"{w}x{h} px is not square, so not FFHQ-aligned; drop --aligned")
    return np.ascontiguousarray(bgr[:, :, ::-1])


def decoded_in_order(input_dir: Path, names: list[str], workers: int, aligned: bool) -> Iterator[tuple[str, np.ndarray | Rejection]]:
    """(name, `decode_photo` result) in ``names`` order; decoding runs ``workers`` threads ahead,
    with at most 2 x workers photos in memory."""
    if workers == 0:
        for name in names:
            yield name, decode_photo(input_dir / name, aligned)
        return
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="prep-decode") as pool:
        queue: deque = deque()
        pending = iter(names)
        for name in pending:
            queue.append((name, pool.submit(decode_photo, input_dir / name, aligned)))
            if len(queue) >= 2 * workers:
                break
        while queue:
            name, future = queue.popleft()
            following = next(pending, None)
            if following is not None:
                queue.append((following, pool.submit(decode_photo, input_dir / following, aligned)))
            yield name, future.result()


__all__ = [
    "IMAGE_SUFFIXES",
    "MIN_IMAGE_SIDE",
    "RejectReason",
    "Rejection",
    "decode_photo",
    "decoded_in_order",
    "find_inputs",
    "is_complete",
    "sniff_image",
]
