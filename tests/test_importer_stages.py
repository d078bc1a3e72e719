"""The stages on an imported run (sample, export, doctor, reenact with the authors' driving files),
invert, eval and ONNX export. Tolerances:
`official_fixtures.py`."""

from __future__ import annotations

import pytest
import torch

from agora_core.head import FlameParams
from agora_core.errors import AgoraError
from agora_core.render.cameras import deca_camera
from official_fixtures import TOL, flame2020_dataset, rel


def test_sample_and_ply_splat_exports_run_on_an_imported_run(imported_run, tmp_path):
    from typer.testing import CliRunner

    from agora_cli.app import app
    from agora_core.gaussians import read_ply, read_splat

    runner = CliRunner()
    res = runner.invoke(app, ["sample", str(imported_run), "--n", "2", "--out", str(tmp_path / "g.png"),
                              "--ply", str(tmp_path / "ply"), "--resolution", "64"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "g.png").is_file() and len(list((tmp_path / "ply").glob("*.ply"))) == 2
    ply = read_ply(tmp_path / "ply" / "avatar_000.ply")
    assert ply.means.shape[1] == 2789 and torch.isfinite(ply.means).all()
    for kind in ("ply", "splat"):
        res = runner.invoke(app, ["export", kind, str(imported_run), "--seed", "0", "--out", str(tmp_path / f"a.{kind}")])
        assert res.exit_code == 0, res.output
    # the exported avatar is seed 0's identity: what `agora sample --seed 0 --n 1` draws (same batch,
    # same computation: equal to float32 rounding of the .ply round trip)
    res = runner.invoke(app, ["sample", str(imported_run), "--n", "1", "--out", str(tmp_path / "one.png"),
                              "--ply", str(tmp_path / "one"), "--resolution", "32"])
    assert res.exit_code == 0, res.output
    assert torch.allclose(read_ply(tmp_path / "a.ply").means, read_ply(tmp_path / "one" / "avatar_000.ply").means,
                          atol=1e-6)
    assert read_splat(tmp_path / "a.splat") is not None


def test_onnx_export_of_an_imported_run_matches_its_animate(imported_run, tmp_path):
    """The graph of an imported model (with the tap skip image their G_d starts from) reproduces
    `animate` through onnxruntime; its per-frame inputs come from `frame_inputs`."""
    from agora_core.export.exporters import PARITY_MAX_RELATIVE, export_onnx
    from agora_core.export.onnx_export import DeformationLifting, frame_inputs
    from agora_core.export.sources import load_avatar_source
    from agora_core.inference import neutral_flame

    report = export_onnx(imported_run, tmp_path / "a.onnx", seed=0)  # raises unless onnxruntime agrees
    assert report.num_gaussians == 2789 and report.max_relative_error <= PARITY_MAX_RELATIVE
    import onnx

    graph = onnx.load(str(tmp_path / "a.onnx")).graph
    assert [i.name for i in graph.input][-1] == "tap_skip_image"
    # the graph's module is animate after FLAME: the same Gaussians as the full model (same arithmetic)
    avatar = load_avatar_source(imported_run, seed=0)
    g = avatar.generator
    frame = neutral_flame(g)
    frame.expression[0, :3], frame.jaw[0, 0], frame.eyelids[0] = torch.tensor([1.0, -0.5, 0.3]), 0.2, 0.4
    with torch.no_grad():
        ours = DeformationLifting(g)(*frame_inputs(g, avatar.cache, frame).as_tuple())
        full = g.animate(avatar.cache, frame, noise_mode="const").gaussians
    for got, want in zip(ours, (full.means, full.log_scales, full.quats, full.opacities)):
        assert rel(got, want) < TOL


def test_invert_runs_on_an_imported_run_from_a_photo_and_a_dataset(imported_run, tmp_path, monkeypatch):
    """PTI (which the authors did not release) on their model: a photo through SMIRK/MODNet, and a
    SMIRK-parameter ("flame2020") dataset; the avatars rebuild on the run's head and export."""
    import cv2
    from typer.testing import CliRunner

    from agora_cli.app import app
    from agora_core.invert.avatar_file import AvatarFile, build_avatar_generator
    from face_helpers import SMIRK_FIXTURE, astronaut, write_mean_sigmoid_onnx
    from test_invert_helpers import share_smirk

    share_smirk(monkeypatch)
    fast = ["--w-steps", "1", "--g-steps", "1", "--no-progress"]  # a step costs seconds: G's 256² planes
    photo = tmp_path / "astronaut.png"
    cv2.imwrite(str(photo), cv2.cvtColor(astronaut(), cv2.COLOR_RGB2BGR))
    modnet = write_mean_sigmoid_onnx(tmp_path / "modnet.onnx")
    res = CliRunner().invoke(app, ["invert", str(photo), "--ckpt", str(imported_run), "--out", str(tmp_path / "a.pt"),
                                   "--smirk", str(SMIRK_FIXTURE), "--modnet", str(modnet), *fast])
    assert res.exit_code == 0, res.output
    assert "warning" not in res.output  # SMIRK's parameters drive the authors' head
    avatar = AvatarFile.load(tmp_path / "a.pt")
    assert avatar.resolution == 512 and avatar.crops.shape == (1, 512, 512, 3) and avatar.mapping_camera.shape == (12,)
    G = build_avatar_generator(avatar, tmp_path / "a.pt")
    assert G.num_gaussians == 2789 and G.head.model_id == avatar.head_model
    res = CliRunner().invoke(app, ["export", "splat", str(tmp_path / "a.pt"), "--out", str(tmp_path / "a.splat")])
    assert res.exit_code == 0, res.output
    # a dataset of SMIRK ("flame2020") parameters: the demo identity's views, relabelled
    data = flame2020_dataset(tmp_path / "data")
    res = CliRunner().invoke(app, ["invert", "--dataset", str(data), "--index", "2", "--ckpt", str(imported_run),
                                   "--out", str(tmp_path / "d.pt"), "--w-steps", "1", "--g-steps", "0", "--no-progress"])
    assert res.exit_code == 0, res.output
    assert AvatarFile.load(tmp_path / "d.pt").sources == [f"{data}:2"]


def test_eval_runs_on_an_imported_run(imported_run, tmp_path):
    """SWD and the ID metric (a stand-in embedder) of an imported model against a dataset: dataset cameras
    render it and condition its mapping through `inference.mapping_labels` (tiny sizes)."""
    from agora_core.metrics.evaluate import Evaluators, evaluate
    from agora_core.metrics.protocol import QUICK_PROTOCOL
    import dataclasses

    class Embedder:
        def embed(self, images):
            return torch.nn.functional.normalize(images.mean(dim=(2, 3)), dim=1)

    protocol = dataclasses.replace(QUICK_PROTOCOL, swd_images=2, id_pairs=2, batch=2)
    doc = evaluate(imported_run, flame2020_dataset(tmp_path / "data"), ("id", "swd"), protocol,
                   evaluators=Evaluators(embedder=Embedder()), progress=False)
    assert doc["resolution"] == 512 and doc["kimg"] is None
    assert doc["metrics"]["swd"]["status"] == "ok" and doc["metrics"]["swd"]["value"] >= 0
    assert doc["metrics"]["id"]["status"] == "ok" and -1 <= doc["metrics"]["id"]["value"] <= 1


def test_doctor_shows_an_imported_run(imported_run):
    from typer.testing import CliRunner

    from agora_cli.app import app

    res = CliRunner().invoke(app, ["doctor", "--run", str(imported_run)])
    assert res.exit_code in (0, 1), res.output  # 1 only when this machine cannot run the demo
    assert "imported run" in res.output and "2,789" in res.output and "DECA" in res.output


# --- reenactment of an imported run --------------------------------------------------------------------
def _smirk_clip(root, frames: int = 5):
    """A clip in the authors' per-frame SMIRK layout (<clip>/smirk/<frame>/*.npy)."""
    import numpy as np

    rng = np.random.default_rng(0)
    rows = {"exp": rng.normal(0, 0.5, (frames, 50)), "jawpose": np.c_[np.linspace(0, 0.2, frames), np.zeros((frames, 2))],
            "eyelid": rng.uniform(0, 1, (frames, 2)), "globalpose": np.c_[np.zeros(frames), np.linspace(-0.2, 0.2, frames),
                                                                            np.zeros(frames)],
            "shape": rng.normal(size=(frames, 300)), "cam": np.tile([8.0, 0.01, -0.02], (frames, 1))}
    for i in range(frames):
        d = root / "smirk" / f"{i:06d}"
        d.mkdir(parents=True)
        for name, values in rows.items():
            np.save(d / f"{name}.npy", values[i : i + 1].astype(np.float32))
    return rows


def test_smirk_clip_folders_are_read_as_driving_parameters(tmp_path):
    import numpy as np

    from agora_core.reenact.driving import DrivingSequence

    rows = _smirk_clip(tmp_path / "clip")
    seq = DrivingSequence.load(tmp_path / "clip")
    assert seq.num_frames == 5
    for ours, theirs in (("expression", "exp"), ("jaw", "jawpose"), ("eyelids", "eyelid"), ("global_pose", "globalpose")):
        assert torch.equal(torch.as_tensor(getattr(seq, ours)), torch.as_tensor(rows[theirs]).float())  # copies
    (tmp_path / "clip" / "smirk" / "000002" / "jawpose.npy").unlink()
    with pytest.raises(AgoraError, match="jawpose.npy: missing"):
        DrivingSequence.load(tmp_path / "clip")
    for bad in (b"", b"\x93NUMPY junk", np.zeros(7, np.float32).tobytes()):
        (tmp_path / "clip" / "smirk" / "000002" / "jawpose.npy").write_bytes(bad)
        with pytest.raises(AgoraError, match="jawpose.npy"):
            DrivingSequence.load(tmp_path / "clip")
    np.save(tmp_path / "clip" / "smirk" / "000002" / "jawpose.npy", np.zeros(4, np.float32))
    with pytest.raises(AgoraError, match="holds 4 values, expected 3"):
        DrivingSequence.load(tmp_path / "clip")


def test_reenact_drives_an_imported_run_with_their_camera_convention(imported_run, tmp_path):
    from typer.testing import CliRunner

    from agora_cli.app import app
    from agora_core.inference import load_model
    from agora_core.invert.video_io import VideoReader

    _smirk_clip(tmp_path / "clip")
    res = CliRunner().invoke(app, ["reenact", str(imported_run), "--params", str(tmp_path / "clip"), "--seed", "0",
                                   "--out", str(tmp_path / "a.mp4"), "--resolution", "32", "--no-smooth"])
    assert res.exit_code == 0, res.output
    assert len(VideoReader(tmp_path / "a.mp4").read_all()) == 5
    res = CliRunner().invoke(app, ["reenact", str(imported_run), "--params", str(tmp_path / "clip"),
                                   "--out", str(tmp_path / "b.mp4")])
    assert res.exit_code == 2 and "--seed" in res.output
    # the cameras: the framing's DECA camera rotated by each frame's head pose about its root joint
    model = load_model(imported_run)
    head, n = model.generator.head, 3
    zeros = lambda k: torch.zeros(n, k)  # noqa: E731
    pose = torch.tensor([[0.0, -0.2, 0.0], [0.0, 0.0, 0.0], [0.1, 0.2, 0.0]])
    flame = FlameParams(expression=zeros(50), jaw=zeros(3), neck=zeros(3), eyes=zeros(6), eyelids=zeros(2))
    cams = model.cameras(torch.zeros(1, 300), pose, flame)
    _, joints = head.forward_with_joints(flame.replace(shape=zeros(300)))
    expected = deca_camera(torch.cat([pose, model.framing[3:].expand(n, 3)], 1), joints[:, 0])
    assert rel(cams.cam2world, expected.cam2world) < TOL and rel(cams.intrinsics, expected.intrinsics) < TOL
    assert rel(cams.intrinsics[:, 0, 0], torch.full((n,), 0.5 * 8 * 2.28)) < TOL  # s = 8 framing


def test_reenact_an_imported_run_from_a_video(imported_run, tmp_path):
    """The video path (face tracking through the SMIRK-format fixture) drives an imported identity."""
    from typer.testing import CliRunner

    from agora_cli.app import app
    from agora_core.invert.video_io import VideoReader
    from face_helpers import SMIRK_FIXTURE, write_astronaut_video, write_mean_sigmoid_onnx

    video = write_astronaut_video(tmp_path / "astronaut.mp4", frames=4, dx=4, dy=2)
    modnet = write_mean_sigmoid_onnx(tmp_path / "modnet.onnx")
    res = CliRunner().invoke(app, ["reenact", str(imported_run), str(video), "--seed", "1", "--out",
                                   str(tmp_path / "v.mp4"), "--smirk", str(SMIRK_FIXTURE), "--modnet", str(modnet),
                                   "--side-by-side", "--resolution", "32", "--size", "32", "--no-progress"])
    assert res.exit_code == 0, res.output
    frames = VideoReader(tmp_path / "v.mp4").read_all()
    assert len(frames) == 4 and frames[0].shape == (32, 64, 3)  # driving crop | avatar


def test_reenact_drives_an_avatar_inverted_from_an_imported_run(imported_run, tmp_path):
    """An avatar.pt PTI made on an imported model (its head rebuilt from the run's head file) is driven
    by agora's .npz and the authors' driving_sequence.json: the driving cameras render it, the DECA
    mapping label it was inverted at conditions it."""
    import json

    import numpy as np
    from typer.testing import CliRunner

    from agora_cli.app import app
    from agora_core.invert.video_io import VideoReader
    from agora_core.reenact.demo_sequence import make_demo_sequence

    runner = CliRunner()
    data = flame2020_dataset(tmp_path / "data")
    res = runner.invoke(app, ["invert", "--dataset", str(data), "--index", "1", "--ckpt", str(imported_run),
                              "--out", str(tmp_path / "a.pt"), "--w-steps", "1", "--g-steps", "0", "--no-progress"])
    assert res.exit_code == 0, res.output
    params = make_demo_sequence(4, 10.0, seed=2).save(tmp_path / "drive.npz")
    res = runner.invoke(app, ["reenact", str(tmp_path / "a.pt"), "--params", str(params), "--out", str(tmp_path / "n.mp4"),
                              "--resolution", "32", "--size", "32", "--no-progress"])
    assert res.exit_code == 0, res.output
    frames = VideoReader(tmp_path / "n.mp4").read_all()
    assert len(frames) == 4 and frames[0].shape == (32, 32, 3)
    assert np.ptp(np.stack(frames).astype(float), axis=0).max() > 0  # the expressions move the avatar
    rng = np.random.default_rng(0)
    doc = {"num_frames": 3, "params_dim": 55, "fps": 25.0, "frames": (0.3 * rng.normal(size=(3, 55))).tolist()}
    (tmp_path / "driving_sequence.json").write_text(json.dumps(doc))
    res = runner.invoke(app, ["reenact", str(tmp_path / "a.pt"), "--params", str(tmp_path / "driving_sequence.json"),
                              "--out", str(tmp_path / "j.mp4"), "--resolution", "32", "--size", "32", "--no-smooth",
                              "--no-progress"])
    assert res.exit_code == 0, res.output
    assert len(VideoReader(tmp_path / "j.mp4").read_all()) == 3
