"""`agora eval`: the paper's metrics (sec. 4, Table 1) on a training checkpoint.

`evaluate()` loads G_ema and the dataset, runs the requested metrics under the protocol of
`protocol.py`, and returns a JSON-ready dict (`EVAL_FORMAT`):

    {format, format_version, checkpoint, kimg, dataset, dataset_images, resolution, head_model,
     device, quick, protocol {...}, weights {inception, arcface, tracker, tracker_kind,
     tracker_input_size}, metrics {name: {status, value, ...}}, seconds}

Metric names: fid, kid, id, aed, aed_jaw, apd, asd, aed_eyelids, swd (`--metrics` takes fid, kid,
id, aed -- which runs all five tracking metrics; apd/asd/aed_jaw/aed_eyelids are aliases -- and
swd). A metric whose weights were not given gets ``{"status": "needs weights", "needs": flag}``
instead of an error, unless it was asked for by name with ``strict``.

Other networks plug in through `Evaluators` instead of files: ``features`` any callable
``uint8 [B, 3, H, W] -> [B, D]`` (a stand-in for Inception), ``embedder`` anything with
``embed(images [B, 3, R, R] in [0, 1]) -> unit [B, D]`` (ArcFace), ``tracker`` any `FlameTracker`.
The tests run every metric this way with small stand-ins.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from agora_core.errors import AgoraError
from agora_core.metrics.protocol import ProtocolConfig, animation_samples, render_animation, render_random_conditions
from agora_core.metrics.tracking import METRIC_GROUPS, TrackingErrors, tracking_errors, tracking_targets

EVAL_FORMAT = "agora-eval"
EVAL_FORMAT_VERSION = 1
METRICS = ("fid", "kid", "id", "aed", "swd")  # what --metrics selects
_ALIASES = {name: "aed" for name in METRIC_GROUPS}  # aed_jaw, apd, asd, aed_eyelids -> the tracking run
NEEDS = {"fid": "--inception PATH", "kid": "--inception PATH", "id": "--arcface PATH",
         "aed": "--tracker PATH or --smirk PATH"}
NEEDS_WEIGHTS = "needs weights"


def parse_metrics(text: str | None) -> tuple[str, ...]:
    """"fid,kid,apd" -> ("fid", "kid", "aed") in METRICS order; None/"" -> all."""
    if not text:
        return METRICS
    chosen = set()
    for item in (s.strip().lower() for s in text.split(",")):
        if not item:
            continue
        name = _ALIASES.get(item, item)
        if name not in METRICS:
            raise AgoraError(f"--metrics {text!r}: unknown metric {item!r} (known: {', '.join(METRICS + tuple(_ALIASES))})")
        chosen.add(name)
    return tuple(m for m in METRICS if m in chosen)


@dataclass(frozen=True)
class EvalWeights:
    """Weight files (None = not given); `tracker` is a SMIRK_em1.pt or `agora train-tracker` file."""

    inception: Path | None = None
    arcface: Path | None = None
    tracker: Path | None = None


@dataclass
class Evaluators:
    """The loaded networks (tests pass stand-ins here instead of files)."""

    features: Callable | None = None  # FeatureNetwork: uint8 [B, 3, H, W] -> [B, D]
    embedder: object | None = None  # ArcFaceEmbedder-like: .embed(images) -> unit [B, D]
    tracker: object | None = None  # FlameTracker: .track(images) -> dict
    notes: dict = field(default_factory=dict)  # what was loaded, for the JSON


def load_evaluators(metrics: tuple[str, ...], weights: EvalWeights, given: Evaluators | None, *, strict: bool,
                    detect_faces: bool, device: str) -> Evaluators:
    """Load the networks the metrics need from `weights` (unless `given`); a missing file is an
    error only with `strict` (then the metric was asked for by name)."""
    ev = given or Evaluators()

    def missing(metric: str) -> None:
        if strict:
            raise AgoraError(f"--metrics {metric} needs {NEEDS[metric]} (or drop --strict to report it as missing)")

    if {"fid", "kid"} & set(metrics) and ev.features is None:
        if weights.inception is not None:
            from agora_core.metrics.features import load_inception

            ev.features = load_inception(weights.inception, device)
        else:
            missing("fid" if "fid" in metrics else "kid")
    if "id" in metrics and ev.embedder is None:
        if weights.arcface is not None:
            from agora_core.metrics.identity import ArcFaceEmbedder

            ev.embedder = ArcFaceEmbedder(weights.arcface, device)
        else:
            missing("id")
    if "aed" in metrics and ev.tracker is None:
        if weights.tracker is not None:
            from agora_core.metrics.tracking import load_tracker

            detector = None
            if detect_faces:
                from agora_core.face.detect import default_detector

                detector = default_detector()
            ev.tracker = load_tracker(weights.tracker, detector, device)
            ev.notes.update(tracker_kind=ev.tracker.info.kind, tracker_input_size=ev.tracker.info.input_size)
        else:
            missing("aed")
    return ev


class _Bar:
    """rich progress, one line per stage."""

    def __init__(self, enabled: bool):
        self.progress = Progress(TextColumn("{task.description:<22}"), BarColumn(), MofNCompleteColumn(),
                                 TimeElapsedColumn(), disable=not enabled, transient=False)

    def __enter__(self) -> "_Bar":
        self.progress.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.progress.__exit__(*exc)

    def stage(self, description: str, total: int) -> Callable[[int], None]:
        task = self.progress.add_task(description, total=total)
        return lambda n: self.progress.advance(task, n)


def evaluate(checkpoint: str | Path, data: str | Path, metrics: tuple[str, ...] = METRICS,
             protocol: ProtocolConfig = ProtocolConfig(), weights: EvalWeights = EvalWeights(), *,
             evaluators: Evaluators | None = None, strict: bool = False, detect_faces: bool = False,
             quick: bool = False, device: str = "cpu", progress: bool = True) -> dict:
    """Run `metrics` on the checkpoint's G_ema against the dataset; the JSON-ready result dict."""
    from agora_core.data.torch_dataset import HeadImageDataset
    from agora_core.head.build import check_head_matches
    from agora_core.inference import load_model

    t0 = time.perf_counter()
    ev = load_evaluators(metrics, weights, evaluators, strict=strict, detect_faces=detect_faces, device=device)
    model = load_model(checkpoint)  # a training checkpoint or an imported run
    G = model.generator.to(device)
    state = {"kimg": (model.state or {}).get("kimg"), "mapping_label": model.mapping_labels(1)[0]}
    resolution = model.resolution
    dataset = HeadImageDataset(data, resolution=resolution)
    check_head_matches(dataset.index.header.head_model, G.head, data)
    results: dict[str, dict] = {}
    with _Bar(progress) as bar:
        for metric in metrics:
            t = time.perf_counter()
            if metric in ("fid", "kid"):
                if "fid" in results or "kid" in results:
                    continue  # computed together
                out = (_needs("fid", [m for m in ("fid", "kid") if m in metrics]) if ev.features is None
                       else _fid_kid(G, dataset, ev.features, protocol, resolution, bar, metrics))
            elif metric == "id":
                out = (_needs("id", ["id"]) if ev.embedder is None
                       else {"id": _identity(G, dataset, state, ev.embedder, protocol, resolution, bar)})
            elif metric == "aed":
                out = (_needs("aed", METRIC_GROUPS) if ev.tracker is None
                       else _tracking(G, dataset, state, ev.tracker, protocol, resolution, bar))
            else:
                out = {"swd": _swd(G, dataset, protocol, resolution, bar)}
            for name, entry in out.items():
                if entry["status"] == "ok":
                    entry["seconds"] = round(time.perf_counter() - t, 2)
                results[name] = entry
    return {
        "format": EVAL_FORMAT, "format_version": EVAL_FORMAT_VERSION,
        "checkpoint": str(checkpoint), "kimg": _plain(state.get("kimg")), "dataset": str(data),
        "dataset_images": len(dataset), "resolution": resolution, "head_model": G.head.model_id,
        "device": str(device), "quick": quick,
        "protocol": {**protocol.as_dict(),
                     "conditioning_camera": "the model's framing: the checkpoint's frontal dataset camera, or an "
                                            "imported run's DECA framing (ID, AED/APD)",
                     "crop": ("faces detected, SMIRK crop; fixed ArcFace window" if detect_faces
                              else "FFHQ-aligned renders: fixed SMIRK / ArcFace windows")},
        "weights": {"inception": _path(weights.inception), "arcface": _path(weights.arcface),
                    "tracker": _path(weights.tracker), **ev.notes},
        "metrics": {k: {kk: _plain(vv) for kk, vv in v.items()} for k, v in results.items()},
        "seconds": round(time.perf_counter() - t0, 2),
    }


