"""Driving and exporting from Python (README, "Driving and exporting"; tests/test_api.py runs it).

Usage: python examples/api_example.py RUN OUT   (RUN: a training run folder or checkpoint)
"""

import sys
from pathlib import Path

from agora_core import api


def main(run: str, out: str, pti_steps: int = 100) -> None:
    out = Path(out)
    # A drawn identity (as `agora sample RUN --seed 4`), exported for engines and viewers.
    avatar = api.load_avatar(run, seed=4)
    api.export(avatar.neutral, out / "avatar.ply", sh_degree=3)  # 62 floats: Unity, SuperSplat, three.js
    api.export(avatar.neutral, out / "avatar.splat")  # antimatter15's WebGL viewer

    # Animate it from FLAME parameters (a .npz / driving_sequence.json: api.load_driving(path)).
    driving = api.demo_driving(num_frames=8)
    gaussians = api.animate(avatar, driving.flame())  # one set of Gaussians per frame
    frames = api.render(gaussians, driving.cameras(), resolution=avatar.resolution)  # [8, 3, R, R] in [0, 1]
    api.export(gaussians, out / "frame_5.ply", frame=5)
    print(f"{gaussians.num_gaussians} Gaussians, frames {tuple(frames.shape)}")

    # Invert a person (here: synthetic demo-head views) and drive the avatar into a video.
    views = api.demo_views(out / "views", resolution=avatar.resolution)
    result = api.invert(run, out / "me.pt", dataset=views, index=[0, 1, 2],
                        settings=api.PTISettings(w_steps=pti_steps, g_steps=pti_steps), progress=False)
    print(f"PSNR {result.psnr_final:.1f} dB")
    video = api.reenact(result.avatar, driving, out / "me.mp4", progress=False)
    print(f"wrote {video.out} ({video.frames} frames)")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
