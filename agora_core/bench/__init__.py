"""Benchmarks of the toolkit's runtime paths (paper Tables 1 and 7).

- `timing`: synchronised per-call timing, percentiles, peak memory (CUDA allocator / process RSS).
- `reenactment`: cached-identity reenactment, AGORA vs AGORA-M vs the render alone, batch 1 and 8.
- `bench_setup`: `run_bench`, what `agora bench` runs (model, identity, avatar, then the timing).
"""

from agora_core.bench.bench_setup import random_basis, random_regressor, run_bench
from agora_core.bench.reenactment import PATHS, BenchConfig, BenchResult, BenchRow, benchmark_reenactment
from agora_core.bench.timing import PeakMemory, Timing, percentile, time_calls, time_interleaved

__all__ = [
    "run_bench", "random_basis", "random_regressor",
    "PATHS", "BenchConfig", "BenchResult", "BenchRow", "benchmark_reenactment",
    "PeakMemory", "Timing", "percentile", "time_calls", "time_interleaved",
]  # fmt: skip
