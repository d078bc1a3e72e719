"""Honest per-frame timing and peak memory (what the authors' FPS script lacked).

- Every timed call is bracketed by a device synchronisation (`torch.cuda.synchronize` on CUDA), so
  a frame's time covers the work it launched, not just the launch; warm-up calls are not timed.
  On CUDA the time is read from CUDA timing events around the call (`FrameClock`).
- Statistics are over individual calls: median, p90, mean; FPS = batch · 1000 / median ms.
- Paths that are compared are timed interleaved (call i of every path, then call i + 1), so a
  shared machine's load changes hit all of them alike instead of whichever ran last.
- Peak memory: on CUDA the allocator's peak during the timed calls; on CPU the process RSS,
  sampled every millisecond by a thread (there is no per-phase allocator peak on CPU).
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from typing import Callable

import torch

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class FrameClock:
    """Milliseconds of one call that ends with a device synchronisation.

    On CUDA a pair of timing events brackets the call on the current stream (the GPU's own clock;
    the device is idle at `start` because the previous call was synchronised, so the span covers
    the launches as well as the kernels); on CPU `time.perf_counter`.
    """

    def __init__(self, device: torch.device):
        self.device = device
        if device.type == "cuda":
            self._events = (torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True))
        self._t0 = 0.0

    def start(self) -> None:
        if self.device.type == "cuda":
            self._events[0].record()
        else:
            self._t0 = time.perf_counter()

    def stop(self) -> float:
        """Synchronise the device and return the milliseconds since `start`."""
        if self.device.type == "cuda":
            self._events[1].record()
            synchronize(self.device)
            return float(self._events[0].elapsed_time(self._events[1]))
        synchronize(self.device)
        return 1000.0 * (time.perf_counter() - self._t0)


def current_rss() -> int:
    """Resident set size of this process in bytes (Linux /proc; 0 where unavailable)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * _PAGE
    except OSError:
        return 0


class PeakMemory:
    """Peak memory of a code block: CUDA allocator peak, or sampled process RSS on CPU.

    `peak` is the absolute peak in bytes, `working` the peak minus what was in use at entry.
    """

    def __init__(self, device: torch.device, interval_s: float = 0.001):
        self.device, self.interval_s = device, interval_s
        self.peak = self.working = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> "PeakMemory":
        if self.device.type == "cuda":
            synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._base = torch.cuda.memory_allocated(self.device)
        else:
            self._base = self.peak = current_rss()
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.peak = max(self.peak, current_rss())

    def __exit__(self, *exc) -> None:
        if self.device.type == "cuda":
            synchronize(self.device)
            self.peak = torch.cuda.max_memory_allocated(self.device)
        else:
            self._stop.set()
            self._thread.join()
            self.peak = max(self.peak, current_rss())
        self.working = max(0, self.peak - self._base)


@dataclass
class Timing:
    times_ms: list[float]  # one per timed call
    batch: int  # frames per call

    @property
    def median_ms(self) -> float:
        return percentile(self.times_ms, 50)

    @property
    def p90_ms(self) -> float:
        return percentile(self.times_ms, 90)

    @property
    def mean_ms(self) -> float:
        return sum(self.times_ms) / len(self.times_ms)

    @property
    def fps(self) -> float:
        """Frames per second at the median call time (batch frames per call)."""
        return self.batch * 1000.0 / self.median_ms if self.median_ms > 0 else float("inf")


def percentile(values: list[float], q: float) -> float:
    """Linear-interpolated q-th percentile (as numpy's default)."""
    assert values, "no values"
    v = sorted(values)
    pos = (len(v) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (pos - lo)


def time_calls(step: Callable[[int], object], calls: int, warmup: int, device: torch.device,
               batch: int) -> tuple[Timing, PeakMemory]:
    """Time `calls` calls of step(i) after `warmup` untimed ones; each call synchronised.

    `step(i)` runs iteration i (the caller picks the i-th inputs) and must do the whole frame,
    rendering included.
    """
    assert calls >= 1 and warmup >= 0, (calls, warmup)
    with torch.inference_mode():  # the models' inference formulation (models/stylegan2_inference.py)
        for i in range(warmup):
            step(i)
        synchronize(device)
        times = []
        clock = FrameClock(device)
        with PeakMemory(device) as memory:
            for i in range(calls):
                clock.start()
                step(warmup + i)
                times.append(clock.stop())
    return Timing(times, batch), memory


class _LabelledPeaks:
    """Per-label peak of process RSS (CPU) or of the CUDA allocator, for interleaved calls."""

    def __init__(self, device: torch.device, labels, interval_s: float = 0.001):
        self.device, self.interval_s = device, interval_s
        self.peak = dict.fromkeys(labels, 0)
        self.label = None
        self._stop = threading.Event()

    def _sample(self) -> None:
        while not self._stop.wait(self.interval_s):
            if self.label is not None:
                self.peak[self.label] = max(self.peak[self.label], current_rss())

    def __enter__(self) -> "_LabelledPeaks":
        self.base = torch.cuda.memory_allocated(self.device) if self.device.type == "cuda" else current_rss()
        if self.device.type != "cuda":
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def before(self, label: str) -> None:
        self.label = label
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        else:
            self.peak[label] = max(self.peak[label], current_rss())

    def after(self, label: str) -> None:
        if self.device.type == "cuda":
            self.peak[label] = max(self.peak[label], torch.cuda.max_memory_allocated(self.device))
        else:
            self.peak[label] = max(self.peak[label], current_rss())
        self.label = None

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self.device.type != "cuda":
            self._thread.join()


@dataclass
class PathMemory:
    peak: int  # bytes, absolute
    working: int  # bytes above what was in use when the timed calls began


def time_interleaved(steps: dict[str, Callable[[int], object]], calls: int, warmup: int, device: torch.device,
                     batch: int) -> dict[str, tuple[Timing, PathMemory]]:
    """`time_calls` for several paths at once, interleaved call by call (module docstring)."""
    assert calls >= 1 and warmup >= 0, (calls, warmup)
    times = {name: [] for name in steps}
    with torch.inference_mode():  # the models' inference formulation (models/stylegan2_inference.py)
        for i in range(warmup):
            for step in steps.values():
                step(i)
        synchronize(device)
        clock = FrameClock(device)
        with _LabelledPeaks(device, steps) as peaks:
            for i in range(calls):
                for name, step in steps.items():
                    peaks.before(name)
                    clock.start()
                    step(warmup + i)
                    times[name].append(clock.stop())
                    peaks.after(name)
    return {name: (Timing(times[name], batch), PathMemory(peaks.peak[name], max(0, peaks.peak[name] - peaks.base)))
            for name in steps}
