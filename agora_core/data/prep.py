"""prep-data: a folder of photos -> a dataset folder (paper sec. 4, "Dataset").

Per input photo (jpg/png/webp, found recursively, sorted by relative path): decode, detect the
face (skipped with ``aligned``), take the FFHQ-like dataset crop, matte it with MODNet onto white,
estimate FLAME with SMIRK on the 224² SMIRK crop, derive the camera from the head rotation
(`agora_core.face.analyse_face`), write the image and its record.

Mirroring (``mirror``): the paper mirrors FFHQ and then estimates. We flip the *original photo*
and run the whole analysis on the flip (detection, crops, matting, SMIRK, camera), so the flipped
image's FLAME and camera are SMIRK's estimates for that image rather than a mirrored copy of the
original's (FLAME's expression space is not mirror-symmetric per component). The flip is stored
as its own record (``mirrored=True``, ``images/NNNNNNNN_mirror.png``) and, in addition, each
image's flip estimate is stored as the ``mirrored_*`` FLAME arrays (the original's is the flip's
and vice versa), which is what `HeadImageDataset(xflip=True)` reads. If either the photo or its
flip fails, the input is rejected as a whole, so the two always come in pairs.

Rejected inputs (see `RejectReason`) go to OUT/rejected.jsonl and the run continues. Resuming,
the journal and its file layout: `agora_core.data.prep_records`.

Decoding runs in a thread pool (``workers``); detection, matting and SMIRK run in the calling
thread, one image at a time.
"""

from __future__ import annotations

import contextlib
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from agora_core.assets import require_asset
from agora_core.data.format import DatasetHeader
from agora_core.data.prep_inputs import IMAGE_SUFFIXES, RejectReason, Rejection, decoded_in_order, find_inputs
from agora_core.data.prep_records import (
    IMAGES_DIR,
    PrepJournal,
    check_output_folder,
    consolidate,
    image_entry,
    remove_orphan_images,
    remove_temp_files,
    start_output_folder,
    write_png_atomic,
)
from agora_core.devices import resolve_device
from agora_core.errors import AgoraError, file_error
from agora_core.face.crop import SMIRK_CROP_SIZE
from agora_core.face.detect import FaceDetector, NoFaceError, default_detector
from agora_core.face.matting import ModnetMatter
from agora_core.face.pipeline import FaceAnalysis, FlameEstimator, Matter, analyse_face
from agora_core.face.smirk import SmirkEstimator

# SMIRK estimates FLAME 2020 coefficients (300 shape, 50 expression): the head model of the data.
SMIRK_HEAD_MODEL = "flame2020"
# The 224² SMIRK crop must come from at least this many source pixels across (at most ~3.5x
# upsampling), else the face is too small for a meaningful estimate.
MIN_SMIRK_SOURCE_SIDE = 64
MIN_RESOLUTION = 32  # MODNet floors sides to multiples of 32


@dataclass(frozen=True)
class PrepConfig:
    """prep-data settings (the first three must stay the same when a run is resumed)."""

    resolution: int = 512  # dataset image side in pixels (AGORA stage 2: 512)
    mirror: bool = False  # also store each photo's flip as its own record + mirrored_* FLAME
    aligned: bool = False  # inputs are FFHQ-aligned: no detection, the whole image is the crop
    limit: int | None = None  # use only the first N inputs (sorted), None for all
    workers: int = 2  # decoding threads (0: decode in the calling thread)
    device: str = "cpu"  # torch device for SMIRK

    def __post_init__(self) -> None:
        if self.resolution < MIN_RESOLUTION:
            raise AgoraError(f"--resolution {self.resolution}: must be at least {MIN_RESOLUTION}")
        if self.limit is not None and self.limit < 1:
            raise AgoraError(f"--limit {self.limit}: must be at least 1")
        if self.workers < 0:
            raise AgoraError(f"--workers {self.workers}: must be 0 or more")


