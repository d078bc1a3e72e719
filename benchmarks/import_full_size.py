"""The authors' full-size stage-2 generator (184,599 Gaussians at 512²) through the import path.

Random weights in the exact tensor layout of `shared/fixtures/official/full_size_state_schema.json`
(the released checkpoint-20500 architecture), the FLAME/template arrays of the fixture checkpoint,
the UV grid by their rule at n = 512. Measures, in one run on this machine: conversion time and
peak memory of the import, the identity branch once, and per frame AGORA (FLAME + deformation
branch + lifting) vs AGORA-M (their regressor shape (256, 512), K = 64 random blendshapes in their
attribute spaces: the cost of a frame, not its pixels), each with rasterisation at 512² on the CPU.

    .venv/bin/python benchmarks/import_full_size.py [--frames 5] [--threads N]
    .venv/bin/python benchmarks/import_full_size.py --save runs/full-size   # also write it as a run

`--save RUN` writes that generator as an imported run folder through `agora import`'s writer, so
every stage can read it, e.g. `benchmarks/extract_basis_memory.py --source RUN` (full-size
extract-basis memory).
"""

from __future__ import annotations

import argparse
import json
import lzma
import resource
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=5)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--save", type=Path, default=None, help="also write the generator as an imported run folder")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from format_fixtures import FIXTURES

    from agora_core.head import HeadModel
    from agora_core.importer.official_checkpoint import (
        convert_official_state,
        official_generator_config,
        official_head_assets,
        official_uv_grid,
        read_official_checkpoint,
    )
    from agora_core.inference import neutral_flame
    from agora_core.models.agora_generator import AgoraGenerator
    from agora_core.render import rasterize
    from agora_core.render.cameras import deca_camera, deca_mapping_label

    official = FIXTURES / "official"
    with tempfile.TemporaryDirectory() as tmp:
        pkl = Path(tmp) / "ckpt.pkl"
        with lzma.open(official / "agora_official_format_random.pkl.xz") as f, open(pkl, "wb") as g:
            shutil.copyfileobj(f, g)
        ckpt = read_official_checkpoint(pkl)
    schema = json.loads((official / "full_size_state_schema.json").read_text())
    gen = torch.Generator().manual_seed(0)
    for entry in schema["entries"]:
        name = entry["name"]
        if entry["kind"] != "state_dict" or not name.startswith(("backbone.", "deformation_generator.", "_zero", "_deformation_zero")):
            continue
        shape = tuple(entry["shape"])
        ckpt.state[name] = (torch.randn(shape, generator=gen) if not name.endswith(("noise_strength", "resample_filter"))
                            else torch.zeros(shape))
    ckpt.config["synthesis_network_config"].update(channel_base=32768, channel_max=512)
    ckpt.config["n_uniform_flame_vertices"] = 512
    ckpt.state["_uv_grid"] = official_uv_grid(ckpt.state["_barim"], 512)[None, :, None]

    if args.save:
        from agora_core.importer.run_folder import write_imported_run

        t0 = time.perf_counter()
        write_imported_run(ckpt, official / "full_size_state_schema.json", args.save)
        print(f"wrote {args.save} ({time.perf_counter() - t0:.1f} s)")
    t0 = time.perf_counter()
    config = official_generator_config(ckpt)
    G = AgoraGenerator(config, HeadModel(official_head_assets(ckpt)))
    G.load_state_dict(convert_official_state(ckpt, G))
    G.eval().requires_grad_(False)
    import_s = time.perf_counter() - t0
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    n_params = sum(p.numel() for p in G.parameters())
    print(f"Gaussians {G.num_gaussians:,}, generator parameters {n_params:,} (schema: {schema['n_parameters']:,} incl. buffers)")
    print(f"import (config + head + generator + weights): {import_s:.2f} s, peak RSS so far {peak_mb:.0f} MB")

    cam = torch.tensor([[0.0, 0.0, 0.0, 8.0, 0.0, 0.0]])
    with torch.no_grad():
        t0 = time.perf_counter()
        cache = G.identity(torch.randn(1, 512, generator=gen), deca_mapping_label(cam), torch.zeros(1, 300), 0.7,
                           noise_mode="const")
        identity_s = time.perf_counter() - t0
        neutral = neutral_flame(G, 1)
        _, joints = G.head.forward_with_joints(neutral.replace(shape=torch.zeros(1, 300)))
        camera = deca_camera(cam, joints[:, 0])
        from agora_core.bench.bench_setup import random_basis, random_regressor
        from agora_core.mobile.blendshape_avatar import BlendshapeAvatar

        basis = random_basis(G.num_gaussians, 64, 0)
        basis.extra["attribute_space"] = "authors"
        avatar = BlendshapeAvatar.from_generator(G, cache, basis, random_regressor(512, 50, 64, (256, 512), 0))
        animate, render, mobile, mobile_render = [], [], [], []
        for i in range(args.frames + 1):
            frame = neutral.replace(expression=0.5 * torch.randn(1, 50, generator=gen))
            t0 = time.perf_counter()
            out = G.animate(cache, frame, noise_mode="const").gaussians
            t1 = time.perf_counter()
            rasterize(out, camera, 512, 512, background=1.0)
            t2 = time.perf_counter()
            out_m = avatar.animate(frame)
            t3 = time.perf_counter()
            rasterize(out_m, camera, 512, 512, background=1.0)
            t4 = time.perf_counter()
            if i:  # the first frame warms up
                animate.append(t1 - t0)
                render.append(t2 - t1)
                mobile.append(t3 - t2)
                mobile_render.append(t4 - t3)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    a, r = statistics.median(animate), statistics.median(render)
    print(f"identity branch once: {identity_s:.2f} s")
    print(f"AGORA per frame (median of {args.frames}, threads {torch.get_num_threads()}): "
          f"animate {a * 1000:.0f} ms, rasterise 512² {r * 1000:.0f} ms, total {(a + r) * 1000:.0f} ms")
    m, mr = statistics.median(mobile), statistics.median(mobile_render)
    print(f"AGORA-M per frame: blend {m * 1000:.1f} ms, rasterise 512² {mr * 1000:.0f} ms, total {(m + mr) * 1000:.0f} ms")
    print(f"AGORA-M / AGORA speed-up (this run): {(a + r) / (m + mr):.2f}× with rasterisation, {a / m:.1f}× without")
    print(f"peak RSS {peak_mb:.0f} MB")


if __name__ == "__main__":
    main()
