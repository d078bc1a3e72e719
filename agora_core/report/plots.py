"""The demo report's plots (matplotlib, Agg backend, no display): PNG bytes from the files the stages wrote.

- `timing_bars`: AGORA vs AGORA-M milliseconds per frame from `agora bench --json` (rendering included).
- `explained_variance_plot`: the cumulative explained variance of each AGORA-M attribute group
  (basis.safetensors, `mobile.basis_file`).
- `swd_curve`: SWD (×1e3) against kimg from one or more training logs (`RUN/log.jsonl` "swd" events).
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

PATH_LABELS = {"agora": "AGORA (deformation branch + raster)", "agora_m": "AGORA-M (MLP + blend + raster)",
               "render": "rasterising alone"}


def _figure(width: float = 6.4, height: float = 3.6):
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(width, height), dpi=100)
    ax.grid(True, alpha=0.3)
    return plt, fig, ax


def _png(plt, fig) -> bytes:
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def timing_bars(bench: dict) -> bytes:
    """Grouped bars: per-frame median milliseconds of each path at each batch size of the bench."""
    rows = [r for r in bench.get("results", []) if r["path"] in PATH_LABELS]
    batches = sorted({r["batch"] for r in rows})
    paths = [p for p in PATH_LABELS if any(r["path"] == p for r in rows)]
    plt, fig, ax = _figure()
    width = 0.8 / max(len(paths), 1)
    for i, path in enumerate(paths):
        ms = [next((r["median_ms"] / r["batch"] for r in rows if r["path"] == path and r["batch"] == b), np.nan)
              for b in batches]
        bars = ax.bar(np.arange(len(batches)) + (i - (len(paths) - 1) / 2) * width, ms, width, label=PATH_LABELS[path])
        ax.bar_label(bars, fmt="%.1f", fontsize=8)
    ax.set_xticks(np.arange(len(batches)), [f"batch {b}" for b in batches])
    ax.set_ylabel("ms per frame (median)")
    speed = ", ".join(f"{k}: {v:.1f}×" for k, v in bench.get("speedup", {}).items() if "no_render" not in k)
    ax.set_title(f"AGORA vs AGORA-M on {bench.get('device', '?')} ({bench.get('threads', '?')} threads); "
                 f"speed-up {speed}", fontsize=9)
    ax.legend(fontsize=8)
    return _png(plt, fig)


def explained_variance_plot(explained: dict[str, np.ndarray]) -> bytes:
    """Cumulative explained variance [K] per attribute group against the number of blendshapes."""
    plt, fig, ax = _figure()
    for group, curve in explained.items():
        curve = np.asarray(curve, dtype=np.float64)
        ax.plot(np.arange(1, len(curve) + 1), curve, marker=".", label=group)
    ax.set_xlabel("blendshapes K")
    ax.set_ylabel("explained variance (cumulative)")
    ax.set_ylim(0, 1.02)
    ax.set_title("AGORA-M basis: residual energy captured by the first K components", fontsize=9)
    ax.legend(fontsize=8)
    return _png(plt, fig)


def read_swd_events(log: Path) -> tuple[np.ndarray, np.ndarray]:
    """(kimg [n], SWD ×1e3 [n]) of a training log's "swd" events (lines that do not parse are skipped)."""
    import json

    kimg, value = [], []
    for line in log.read_text().splitlines():
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line being written by a running training
        if isinstance(event, dict) and event.get("event") == "swd" and "swd" in event:
            kimg.append(float(event["kimg"]))
            value.append(float(event["swd"]))
    return np.asarray(kimg), np.asarray(value)


def swd_curve(logs: dict[str, Path]) -> bytes:
    """SWD against kimg, one line per labelled log."""
    plt, fig, ax = _figure()
    for label, log in logs.items():
        kimg, value = read_swd_events(log)
        ax.plot(kimg, value, marker=".", label=label)
    ax.set_xlabel("kimg (thousands of real images shown)")
    ax.set_ylabel("SWD ×1e3 (lower is better)")
    ax.set_title("Training: sliced Wasserstein distance to the training images", fontsize=9)
    ax.legend(fontsize=8)
    return _png(plt, fig)