@dataclass(frozen=True)
class PrepSummary:
    """What a prep-data run did."""

    out: Path
    found: int  # inputs considered (after limit)
    resumed: int  # inputs already done by an earlier run on this OUT (skipped)
    processed: int  # inputs handled by this run
    written: int  # dataset images written by this run (two per input with mirror)
    rejected: dict[str, int] = field(default_factory=dict)  # this run's rejections by reason
    dataset_images: int = 0  # images in the consolidated dataset (0: no dataset.json written)
    seconds: float = 0.0  # wall time of the processing loop

    @property
    def images_per_s(self) -> float:
        """Inputs processed per second by this run."""
        return self.processed / self.seconds if self.seconds > 0 else 0.0


def analyse_photo(
    photo: np.ndarray,
    name: str,
    *,
    detector: FaceDetector | None,
    matter: Matter,
    estimator: FlameEstimator,
    config: PrepConfig,
) -> list[FaceAnalysis] | Rejection:
    """The photo's analysis, then (with ``config.mirror``) its x-flip's, or why the input fails."""
    photos = [photo, np.ascontiguousarray(photo[:, ::-1])] if config.mirror else [photo]
    results = []
    for copy, flipped in zip(photos, (False, True)):
        which = " (x-flipped copy)" if flipped else ""
        try:
            result = analyse_face(
                copy, detector=detector, matter=matter, estimator=estimator,
                aligned=config.aligned, size=config.resolution, source=name,
            )
        except NoFaceError:
            return Rejection(RejectReason.NO_FACE, f"no face found{which} (detector: {getattr(detector, 'name', '?')})")
        except AgoraError as exc:
            return Rejection(RejectReason.ANALYSIS_FAILED, f"{exc}{which}")
        source_side = SMIRK_CROP_SIZE / result.smirk_crop_transform.matrix[0, 0]
        if source_side < MIN_SMIRK_SOURCE_SIDE:
            return Rejection(
                RejectReason.FACE_TOO_SMALL,
                f"face crop spans {source_side:.0f} px{which}; at least {MIN_SMIRK_SOURCE_SIDE} px needed",
            )
        results.append(result)
    return results


def _write_entry(out: Path, number: int, name: str, results: list[FaceAnalysis]) -> dict:
    """Write the input's images (atomically) and return its record entry (not yet appended)."""
    images = []
    for result, mirrored in zip(results, (False, True)):
        file = f"{IMAGES_DIR}/{number:08d}{'_mirror' if mirrored else ''}.png"
        write_png_atomic(out / file, result.image)
        images.append(image_entry(file, result.camera_label, result.flame, mirrored))
    return {"input": name, "number": number, "images": images}


def run_state(input_dir: Path, config: PrepConfig) -> dict:
    """What prep.json holds and a resumed run must match (see prep_records.STATE_FLAGS)."""
    return {
        "head_model": SMIRK_HEAD_MODEL,
        "resolution": int(config.resolution),
        "mirror": bool(config.mirror),
        "aligned": bool(config.aligned),
        "input_dir": str(Path(input_dir).resolve()),
    }


def check_inputs(input_dir: Path, out: Path, config: PrepConfig) -> list[str]:
    """Validate DIR and OUT, writing nothing; the inputs this run considers (after limit)."""
    input_dir, out = Path(input_dir), Path(out)
    if not input_dir.is_dir():
        raise file_error(input_dir, "input folder not found; pass a folder of .jpg/.png/.webp photos as DIR")
    if out.resolve() == input_dir.resolve():
        raise file_error(out, "is the input folder; write the dataset to another folder")
    names = find_inputs(input_dir, exclude=out)
    if not names:
        raise file_error(input_dir, f"no photos found ({'/'.join(IMAGE_SUFFIXES)}, searched recursively)")
    check_output_folder(out, run_state(input_dir, config))
    return names[: config.limit] if config.limit else names


