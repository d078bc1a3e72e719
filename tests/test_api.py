"""The scripting API (agora_core/api.py): the README's example (examples/api_example.py, included
verbatim in the README) runs on a tiny untrained model, and its calls are the CLI's own."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import gsply
import numpy as np
import pytest
import torch
from test_invert_helpers import tiny_checkpoint

from agora_core import api
from agora_core.export.exporters import export_neutral

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "api_example.py"


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """The invert tests' tiny untrained demo-head checkpoint (32² renders), with the `sampling` entry
    (framing camera, shape prior) that drawing an identity reads, as `agora train` writes it."""
    from agora_core.render.cameras import orbit_cameras
    from agora_core.train.checkpoint import save_checkpoint

    from agora_core.head.build import build_head
    from agora_core.run_config import config_from_dict

    state = torch.load(tiny_checkpoint(), weights_only=True)
    num_shape = build_head(config_from_dict(state["config"]).head).num_shape
    state["sampling"] = {"camera": orbit_cameras(torch.zeros(1), torch.zeros(1), 1.3).to_label()[0],
                         "shape_mean": torch.zeros(num_shape), "shape_std": 0.5 * torch.ones(num_shape)}
    return save_checkpoint(tmp_path_factory.mktemp("run") / "kimg000001.pt", state)


def _example():
    spec = importlib.util.spec_from_file_location("api_example", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_readme_shows_the_example_file_verbatim():
    readme = (ROOT / "README.md").read_text()
    code = EXAMPLE.read_text()
    assert f"```python\n{code}```" in readme, "README's 'Driving and exporting' must include examples/api_example.py"


def test_the_example_runs_and_writes_every_file(run, tmp_path, capsys):
    _example().main(str(run), str(tmp_path), pti_steps=1)
    names = {p.name for p in tmp_path.iterdir()}
    assert {"avatar.ply", "avatar.splat", "frame_5.ply", "me.pt", "me.mp4", "views"} <= names, names
    n = api.load_avatar(run, seed=4).neutral.num_gaussians
    data = (tmp_path / "avatar.ply").read_bytes()
    assert len(data) - data.index(b"end_header\n") - len(b"end_header\n") == 248 * n  # SH degree 3 layout
    assert gsply.plyread(str(tmp_path / "frame_5.ply")).means.shape == (n, 3)
    assert "8 frames" in capsys.readouterr().out


def test_api_calls_are_the_clis(run, tmp_path):
    avatar = api.load_avatar(run, seed=4)
    a = api.export(avatar.neutral, tmp_path / "api.ply", sh_degree=3)
    b = export_neutral(run, tmp_path / "cli.ply", "ply", seed=4, sh_degree=3)  # what `agora export ply` runs
    assert a.read_bytes() == b.read_bytes()  # same model, same code: the same file
    driving = api.demo_driving(num_frames=3)
    flame = driving.flame()
    gaussians = api.animate(avatar, flame)
    assert gaussians.batch_size == 3
    neutral = {k: torch.zeros_like(v[:1]) for k, v in flame.as_dict().items()}  # a dict is taken too
    again = api.animate(avatar, neutral)
    torch.testing.assert_close(again.means, avatar.neutral.means, rtol=0, atol=1e-6)  # zero pose = neutral
    frames = api.render(gaussians, driving.cameras(), avatar.resolution)
    assert frames.shape == (3, 3, avatar.resolution, avatar.resolution)
    assert float(frames.min()) >= 0 and float(frames.max()) <= 1 and float((frames < 0.99).float().mean()) > 0.01
    assert not np.allclose(frames[0].numpy(), frames[2].numpy())  # the frames differ: it was animated
