"""`agora reenact` end to end (CliRunner): parameter files (agora .npz, the authors' JSON), a real
photo turned into a driving video tracked with the SMIRK-format fixture, AGORA-M, the demo's
ground truth side by side, and bad inputs (one line, exit 2, no partial video)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import typer
from face_helpers import SMIRK_FIXTURE, write_astronaut_video, write_mean_sigmoid_onnx
from test_invert_helpers import RES, demo_dataset, quick_avatar, share_smirk
from typer.testing import CliRunner

from agora_cli.reenact import demo_params, reenact
from agora_core.invert.video_io import Mp4Writer, VideoReader
from agora_core.reenact.demo_sequence import make_demo_sequence
from agora_core.reenact.driving import DrivingSequence
from agora_core.reenact.sound import has_audio

runner = CliRunner()


def _app() -> typer.Typer:
    app = typer.Typer()
    app.command("reenact")(reenact)
    app.command("reenact-demo-params")(demo_params)
    return app


def _invoke(*args):
    return runner.invoke(_app(), [str(a) for a in args])


def _error_line(result) -> str:
    assert result.exit_code == 2, result.output
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    return lines[0]


def _decoded(path: Path) -> tuple[list[np.ndarray], float]:
    reader = VideoReader(path)
    return reader.read_all(), reader.fps


def _only(folder: Path, *names: str) -> None:
    assert sorted(p.name for p in folder.iterdir()) == sorted(names)


@pytest.fixture(autouse=True)
def _one_smirk(monkeypatch):
    share_smirk(monkeypatch)


@pytest.fixture(scope="module")
def modnet(tmp_path_factory) -> Path:
    return write_mean_sigmoid_onnx(tmp_path_factory.mktemp("modnet") / "toy_modnet.onnx")


@pytest.fixture(scope="module")
def astronaut_video(tmp_path_factory) -> Path:
    """6 frames of the astronaut photo, shifted a few pixels each."""
    return write_astronaut_video(tmp_path_factory.mktemp("video") / "astronaut.mp4", frames=6, dx=4, dy=2)


def test_npz_params_with_ground_truth_side_by_side(tmp_path):
    params = make_demo_sequence(6, 12.0, seed=1).save(tmp_path / "drive.npz")
    out = tmp_path / "out" / "demo.mp4"
    result = _invoke("reenact", quick_avatar(), "--params", params, "--out", out, "--ground-truth", demo_dataset(),
                     "--side-by-side", "--size", "48", "--no-progress")
    assert result.exit_code == 0, result.output
    frames, fps = _decoded(out)
    assert len(frames) == 6 and fps == 12.0 and frames[0].shape == (48, 2 * 48, 3)  # both panels at --size
    _only(out.parent, "demo.mp4")
    # the ground truth (left) shows the demo person on white; the render (right) differs from it
    left, right = frames[3][:, :48].astype(float), frames[3][:, 48:].astype(float)
    assert left.mean() < 250 and np.abs(left - right).mean() > 1


def test_authors_json_params(tmp_path):
    rng = np.random.default_rng(0)
    doc = {"num_frames": 5, "params_dim": 55, "fps": 25.0, "frames": (0.3 * rng.normal(size=(5, 55))).tolist()}
    (tmp_path / "driving_sequence.json").write_text(json.dumps(doc))
    out = tmp_path / "j.mp4"
    result = _invoke("reenact", quick_avatar(), "--params", tmp_path / "driving_sequence.json", "--out", out,
                     "--no-smooth", "--no-progress")
    assert result.exit_code == 0, result.output
    frames, fps = _decoded(out)
    assert len(frames) == 5 and fps == 25.0 and frames[0].shape == (256, 256, 3)  # the default --size


def test_video_tracked_with_smirk(tmp_path, astronaut_video, modnet):
    out = tmp_path / "v.mp4"
    result = _invoke("reenact", quick_avatar(), astronaut_video, "--out", out, "--smirk", SMIRK_FIXTURE,
                     "--modnet", modnet, "--side-by-side", "--save-params", tmp_path / "tracked.npz",
                     "--smooth", "5,2", "--size", str(RES), "--no-progress")
    assert result.exit_code == 0, result.output
    frames, fps = _decoded(out)
    assert len(frames) == 6 and fps == 10.0 and frames[0].shape == (RES, 2 * RES, 3)
    assert not has_audio(out)  # a silent driving video gives a silent reenactment
    tracked = DrivingSequence.load(tmp_path / "tracked.npz")
    assert tracked.num_frames == 6 and tracked.expression.shape == (6, 50) and tracked.fps == 10.0
    assert np.isfinite(tracked.global_pose).all() and tracked.camera is None


def test_mobile_path(tmp_path):
    from agora_core.invert.avatar_file import AvatarFile
    from agora_core.mobile.basis_file import GaussianBasis
    from agora_core.mobile.coefficient_mlp import CoefficientMLP

    avatar = AvatarFile.load(quick_avatar())
    n, k = avatar.neutral["means"].shape[1], 4
    dims = {"xyz": 3, "scale": 3, "rotation": 4, "opacity": 1}
    gen = torch.Generator().manual_seed(0)
    basis = {g: 1e-3 * torch.linalg.qr(torch.randn(n * d, k, generator=gen))[0].T.contiguous() for g, d in dims.items()}
    ones = lambda: {g: torch.ones(k) for g in dims}  # noqa: E731  (safetensors refuses shared storage)
    GaussianBasis(basis, ones(), ones(), n).save(tmp_path / "basis.safetensors")
    CoefficientMLP(avatar.w.shape[1], 50, k, hidden=16).save(tmp_path / "mlp.safetensors", 0.0, 0.0)
    params = make_demo_sequence(4, 8.0).save(tmp_path / "d.npz")
    out = tmp_path / "m.mp4"
    result = _invoke("reenact", quick_avatar(), "--params", params, "--out", out, "--mobile", "--basis",
                     tmp_path / "basis.safetensors", "--mlp", tmp_path / "mlp.safetensors", "--no-progress")
    assert result.exit_code == 0, result.output
    assert "AGORA-M" in result.output and len(_decoded(out)[0]) == 4
    # the basis in fixed point: each value within a / 2L per component (int16: a_k / 65534; int8: its
    # run's a / 254), below a grey level on average
    for fmt in ("int16", "int8"):
        fixed = tmp_path / f"m_{fmt}.mp4"
        result = _invoke("reenact", quick_avatar(), "--params", params, "--out", fixed, "--mobile", "--basis",
                         tmp_path / "basis.safetensors", "--mlp", tmp_path / "mlp.safetensors", "--no-progress",
                         "--basis-format", fmt)
        assert result.exit_code == 0, result.output
        a, b = (np.asarray(_decoded(p)[0], dtype=np.float64) for p in (out, fixed))
        assert a.shape == b.shape and np.abs(a - b).mean() <= 1.0, fmt


def test_demo_params_command(tmp_path):
    result = _invoke("reenact-demo-params", tmp_path / "d.npz", "--frames", "10", "--fps", "5")
    assert result.exit_code == 0, result.output
    seq = DrivingSequence.load(tmp_path / "d.npz")
    assert seq.num_frames == 10 and seq.fps == 5.0


# ----------------------------------------------------------------------------- bad input

def _zero_frame_video(path: Path) -> Path:
    """An mp4 whose header is intact but whose frame data is zeroed: ffmpeg decodes nothing."""
    with Mp4Writer(path, 10) as w:
        for i in range(3):
            w.append(np.full((32, 32, 3), 60 * i, np.uint8))
        w.finish()
    data = bytearray(path.read_bytes())
    at = data.find(b"mdat")
    data[at + 4:] = bytes(len(data) - at - 4)
    path.write_bytes(bytes(data))
    return path


@pytest.mark.parametrize("kind, match", [
    ("corrupt", "bad.mp4: not a readable video"),
    ("zero", "zero.mp4: has a video stream but no decodable frames"),
    ("missing", "nope.mp4: no such file"),
])
def test_bad_driving_videos(tmp_path, kind, match):
    src = tmp_path / "in"
    src.mkdir()
    if kind == "corrupt":
        video = src / "bad.mp4"
        video.write_bytes(b"\x00\x01junk" * 100)
    elif kind == "zero":
        video = _zero_frame_video(src / "zero.mp4")
    else:
        video = src / "nope.mp4"
    out = tmp_path / "o" / "r.mp4"
    line = _error_line(_invoke("reenact", quick_avatar(), video, "--out", out, "--smirk", SMIRK_FIXTURE,
                               "--no-progress"))
    assert match in line
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


def test_avatar_of_another_head_model(tmp_path):
    doc = torch.load(quick_avatar(), weights_only=True)
    doc["head_model"] = "flame2020+mouth"
    torch.save(doc, tmp_path / "other.pt")
    params = make_demo_sequence(3, 8.0).save(tmp_path / "d.npz")
    line = _error_line(_invoke("reenact", tmp_path / "other.pt", "--params", params, "--out", tmp_path / "o" / "r.mp4",
                               "--no-progress"))
    assert "avatar of head model 'flame2020+mouth'" in line
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


@pytest.mark.parametrize("avatar, match", [("missing", "no such file"), ("junk", "not a readable avatar file"),
                                           ("checkpoint", "not an agora avatar file")])
def test_bad_avatar_files(tmp_path, avatar, match):
    from test_invert_helpers import tiny_checkpoint

    path = {"missing": tmp_path / "none.pt", "junk": tmp_path / "junk.pt", "checkpoint": tiny_checkpoint()}[avatar]
    if avatar == "junk":
        path.write_bytes(b"junk")
    params = make_demo_sequence(3, 8.0).save(tmp_path / "d.npz")
    line = _error_line(_invoke("reenact", path, "--params", params, "--out", tmp_path / "o" / "r.mp4", "--no-progress"))
    assert match in line


def test_flag_combinations(tmp_path):
    params = make_demo_sequence(3, 8.0).save(tmp_path / "d.npz")
    cases = [
        ((), "driving video or --params"),
        (("--params", params, "--side-by-side"), "needs --ground-truth"),
        (("--params", params, "--mobile"), "--mobile needs --basis"),
        (("--params", params, "--basis-format", "int16"), "applies to --mobile"),
        (("--params", params, "--smooth", "4,3"), "window must be odd"),
        (("--params", params, "--out", tmp_path / "x.avi"), "must end in .mp4"),
    ]
    for args, match in cases:
        assert match in _error_line(_invoke("reenact", quick_avatar(), *args, "--no-progress"))


def test_bad_params_file(tmp_path):
    np.savez(tmp_path / "bad.npz", expression=np.zeros((3, 50)))
    line = _error_line(_invoke("reenact", quick_avatar(), "--params", tmp_path / "bad.npz", "--out",
                               tmp_path / "o" / "r.mp4", "--no-progress"))
    assert "lacks 'jaw'" in line


def test_failure_while_rendering_leaves_no_video(tmp_path, monkeypatch):
    import agora_core.reenact.run as run

    calls = {"n": 0}
    real = run.rasterize

    def flaky(*a, **k):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("out of memory")
        return real(*a, **k)

    monkeypatch.setattr(run, "rasterize", flaky)
    params = make_demo_sequence(6, 8.0).save(tmp_path / "d.npz")
    out = tmp_path / "o" / "r.mp4"
    result = runner.invoke(_app(), ["reenact", str(quick_avatar()), "--params", str(params), "--out", str(out),
                                    "--batch", "2", "--no-progress"])
    assert isinstance(result.exception, RuntimeError)
    assert not any((tmp_path / "o").iterdir())


def test_onnxruntime_executor(tmp_path):
    """--executor onnxruntime: the avatar's Gaussians as torch animates them (tolerance and its reason:
    tests/test_export_onnx_executor.py; here the two agree far inside it), and a video."""
    from agora_core.invert.avatar_file import AvatarFile
    from agora_core.reenact.run import FullAvatar

    avatar = AvatarFile.load(quick_avatar())
    flame = make_demo_sequence(4, 8.0, seed=2).flame()
    still = flame
    flame = flame.replace(neck=flame.neck + 0.2, eyes=flame.eyes + 0.1)  # the per-frame path passes them to FLAME
    torch_avatar = FullAvatar.from_avatar(avatar, quick_avatar(), "cpu")
    onnx_avatar = FullAvatar.from_avatar(avatar, quick_avatar(), "cpu", executor="onnxruntime")
    assert torch_avatar.onnx is None and onnx_avatar.onnx is not None
    a, b = torch_avatar.animate(flame), onnx_avatar.animate(flame)
    assert (a.means - torch_avatar.animate(still).means).abs().max() > 1e-3
    torch.testing.assert_close(b.means, a.means, rtol=0, atol=1e-5)  # 1e-4 of the ~0.1 m means
    params = make_demo_sequence(3, 8.0).save(tmp_path / "d.npz")
    out = tmp_path / "r.mp4"
    result = _invoke("reenact", quick_avatar(), "--params", params, "--out", out, "--executor", "onnxruntime",
                     "--size", "16", "--no-progress")
    assert result.exit_code == 0, result.output
    assert len(_decoded(out)[0]) == 3
    assert "--mobile runs AGORA-M" in _error_line(_invoke("reenact", quick_avatar(), "--params", params, "--mobile",
                                                          "--basis", tmp_path / "b.safetensors", "--mlp",
                                                          tmp_path / "m.safetensors", "--executor", "onnxruntime",
                                                          "--no-progress"))
