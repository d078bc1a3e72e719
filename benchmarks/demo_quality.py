"""Quality of a model against its training data: the numbers the README reports for
the shipped demo model. Not a test: it prints a table and writes JSON.

    python benchmarks/demo_quality.py models/demo DATA [--json quality.json] [--grid docs/demo_expressions.png]

1. SWD (×1e3, `metrics.swd.swd`, the training monitor's descriptors) of N generated images vs N real
   images, at the model's resolution, against the floor: the SWD between two disjoint sets of N real
   images. The generated images use the (camera, FLAME) of the N real rows (as `agora eval` and the
   training monitor do), so only the image distribution differs; z is fresh.
2. Identity diversity: mean pairwise distance between 64 generated images vs the same for the 64 real
   images whose (camera, FLAME) they were rendered with. Distance: pixel L2, the root-mean-square
   difference over all pixels and channels in [0, 1] (no perceptual network: their weights are not
   shipped). Pose and expression are matched pair for pair, so the ratio compares identities.
3. Expressions: the training monitor's grid (rows: neutral, the widest jaw of the data, then the
   strongest expressions; columns: identities), rendered at the model's resolution and enlarged.
4. Few-shot inversion of a held-out identity (a demo identity no training image shows): PTI on
   views 0-2, PSNR on those inputs and on the held-out fourth view, before (pivot) and after tuning.
5. Where the SWD gap lies: the mean absolute difference between the mean generated image and the
   mean real image (against the same between the two real sets), and the SWD after matching the
   generated images' per-channel mean and standard deviation to the real ones' (if colour were the
   gap, this would close it); `--mean-png` draws the two mean images and their difference (×4).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch


def swd_and_diversity(model, data: Path, n: int, diversity_n: int, seed: int, descriptors: int, directions: int,
                      mean_png: Path | None = None) -> dict:
    from agora_core.data.torch_dataset import HeadImageDataset
    from agora_core.inference import render_generator
    from agora_core.data.conditions import ConditionSampler
    from agora_core.metrics.swd import swd

    res = model.resolution
    dataset = HeadImageDataset(data, resolution=res)
    if len(dataset) < 2 * n:
        raise SystemExit(f"{data}: {len(dataset)} images; the SWD floor needs 2 × --n = {2 * n}")
    perm = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed))
    rows_a, rows_b = perm[:n], perm[n:2 * n]
    reals_a = torch.stack([dataset[int(i)]["image"] for i in rows_a])
    reals_b = torch.stack([dataset[int(i)]["image"] for i in rows_b])
    conditions = ConditionSampler(dataset.index, xflip=False, seed=seed)
    c, flame = conditions.take(rows_a)
    z = torch.randn(n, model.generator.config.z_dim, generator=torch.Generator().manual_seed(seed + 1))
    t = time.perf_counter()
    fakes = render_generator(model.generator, z, c, flame, res, noise_mode="const")
    seconds = time.perf_counter() - t
    kw = dict(descriptors_per_image=descriptors, directions=directions, seed=seed)
    model_swd, floor = swd(reals_a, fakes, **kw)["swd"], swd(reals_a, reals_b, **kw)["swd"]
    fake_div, real_div = mean_pairwise_l2(fakes[:diversity_n]), mean_pairwise_l2(reals_a[:diversity_n])
    dims = (0, 2, 3)
    matched = ((fakes - fakes.mean(dims, keepdim=True)) / fakes.std(dims, keepdim=True) * reals_a.std(dims, keepdim=True)
               + reals_a.mean(dims, keepdim=True)).clamp(0, 1)
    if mean_png is not None:
        save_mean_images(reals_a.mean(0), fakes.mean(0), mean_png)
    return {"swd": model_swd, "swd_floor": floor, "swd_ratio": model_swd / floor, "swd_images": n,
            "swd_colour_matched": swd(reals_a, matched, **kw)["swd"],
            "mean_image_diff": float((fakes.mean(0) - reals_a.mean(0)).abs().mean()),
            "mean_image_diff_floor": float((reals_b.mean(0) - reals_a.mean(0)).abs().mean()),
            "render_seconds": round(seconds, 1),
            "diversity_samples": fake_div, "diversity_data": real_div, "diversity_ratio": fake_div / real_div,
            "diversity_images": diversity_n, "diversity_distance": "pixel RMS difference in [0, 1]"}


def save_mean_images(real: torch.Tensor, fake: torch.Tensor, out: Path, scale: int = 4) -> Path:
    """Real mean | generated mean | 0.5 + 4 × (generated − real), each [3, R, R] in [0, 1], enlarged."""
    import numpy as np
    from PIL import Image

    panels = [real, fake, (0.5 + 4 * (fake - real)).clamp(0, 1)]
    row = torch.cat([p.clamp(0, 1) for p in panels], dim=2)
    row = torch.nn.functional.interpolate(row[None], scale_factor=scale, mode="nearest")[0]
    out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((row.permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)).save(out)
    return out


def mean_pairwise_l2(images: torch.Tensor) -> float:
    """Mean over pairs i < j of the RMS pixel difference of images [B, 3, R, R] in [0, 1]."""
    flat = images.flatten(1).double()
    d = torch.cdist(flat, flat) / flat.shape[1] ** 0.5
    b = flat.shape[0]
    return float(d[torch.triu_indices(b, b, 1).unbind()].mean())


def expression_grid(model, data: Path, out: Path, cols: int, rows: int, size: int, seed: int) -> Path:
    from agora_core.data.torch_dataset import HeadImageDataset
    from agora_core.train.evaluation import sample_grid_inputs, save_sample_grid
    from agora_core.data.conditions import ConditionSampler

    dataset = HeadImageDataset(data, resolution=model.resolution)
    conditions = ConditionSampler(dataset.index, xflip=False, seed=seed)
    inputs = sample_grid_inputs(conditions, model.generator.config.z_dim, rows, cols, seed)
    return save_sample_grid(model.generator, inputs, model.resolution, out, display_resolution=size)


def heldout_inversion(source: str, identity_seed: int, w_steps: int, g_steps: int) -> dict:
    from agora_core.invert.checkpoint_io import load_base_generator
    from agora_core.invert.demo_data import make_demo_identity_dataset
    from agora_core.invert.pti import PTIConfig
    from agora_core.invert.run import invert
    from agora_core.invert.targets import target_from_dataset

    base = load_base_generator(source)
    with tempfile.TemporaryDirectory() as tmp:
        views = make_demo_identity_dataset(Path(tmp) / "identity", resolution=base.resolution, seed=identity_seed)
        head = base.generator.head
        target = target_from_dataset(views, [0, 1, 2], head, base.resolution)
        heldout = target_from_dataset(views, [3], head, base.resolution)
        r = invert(base, target, Path(tmp) / "avatar.pt", PTIConfig(w_steps=w_steps, g_steps=g_steps),
                   heldout=heldout, progress=False)
    return {"identity_seed": identity_seed, "w_steps": w_steps, "g_steps": g_steps,
            "psnr_inputs_before": r.psnr_pivot, "psnr_inputs_after": r.psnr_final,
            "psnr_heldout_before": r.psnr_heldout_pivot, "psnr_heldout_after": r.psnr_heldout_final}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("model", help="model folder (agora export model), run folder or checkpoint")
    p.add_argument("data", type=Path, help="the dataset it was trained on")
    p.add_argument("--n", type=int, default=1000, help="images per SWD set")
    p.add_argument("--diversity-n", type=int, default=64)
    p.add_argument("--grid", type=Path, default=Path("docs/demo_expressions.png"))
    p.add_argument("--grid-size", type=int, default=192, help="pixels per grid tile")
    p.add_argument("--mean-png", type=Path, default=None, help="draw mean real | mean generated | difference ×4")
    p.add_argument("--identity-seed", type=int, default=7, help="demo identity to invert (not in the data)")
    p.add_argument("--w-steps", type=int, default=100)
    p.add_argument("--g-steps", type=int, default=150)
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    from agora_core.inference import load_model

    model = load_model(args.model)
    t0 = time.perf_counter()
    result = {"model": str(args.model), "data": str(args.data), "resolution": model.resolution,
              "gaussians": model.generator.num_gaussians}
    result.update(swd_and_diversity(model, args.data, args.n, args.diversity_n, args.seed, 128, 512, args.mean_png))
    result["expression_grid"] = str(expression_grid(model, args.data, args.grid, 6, 4, args.grid_size, args.seed))
    result["inversion"] = heldout_inversion(args.model, args.identity_seed, args.w_steps, args.g_steps)
    result["seconds"] = round(time.perf_counter() - t0, 1)
    inv = result["inversion"]
    lines = [
        f"model {args.model}: {model.resolution}², {result['gaussians']:,} Gaussians",
        f"SWD ×1e3 ({args.n} vs {args.n}):  model {result['swd']:.2f}   floor (real vs real) {result['swd_floor']:.2f}"
        f"   ratio {result['swd_ratio']:.2f} (target ≤ 1.5)",
        f"diversity (pixel RMS, {args.diversity_n} images):  samples {result['diversity_samples']:.4f}   data "
        f"{result['diversity_data']:.4f}   ratio {result['diversity_ratio']:.2f} (target ≥ 0.8)",
        f"where the gap lies: mean-image |Δ| {result['mean_image_diff']:.4f} (real vs real "
        f"{result['mean_image_diff_floor']:.4f}); SWD with the samples' colour statistics matched to the data's "
        f"{result['swd_colour_matched']:.2f}",
        f"expression grid: {result['expression_grid']}",
        f"inversion (demo identity {inv['identity_seed']}, PTI {inv['w_steps']}+{inv['g_steps']} steps), PSNR dB "
        f"before → after tuning:  inputs {inv['psnr_inputs_before']:.2f} → {inv['psnr_inputs_after']:.2f}   "
        f"held-out view {inv['psnr_heldout_before']:.2f} → {inv['psnr_heldout_after']:.2f}",
        f"({result['seconds']:.0f} s)",
    ]
    print("\n".join(lines))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