def _needs(flag_of: str, names) -> dict[str, dict]:
    """"needs weights" entries for `names`, pointing at the flag that supplies `flag_of`'s weights."""
    return {n: {"status": NEEDS_WEIGHTS, "needs": NEEDS[flag_of]} for n in names}


def _fid_kid(G, dataset, features, protocol: ProtocolConfig, resolution: int, bar: _Bar, metrics) -> dict[str, dict]:
    from agora_core.metrics.features import extract_features, fid_from_features, kid_from_features
    from agora_core.data.conditions import ConditionSampler

    n_real = len(dataset) if protocol.fid_real_images <= 0 else min(protocol.fid_real_images, len(dataset))
    real_idx = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(protocol.seed))[:n_real]

    def real_batches():
        for i in range(0, n_real, protocol.batch):
            yield torch.stack([dataset[int(j)]["image"] for j in real_idx[i : i + protocol.batch]])

    real = extract_features(features, real_batches(), bar.stage("FID/KID: real images", n_real))
    conditions = ConditionSampler(dataset.index, xflip=False, seed=protocol.seed)
    fakes = render_random_conditions(G, conditions, protocol.fid_images, resolution, protocol.truncation_fid,
                                     protocol.seed, protocol.batch)
    fake = extract_features(features, fakes, bar.stage("FID/KID: generated", protocol.fid_images))
    out = {}
    if "fid" in metrics:
        out["fid"] = {"status": "ok", "value": fid_from_features(real, fake), "n_generated": fake.shape[0],
                      "n_real": real.shape[0]}
    if "kid" in metrics:
        mean, std, size = kid_from_features(real, fake, seed=protocol.seed)
        out["kid"] = {"status": "ok", "value": mean, "std": std, "subset_size": size, "n_generated": fake.shape[0],
                      "n_real": real.shape[0]}
    return out