def prepare_dataset(
    input_dir: str | Path,
    out: str | Path,
    config: PrepConfig = PrepConfig(),
    *,
    smirk: str | Path | None = None,
    modnet: str | Path | None = None,
    detector: FaceDetector | None = None,
    progress: bool = True,
) -> PrepSummary:
    """`agora prep-data DIR OUT`: check DIR and OUT, find the SMIRK and MODNet files (flag,
    environment variable or assets.yaml; else a one-line `AgoraError` naming the flag), check the
    device, load the models, then process and consolidate (`prepare_dataset_with`). Nothing is
    written before every check has passed and the models have loaded."""
    names = check_inputs(Path(input_dir), Path(out), config)  # the paths first: no weights needed to get them wrong
    smirk_path = require_asset("smirk_ckpt", smirk)
    modnet_path = require_asset("modnet_onnx", modnet)
    resolve_device(config.device)  # an unknown or absent device is one line, before any work
    estimator = SmirkEstimator(smirk_path, config.device)
    matter = ModnetMatter(modnet_path)
    if detector is None and not config.aligned:
        detector = default_detector()
    return _run(
        Path(input_dir), Path(out), config, names, estimator, matter, detector, progress,
        extra={"smirk": str(smirk_path), "modnet": str(modnet_path)},
    )


def prepare_dataset_with(
    input_dir: str | Path,
    out: str | Path,
    config: PrepConfig,
    *,
    estimator: FlameEstimator,
    matter: Matter,
    detector: FaceDetector | None,
    progress: bool = True,
) -> PrepSummary:
    """`prepare_dataset` with the models given (tests inject them): process every input not yet
    done in OUT, then consolidate OUT's records into dataset.json + flame.npz (also when nothing
    was left to do)."""
    names = check_inputs(Path(input_dir), Path(out), config)
    return _run(Path(input_dir), Path(out), config, names, estimator, matter, detector, progress, extra={})


def _run(
    input_dir: Path,
    out: Path,
    config: PrepConfig,
    names: list[str],
    estimator: FlameEstimator,
    matter: Matter,
    detector: FaceDetector | None,
    progress: bool,
    extra: dict,
) -> PrepSummary:
    state = run_state(input_dir, config)
    start_output_folder(out, state)
    remove_temp_files(out)
    rejected: Counter = Counter()
    written = 0
    with PrepJournal(out) as journal:
        todo = [n for n in names if n not in journal.done]
        start = time.perf_counter()
        with _progress_bar(len(todo), progress) as advance:
            for name, decoded in decoded_in_order(input_dir, todo, config.workers, config.aligned):
                outcome = decoded
                if not isinstance(decoded, Rejection):
                    outcome = analyse_photo(
                        decoded, name, detector=detector, matter=matter, estimator=estimator, config=config
                    )
                if isinstance(outcome, Rejection):
                    journal.append_rejection(name, outcome.reason.value, outcome.detail)
                    rejected[outcome.reason.value] += 1
                else:
                    journal.append_record(_write_entry(out, journal.next_number, name, outcome))
                    written += len(outcome)
                advance()
        seconds = time.perf_counter() - start
        records = list(journal.records)
    remove_orphan_images(out, records)
    provenance = {**state, "detector": getattr(detector, "name", None), "config": asdict(config), **extra}
    header = DatasetHeader(SMIRK_HEAD_MODEL, config.resolution, "prep-data", provenance)
    dataset_images = consolidate(out, header, records, config.mirror)
    return PrepSummary(
        out=out, found=len(names), resumed=len(names) - len(todo), processed=len(todo), written=written,
        rejected=dict(sorted(rejected.items())), dataset_images=dataset_images, seconds=seconds,
    )


class _RateColumn(ProgressColumn):
    """Inputs per second (rich's speed over its recent window)."""

    def render(self, task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:.2f} images/s" if speed else "- images/s")


@contextlib.contextmanager
def _progress_bar(total: int, enabled: bool) -> Iterator[Callable[[], None]]:
    """Yields ``advance()``: one step of a rich progress bar with images/s (or a no-op)."""
    if not enabled:
        yield lambda: None
        return
    columns = (TextColumn("prep-data"), BarColumn(), MofNCompleteColumn(), _RateColumn(), TimeElapsedColumn(), TimeRemainingColumn())
    with Progress(*columns) as bar:
        task = bar.add_task("prep-data", total=total)
        yield lambda: bar.advance(task)


__all__ = [
    "MIN_SMIRK_SOURCE_SIDE",
    "PrepConfig",
    "PrepSummary",
    "SMIRK_HEAD_MODEL",
    "analyse_photo",
    "check_inputs",
    "prepare_dataset",
    "prepare_dataset_with",
    "run_state",
]
