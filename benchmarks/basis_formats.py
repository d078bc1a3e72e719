"""How far AGORA-M's fixed-point basis formats (int16, int8: mobile/fixed_point_basis.py) move the render
of a trained model from the float32 basis's. Not a test: it prints a table and writes JSON.

    PYTHONPATH=$PWD .venv/bin/python benchmarks/basis_formats.py MODEL BASIS [--identities 4] [--frames 24] [--size 512]

MODEL: a model folder, run or checkpoint (e.g. models/demo); BASIS: its `agora extract-basis` output.
For each identity (`agora sample --seed i`) and driving frame (the synthetic data's expression, jaw and
eyelid statistics), the coefficients are the basis's projection of the full model's residuals (eq. 9),
so that only the number format differs between the three blends; each is rendered at --size from the
front. Reported per format: PSNR of the render against the float32 basis's (mean over frames and the
worst frame), the largest difference of a Gaussian's position (mm), and, for scale, the PSNR of the
float32 AGORA-M render against the full model's (what the K-component basis itself gives up).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("model", help="model folder, run folder or checkpoint")
    p.add_argument("basis", type=Path, help="its AGORA-M basis (agora extract-basis)")
    p.add_argument("--identities", type=int, default=4)
    p.add_argument("--frames", type=int, default=24)
    p.add_argument("--size", type=int, default=512, help="render size in pixels")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args()
    torch.set_num_threads(args.threads)

    from agora_core.bench.reenactment import driving_sequence
    from agora_core.inference import load_model
    from agora_core.inference.model_source import draw_identity, neutral_gaussians
    from agora_core.invert.losses import psnr
    from agora_core.mobile.basis_file import GaussianBasis
    from agora_core.mobile.blendshape_avatar import BASIS_FORMATS, BlendshapeAvatar
    from agora_core.mobile.residuals import attribute_residuals
    from agora_core.render import FLAME_CAMERA_RADIUS, orbit_cameras, rasterize

    t0 = time.perf_counter()
    model = load_model(args.model)
    g = model.generator
    basis = GaussianBasis.load(args.basis)
    camera = orbit_cameras(torch.zeros(1), torch.zeros(1), radius=FLAME_CAMERA_RADIUS)
    flame = driving_sequence(g.head.num_expr, args.frames, seed=0, device=torch.device("cpu"))
    psnrs = {fmt: [] for fmt in BASIS_FORMATS if fmt != "float32"} | {"agora_m_vs_agora": []}
    moved = {fmt: 0.0 for fmt in BASIS_FORMATS if fmt != "float32"}
    for seed in range(args.identities):
        with torch.inference_mode():
            cache, _ = draw_identity(model, seed)
            neutral = neutral_gaussians(g, cache)
            avatars = {fmt: BlendshapeAvatar(neutral, basis, basis_format=fmt) for fmt in BASIS_FORMATS}
            for i in range(args.frames):
                posed = g.animate(cache, flame[i:i + 1], noise_mode="const").gaussians
                coefficients = basis.project(attribute_residuals(posed, neutral, basis.attribute_space))
                sets = {fmt: a.blend(coefficients) for fmt, a in avatars.items()}
                images = {fmt: rasterize(s, camera, args.size, args.size, background=1.0)[0] for fmt, s in sets.items()}
                full = rasterize(posed, camera, args.size, args.size, background=1.0)[0]
                psnrs["agora_m_vs_agora"].append(float(psnr(images["float32"], full)[0]))
                for fmt in moved:
                    psnrs[fmt].append(float(psnr(images[fmt], images["float32"])[0]))
                    moved[fmt] = max(moved[fmt], float((sets[fmt].means - sets["float32"].means).norm(dim=-1).max()))
    result = {"model": str(args.model), "basis": str(args.basis), "k": basis.k, "gaussians": g.num_gaussians,
              "identities": args.identities, "frames": args.frames, "size": args.size,
              "seconds": round(time.perf_counter() - t0, 1)}
    print(f"model {args.model}: {g.num_gaussians:,} Gaussians, basis K = {basis.k}; {args.identities} identities × "
          f"{args.frames} frames at {args.size}²")
    for name, values in psnrs.items():
        mean = sum(values) / len(values)
        result[name] = {"psnr_mean_db": mean, "psnr_worst_db": min(values)}
        line = f"  {name:<18} PSNR vs {'AGORA' if name == 'agora_m_vs_agora' else 'float32 basis'}: mean {mean:.1f} dB, worst frame {min(values):.1f} dB"
        if name in moved:
            result[name]["max_position_difference_mm"] = moved[name] * 1000
            line += f"; largest position difference {moved[name] * 1000:.4f} mm"
        print(line)
    print(f"({result['seconds']:.0f} s)")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