def _identity(G, dataset, state, embedder, protocol: ProtocolConfig, resolution: int, bar: _Bar) -> dict:
    from agora_core.metrics.identity import id_scores, pair_cosines
    from agora_core.data.conditions import ConditionSampler

    conditions = ConditionSampler(dataset.index, xflip=False, seed=protocol.seed)
    samples = animation_samples(conditions, protocol.id_pairs, 2, G.config.z_dim, protocol.seed + 1)
    advance = bar.stage("ID: image pairs", protocol.id_pairs)
    cosines = []
    for i0, i1, images in render_animation(G, samples, state["mapping_label"], resolution,
                                           protocol.truncation_animation, protocol.batch):
        emb = embedder.embed(images).reshape(i1 - i0, 2, -1)
        cosines.append(pair_cosines(emb[:, 0], emb[:, 1]))
        advance(i1 - i0)
    scores = id_scores(torch.cat(cosines))
    return {"status": "ok", "value": scores["mean_cosine"], **scores,
            "note": "value = mean cosine; paper_id = sqrt(mean cosine), the authors' reported ID"}


def _tracking(G, dataset, state, tracker, protocol: ProtocolConfig, resolution: int, bar: _Bar) -> dict[str, dict]:
    from agora_core.data.conditions import ConditionSampler

    conditions = ConditionSampler(dataset.index, xflip=False, seed=protocol.seed)
    samples = animation_samples(conditions, protocol.identities, protocol.pairs_per_identity, G.config.z_dim,
                                protocol.seed + 2)
    advance = bar.stage("AED/APD: renders", protocol.identities * protocol.pairs_per_identity)
    preds, truths = [], []
    for i0, i1, images in render_animation(G, samples, state["mapping_label"], resolution,
                                           protocol.truncation_animation, protocol.batch):
        cams, flame = samples.frame_slice(i0, i1)
        preds.append(tracker.track(images))
        truths.append(tracking_targets(cams, flame))
        advance(images.shape[0])
    cat = lambda parts: {k: torch.cat([p[k] for p in parts]) for k in parts[0]}  # noqa: E731
    errors: TrackingErrors = tracking_errors(cat(preds), cat(truths))
    out = {}
    for metric, group in METRIC_GROUPS.items():
        value = errors.rmse[group]
        status = "ok" if math.isfinite(value) else "all fits failed"
        if errors.dims[group] == 0:
            status = "not tracked by this tracker"  # e.g. a demo tracker trained with --no-shape
        out[metric] = {"status": status, "value": value,
                       "dims": errors.dims[group], "samples": errors.samples, "failed": errors.failed}
    return out


