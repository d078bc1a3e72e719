"""Where training reports to: `RUN/log.jsonl`, TensorBoard (`RUN/tensorboard`; x axis = images
shown), a rich progress line.

One JSON object per line and per event (`{"event": "tick" | "swd" | "checkpoint" | "nonfinite" |
"start", "kimg": …, …}`). Only the main process (rank 0) makes a `Monitor` that writes; the
others get one with `enabled=False`, which does nothing.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn


class Monitor:
    """Collects per-step scalars, and writes ticks and events."""

    def __init__(self, run_dir: Path, total_kimg: float, enabled: bool = True, progress: bool = True,
                 console: Console | None = None):
        self.enabled, self.run_dir, self.total_kimg = enabled, Path(run_dir), total_kimg
        self.console = console or Console(stderr=True)
        self.sums: dict[str, float] = defaultdict(float)
        self.count = 0
        self.tick_start_time, self.tick_start_nimg = time.perf_counter(), 0
        self.tensorboard = None
        self.progress = None
        if not enabled:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.log_file = open(self.run_dir / "log.jsonl", "a", buffering=1)
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.tensorboard = SummaryWriter(str(self.run_dir / "tensorboard"))
        except ImportError:
            self.console.print("[dim]note: tensorboard is not importable (pip install tensorboard); logging to "
                               "log.jsonl only[/]")
        if progress:
            self.progress = Progress(TextColumn("[bold]kimg {task.completed:.4g}/{task.total:.4g}"), BarColumn(),
                                     TextColumn("{task.description}"), TimeElapsedColumn(), console=self.console)
            self.task = self.progress.add_task("", total=total_kimg)
            self.progress.start()

    def start_tick(self, nimg: int) -> None:
        self.tick_start_time, self.tick_start_nimg = time.perf_counter(), nimg

    def accumulate(self, values: dict[str, float]) -> None:
        for key, value in values.items():
            self.sums[key] += float(value)
        self.count += 1

    def tick(self, nimg: int, step: int) -> dict:
        """Mean scalars since the last tick, s/kimg; written as one "tick" event."""
        seconds = time.perf_counter() - self.tick_start_time
        kimg_done = max(nimg - self.tick_start_nimg, 1) / 1000
        record = {k: v / max(self.count, 1) for k, v in self.sums.items()}
        record.update(step=step, sec_per_kimg=seconds / kimg_done, sec_per_step=seconds / max(self.count, 1))
        self.sums.clear()
        self.count = 0
        self.start_tick(nimg)
        self.event("tick", nimg, **record)
        if self.progress is not None:
            desc = f"{record['sec_per_kimg']:.1f} s/kimg  G {record.get('loss_G', float('nan')):.3f}  " \
                   f"D {record.get('loss_D', float('nan')):.3f}"
            self.progress.update(self.task, completed=nimg / 1000, description=desc)
        return record

    def event(self, name: str, nimg: int, **values) -> None:
        if not self.enabled:
            return
        record = {"event": name, "kimg": nimg / 1000, "time": time.time(), **values}
        self.log_file.write(json.dumps(record) + "\n")
        if self.tensorboard is not None:
            for key, value in values.items():
                if isinstance(value, (int, float)) and key != "step":
                    self.tensorboard.add_scalar(f"{name}/{key}", value, nimg)  # x axis: images shown

    def warn(self, message: str) -> None:
        if self.enabled:
            self.console.print(f"[yellow]warning:[/] {message}", highlight=False)

    def close(self) -> None:
        if not self.enabled:
            return
        if self.progress is not None:
            self.progress.stop()
        if self.tensorboard is not None:
            self.tensorboard.close()
        self.log_file.close()
