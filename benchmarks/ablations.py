"""Ablations of paper Tables 2 and 3 at demo scale: train each variant, print SWD and AED per variant.

    python benchmarks/ablations.py --data DATA --tracker tracker.pt --out runs/ablations --kimg 8

Every variant trains the same config (default configs/demo.yaml) on the same data with the same
seed and budget (--kimg), then is evaluated with `agora eval`'s code on the same protocol
(SWD; AED/AED-jaw/APD with the tracker; FID/KID and ID too when --inception / --arcface are
given). Runs are resumable: a variant whose run folder already holds its final checkpoint is
only re-evaluated. Results go to OUT/ablations.json and a table on stdout.

Variants (the config keys they set):
  Table 2 -- how G is conditioned on FLAME (β, ψ, θ):
    t2.1  single branch, mesh only      generator.deformation_branch=false, generator.shape_conditioning=none
    t2.2  single branch, β via mapping  generator.deformation_branch=false, generator.shape_conditioning=mapping
          (the paper's Exp. 2 feeds (β, ψ, θ) to the mapping network; ours feeds β only)
    t2.3  dual branch, no shape cond.   generator.deformation_branch=true,  generator.shape_conditioning=none
    t2.4  dual branch, spatial β (ours) generator.deformation_branch=true,  generator.shape_conditioning=spatial
  Table 3 -- the discriminator's expression conditioning (G as t2.4):
    t3.1  w/o dual discrimination       discriminator.cue=none
    t3.2  cGAN-style projection         discriminator.cue=projection
    t3.3  Next3D-style (UV-coloured)    discriminator.cue=uv
    t3.4  ours (displacement cue)       = t2.4 (same run)

This is a benchmark, not a test: at the default 8 kimg on a CPU each variant takes ~2.5 minutes;
--kimg 0.032 runs the whole pipeline in a few minutes to check it works (numbers meaningless).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

DUAL_SPATIAL = {"generator.deformation_branch": True, "generator.shape_conditioning": "spatial"}
VARIANTS: dict[str, tuple[str, dict]] = {
    "t2.1": ("T2 single branch, mesh only", {"generator.deformation_branch": False,
                                              "generator.shape_conditioning": "none"}),
    "t2.2": ("T2 single branch, β via mapping", {"generator.deformation_branch": False,
                                                  "generator.shape_conditioning": "mapping"}),
    "t2.3": ("T2 dual branch, no shape cond.", {"generator.deformation_branch": True,
                                                 "generator.shape_conditioning": "none"}),
    "t2.4": ("T2 dual, spatial β (ours)", {**DUAL_SPATIAL, "discriminator.cue": "displacement"}),
    "t3.1": ("T3 w/o dual discrimination", {**DUAL_SPATIAL, "discriminator.cue": "none"}),
    "t3.2": ("T3 cGAN-style projection", {**DUAL_SPATIAL, "discriminator.cue": "projection"}),
    "t3.3": ("T3 Next3D-style UV cue", {**DUAL_SPATIAL, "discriminator.cue": "uv"}),
}
SAME_RUN = {"t3.4": "t2.4"}  # Table 3's "ours" is Table 2's "ours"
COLUMNS = ("swd", "aed", "aed_jaw", "apd", "fid", "id")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, type=Path, help="dataset folder (agora prep-data --synthetic 1600 --resolution 64)")
    p.add_argument("--out", required=True, type=Path, help="folder for the runs and ablations.json")
    p.add_argument("--config", type=Path, default=REPO / "configs" / "demo.yaml")
    p.add_argument("--kimg", type=float, default=8.0, help="training budget per variant (thousands of images)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--variants", default=",".join([*VARIANTS, *SAME_RUN]),
                   help="comma-separated subset of " + ",".join([*VARIANTS, *SAME_RUN]))
    p.add_argument("--tracker", type=Path, help="FLAME tracker for AED/APD (agora train-tracker output or SMIRK_em1.pt)")
    p.add_argument("--inception", type=Path, help="Inception weights: adds FID/KID")
    p.add_argument("--arcface", type=Path, help="ArcFace ONNX: adds ID")
    p.add_argument("--identities", type=int, default=50, help="AED/APD identities (paper 500)")
    p.add_argument("--pairs", type=int, default=10, help="AED/APD pairs per identity (paper 20)")
    p.add_argument("--swd-images", type=int, default=256)
    p.add_argument("--fid-images", type=int, default=1000)
    p.add_argument("--id-pairs", type=int, default=100)
    p.add_argument("--set", dest="sets", action="append", default=[], help="extra config override key=value (all variants)")
    p.add_argument("--threads", type=int, default=0)
    return p.parse_args(argv)


def train_variant(args, name: str, overrides: dict) -> Path:
    """Train (or resume) one variant; returns its newest checkpoint."""
    from agora_core.inference.checkpoint import latest_checkpoint, load_checkpoint
    from agora_core.run_config import load_config, parse_set_options
    from agora_core.train.loop import train

    config = load_config(args.config, {**parse_set_options(args.sets), **overrides,
                                       "total_kimg": args.kimg, "seed": args.seed})
    run = args.out / name
    last = latest_checkpoint(run)
    if last is not None and load_checkpoint(last)["nimg"] >= round(args.kimg * 1000):
        return last
    return train(config, args.data, run, resume=True, progress=False, device="cpu")


def train_seconds(run: Path) -> float | None:
    """Wall time of a run from its log: the first "start" to the last "checkpoint" event."""
    path = run / "log.jsonl"
    if not path.is_file():
        return None
    events = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    start = next((e["time"] for e in events if e.get("event") == "start"), None)
    end = [e["time"] for e in events if e.get("event") == "checkpoint"]
    return None if start is None or not end else end[-1] - start


def evaluate_variant(args, checkpoint: Path) -> dict:
    from agora_core.metrics.evaluate import EvalWeights, evaluate
    from agora_core.metrics.protocol import ProtocolConfig

    metrics = ["swd"] + (["aed"] if args.tracker else []) + (["fid"] if args.inception else []) \
        + (["id"] if args.arcface else [])
    protocol = ProtocolConfig(fid_images=args.fid_images, fid_real_images=0, identities=args.identities,
                              pairs_per_identity=args.pairs, id_pairs=args.id_pairs, swd_images=args.swd_images,
                              seed=args.seed)
    order = ("fid", "kid", "id", "aed", "swd")
    doc = evaluate(checkpoint, args.data, tuple(m for m in order if m in metrics), protocol,
                   EvalWeights(inception=args.inception, arcface=args.arcface, tracker=args.tracker), progress=False)
    return doc


def format_table(rows: list[dict]) -> str:
    head = f"{'variant':<6} {'description':<34}" + "".join(f"{c:>10}" for c in COLUMNS) + f"{'train s':>9}"
    lines = [head, "-" * len(head)]
    for r in rows:
        cells = "".join(f"{r['metrics'][c]:>10.4g}" if r["metrics"].get(c) is not None else f"{'—':>10}"
                        for c in COLUMNS)
        lines.append(f"{r['variant']:<6} {r['description']:<34}{cells}{r['train_seconds']:>9.0f}")
    return "\n".join(lines)


def main(argv=None) -> None:
    args = parse_args(argv)
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    chosen = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [v for v in chosen if v not in VARIANTS and v not in SAME_RUN]
    if unknown:
        sys.exit(f"--variants: unknown {unknown}; known {list(VARIANTS) + list(SAME_RUN)}")
    args.out.mkdir(parents=True, exist_ok=True)
    rows, done = [], {}
    for name in chosen:
        run_name = SAME_RUN.get(name, name)
        description, overrides = VARIANTS[run_name]
        if run_name not in done:
            t0 = time.perf_counter()
            ckpt = train_variant(args, run_name, overrides)
            train_s = train_seconds(args.out / run_name) or time.perf_counter() - t0
            doc = evaluate_variant(args, ckpt)
            done[run_name] = (ckpt, train_s, doc)
            print(f"[{name}] trained in {train_s:.0f} s, evaluated: {ckpt}", flush=True)
        ckpt, train_s, doc = done[run_name]
        values = {k: v.get("value") for k, v in doc["metrics"].items() if v.get("status") == "ok"}
        rows.append({"variant": name, "description": "T3 ours (displacement cue)" if name == "t3.4" else description,
                     "overrides": overrides, "checkpoint": str(ckpt), "train_seconds": train_s, "metrics": values})
    summary = {"config": str(args.config), "data": str(args.data), "kimg": args.kimg, "seed": args.seed,
               "tracker": None if args.tracker is None else str(args.tracker),
               "protocol": next(iter(done.values()))[2]["protocol"] if done else None, "variants": rows}
    (args.out / "ablations.json").write_text(json.dumps(summary, indent=2))
    print()
    print(f"Ablations at demo scale: {args.kimg:g} kimg per variant, seed {args.seed}, config {args.config.name}")
    print(format_table(rows))
    print(f"\nwrote {args.out / 'ablations.json'}")


if __name__ == "__main__":
    main()