def _swd(G, dataset, protocol: ProtocolConfig, resolution: int, bar: _Bar) -> dict:
    from agora_core.data.conditions import ConditionSampler
    from agora_core.metrics.swd import evaluate_swd, swd_reference

    advance = bar.stage("SWD", protocol.swd_images)
    conditions = ConditionSampler(dataset.index, xflip=False, seed=protocol.seed)
    ref = swd_reference(dataset, conditions, G.config.z_dim, protocol.swd_images, seed=protocol.seed)
    out = evaluate_swd(G, ref, resolution, seed=protocol.seed)
    advance(protocol.swd_images)
    return {"status": "ok", "value": out["swd"], "levels": {k: v for k, v in out.items() if k != "swd"},
            "images": protocol.swd_images, "note": "×1e3, mean over Laplacian-pyramid levels"}


def _path(p: Path | None) -> str | None:
    return None if p is None else str(p)


def _plain(value):
    """JSON-safe: non-finite floats -> None, tensors -> numbers, dicts recursively."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, torch.Tensor):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def result_rows(doc: dict) -> list[tuple[str, str, str]]:
    """(metric, value, detail) rows of an `evaluate` result, for the CLI's table."""
    rows = []
    for name, entry in doc["metrics"].items():
        if entry["status"] == NEEDS_WEIGHTS:
            rows.append((name, "—", f"needs weights ({entry['needs']})"))
            continue
        value = entry.get("value")
        text = "—" if value is None else f"{value:.4g}"
        if name == "id":
            detail = f"sqrt = {entry['paper_id']:.4g} (paper's ID); {entry['pairs']} pairs, {entry['failed']} failed" \
                if entry.get("paper_id") is not None else f"{entry['pairs']} pairs, {entry['failed']} failed"
        elif name in METRIC_GROUPS:
            detail = f"RMSE over {entry['dims']} dims; {entry['samples']} fits, {entry['failed']} failed"
        elif name == "kid":
            detail = f"± {entry['std']:.3g}; subsets of {entry['subset_size']}; {entry['n_generated']} vs {entry['n_real']} real"
        elif name == "fid":
            detail = f"{entry['n_generated']} generated vs {entry['n_real']} real"
        else:
            detail = f"{entry.get('images')} images, ×1e3"
        if entry["status"] != "ok":
            detail = f"{entry['status']}; {detail}"
        rows.append((name, text, detail))
    return rows


__all__ = ["EVAL_FORMAT", "METRICS", "EvalWeights", "Evaluators", "evaluate", "load_evaluators", "parse_metrics",
           "result_rows"]
