"""How much the demo model's 64² UV attribute planes alone cost in SWD (README "The demo").

The generator's colours come from UV planes of `generator.uv_resolution` texels (64 for the shipped
demo model). This re-renders real images of a synthetic dataset (`agora prep-data --synthetic`) with
their exact geometry and camera but their albedo passed through an R² UV texture (baked at the texel
centres, islands grown by a few texels, sampled bilinearly as the generator samples its planes), and
measures the SWD of those images against other real images, per pyramid level, beside the SWD of two
real sets (the floor). A texture of R² texels whose images stay near the floor cannot be what keeps
a model at R² planes above it.

    python benchmarks/demo_uv_ceiling.py DATA [--n 500] [--textures 64 128]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch


def texture_albedo(renderer, raster, per_vertex: torch.Tensor) -> torch.Tensor:
    """[M, 3] albedo at the renderer's surface samples, read from `per_vertex` baked into the UV
    texture of `raster` (`head.build_uv_raster` of the head's layout)."""
    image = raster.bake(per_vertex[None], renderer.head.faces)[0]
    mask = raster.valid[None].to(image.dtype)
    box = torch.ones(1, 1, 3, 3)
    for _ in range(4):  # grow the islands so that bilinear reads at their borders meet texture, not zeros
        total = torch.nn.functional.conv2d(image[None], box.expand(3, 1, 3, 3), padding=1, groups=3)[0]
        count = torch.nn.functional.conv2d(mask[None], box, padding=1)[0]
        grow = (mask == 0) & (count > 0)
        image = torch.where(grow, total / count.clamp(min=1), image)
        mask = torch.where(grow, torch.ones_like(mask), mask)
    uv = renderer.samples.x_uv
    grid = torch.stack([uv[:, 0] * 2 - 1, (1 - uv[:, 1]) * 2 - 1], -1)[None, None]
    return torch.nn.functional.grid_sample(image[None], grid, mode="bilinear", align_corners=False)[0, :, 0].T


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("data", type=Path, help="a synthetic dataset (agora prep-data --synthetic N DATA)")
    p.add_argument("--n", type=int, default=500, help="images per set (the data needs 2n)")
    p.add_argument("--textures", type=int, nargs="+", default=[64, 128], help="UV texture sizes to try")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    from agora_core.data.synthetic import DemoHeadRenderer, synthetic_draws
    from agora_core.head import build_uv_raster
    from agora_core.data.torch_dataset import HeadImageDataset
    from agora_core.metrics.swd import swd

    if not (args.data / "synthetic.json").is_file():
        raise SystemExit(f"{args.data}: not a synthetic dataset (no synthetic.json); make one with agora prep-data --synthetic")
    settings = json.loads((args.data / "synthetic.json").read_text())
    n, total, seed = args.n, settings["n"], settings["seed"]
    if 2 * n > total:
        raise SystemExit(f"{args.data}: holds {total} images, --n {n} needs {2 * n}")
    dataset = HeadImageDataset(args.data, resolution=settings["resolution"])
    reals_a = torch.stack([dataset[i]["image"] for i in range(n)])
    rows_b = list(range(n, 2 * n))
    reals_b = torch.stack([dataset[i]["image"] for i in rows_b])
    renderer = DemoHeadRenderer()
    flame, cameras, identities = synthetic_draws(renderer.head, total, seed)

    def rendered(albedo_of) -> torch.Tensor:
        """The images of rows_b with albedo_of(identity) as their [M, 3] albedo."""
        out = []
        for start in range(0, n, 50):
            rows = rows_b[start:start + 50]
            albedo = torch.stack([albedo_of(identities[i]) for i in rows])
            out.append(renderer.render(albedo, flame[rows], cameras.select(torch.as_tensor(rows)), settings["resolution"]))
        return torch.cat(out)

    exact = rendered(renderer.albedo)
    if (exact - reals_b).abs().max() > 3.0 / 255:  # the stored PNGs: these renders in 8 bits (2 levels apart at most here)
        raise SystemExit(f"{args.data}: its images are not what this version renders for their labels")
    t0 = time.perf_counter()
    rows = {"two real sets (floor)": reals_b}
    head = renderer.head
    rasters = {r: build_uv_raster(head.uv_coords, head.uv_faces, r) for r in args.textures}  # once per size
    rows.update({f"albedo through a {r}² UV texture":
                 rendered(lambda identity, r=r: texture_albedo(renderer, rasters[r], renderer.vertex_albedo(identity)))
                 for r in args.textures})
    print(f"SWD ×1e3 against {n} other real images (per pyramid level, then the mean):")
    for name, images in rows.items():
        r = swd(reals_a, images, descriptors_per_image=128, directions=512, seed=0)
        print(f"  {name:<34} " + "  ".join(f"{k} {v:6.2f}" for k, v in r.items()))
    print(f"({time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
