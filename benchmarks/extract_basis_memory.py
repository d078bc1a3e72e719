"""Peak memory of AGORA-M basis extraction against the number of tuples N (appendix 0.A.3).

    python benchmarks/extract_basis_memory.py                    # N = 2K, 5K, 10K, 20K, K = 128
    python benchmarks/extract_basis_memory.py --passes 1         # same memory, 6x less time
    python benchmarks/extract_basis_memory.py --ns 500,1000 --k 16 --config tiny.yaml
    python benchmarks/extract_basis_memory.py --source models/demo --ns 1000 --k 64 --passes 1
    python benchmarks/extract_basis_memory.py --source runs/agora-release --ns 1000 --k 64 --passes 1

The authors' low-rank SVD of the whole N × (M·D) matrix ran out of memory at N = 20K or K = 128
(Tables 5-6). `extract_basis` streams the residuals, so its memory should not grow with N: each N
runs `agora_core.mobile.extract_basis` in a fresh subprocess and reports the child's peak RSS
(`ru_maxrss`) — model, torch, accumulators, chunks and the written basis included. The model is a
randomly initialised one of `--config` (demo scale by default), or with `--source` any model
`agora extract-basis` reads (a training run, a model folder such as models/demo, an imported run of
the authors' release: the full-size case, 184,599 Gaussians), loaded the way the command loads it.
Target: < 1.3x growth from the first N to the last.

The randomized method's memory does not depend on the number of passes either (its accumulators
are allocated once and each pass reuses them), so `--passes 1` measures the same peak in a sixth
of the time; the table says which setting ran. `--method gram` shows the exact path's N² growth.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def child(args: argparse.Namespace) -> None:
    """Run one extraction and print a JSON line with its peak RSS."""
    import torch

    sys.path.insert(0, str(ROOT))
    from agora_core.mobile import ExtractConfig, extract_basis, load_agora_model

    if args.threads:
        torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    model = load_agora_model(args.source or None, None if args.source else args.config, seed=0)
    base_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    cfg = ExtractConfig(n=args.n, k=args.k, method=args.method, memory_budget_mb=args.memory_budget,
                        passes=args.passes, heldout=args.heldout, batch_size=args.batch_size)
    plan = {}
    basis, report = extract_basis(model.generator, cfg, prior=model.prior, on_plan=lambda p: plan.update(p.__dict__))
    with tempfile.TemporaryDirectory() as tmp:
        basis.save(Path(tmp) / "basis.safetensors")
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"source": model.source, "n": args.n, "k": args.k, "gaussians": basis.num_gaussians,
                      "peak_mb": peak_kb / 1024,
                      "model_mb": base_kb / 1024, "seconds": time.perf_counter() - t0, **plan,
                      "avg_explained": report.average_explained[args.k]}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(ROOT / "configs" / "demo.yaml"), help="model config (random init)")
    parser.add_argument("--source", default="", help="a model instead: training run or checkpoint, model folder, "
                                                     "imported run")
    parser.add_argument("--ns", default="2000,5000,10000,20000", help="comma-separated N")
    parser.add_argument("--k", type=int, default=128)
    parser.add_argument("--method", default="randomized", choices=["auto", "randomized", "gram"])
    parser.add_argument("--memory-budget", type=int, default=1024, help="MB, as `agora extract-basis`")
    parser.add_argument("--passes", type=int, default=6)
    parser.add_argument("--heldout", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=0, help="torch threads in the child (0: default)")
    parser.add_argument("--json", help="write the rows here")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    rows = []
    print(f"{args.source or 'config ' + args.config}, K = {args.k}, method {args.method}, passes {args.passes}, "
          f"budget {args.memory_budget} MB")
    print(f"{'N':>7} {'method':>10} {'passes':>6} {'chunk':>6} {'peak RSS MB':>12} {'vs first':>9} {'s':>8}")
    for n in (int(x) for x in args.ns.split(",")):
        cmd = [sys.executable, __file__, "--child", "--n", str(n)] + [
            f"--{k.replace('_', '-')}={v}" for k, v in vars(args).items()
            if k in ("config", "source", "k", "method", "memory_budget", "passes", "heldout", "batch_size", "threads")]
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
        if proc.returncode != 0:
            print(f"{n:>7} failed:\n{proc.stderr[-2000:]}")
            rows.append({"n": n, "failed": proc.stderr[-2000:]})
            continue
        row = json.loads(proc.stdout.strip().splitlines()[-1])
        rows.append(row)
        first = next(r for r in rows if "peak_mb" in r)
        print(f"{n:>7} {row['method']:>10} {row['passes']:>6} {row['chunk_rows']:>6} {row['peak_mb']:>12.0f} "
              f"{row['peak_mb'] / first['peak_mb']:>8.2f}x {row['seconds']:>8.0f}", flush=True)
    done = [r for r in rows if "peak_mb" in r]
    if len(done) >= 2:
        growth = done[-1]["peak_mb"] / done[0]["peak_mb"]
        print(f"growth N = {done[0]['n']} -> {done[-1]['n']}: {growth:.2f}x (target < 1.3x); "
              f"{done[0]['gaussians']} Gaussians, model + torch alone {done[0]['model_mb']:.0f} MB")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
