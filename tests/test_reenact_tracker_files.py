"""Other trackers' FLAME files for `reenact --params` (agora_core.reenact.tracker_files), built here in
the layouts their public code writes: VHAP/GaussianAvatars flame_param, DECA/EMOCA codes, SMIRK's
encoder outputs; FLAME-release checks; and wrong files fuzzed into one-line errors."""

from __future__ import annotations

import numpy as np
import pytest

from agora_core.errors import AgoraError
from agora_core.reenact.driving import DrivingSequence, check_flame_version

T = 7


def _rng(seed: int = 0):
    return np.random.default_rng(seed)


def _vhap(t: int = T, seed: int = 0) -> dict[str, np.ndarray]:
    """VHAP's tracked_flame_params.npz (GaussianAvatars' flame_param.npz has the same arrays)."""
    rng = _rng(seed)
    f = lambda *s: (0.1 * rng.normal(size=s)).astype(np.float32)  # noqa: E731
    return {"rotation": f(t, 3), "translation": f(t, 3), "neck_pose": f(t, 3), "jaw_pose": f(t, 3),
            "eyes_pose": f(t, 6), "shape": f(300), "expr": f(t, 100), "static_offset": f(1, 50, 3),
            "dynamic_offset": f(t, 50, 3), "timestep_id": np.array([f"{i:05d}" for i in range(t)]),
            "n_processed_frames": np.array(t), "image_size": np.array([512, 512])}


def _deca(t: int = T, seed: int = 1) -> dict[str, np.ndarray]:
    rng = _rng(seed)
    f = lambda *s: (0.1 * rng.normal(size=s)).astype(np.float32)  # noqa: E731
    return {"shape": f(t, 100), "tex": f(t, 50), "exp": f(t, 50), "pose": f(t, 6), "cam": f(t, 3), "light": f(t, 9, 3)}


def _smirk(t: int = T, seed: int = 2) -> dict[str, np.ndarray]:
    rng = _rng(seed)
    f = lambda *s: (0.1 * rng.normal(size=s)).astype(np.float32)  # noqa: E731
    return {"expression_params": f(t, 50), "jaw_params": np.abs(f(t, 3)), "eyelid_params": np.abs(f(t, 2)),
            "pose_params": f(t, 3), "shape_params": f(t, 300), "cam": f(t, 3)}


def test_vhap_and_gaussian_avatars_flame_param(tmp_path):
    arrays = _vhap()
    np.savez(tmp_path / "tracked_flame_params_30.npz", **arrays)
    seq = DrivingSequence.load(tmp_path / "tracked_flame_params_30.npz")
    assert seq.num_frames == T and seq.flame_version == "2023" and seq.source == "VHAP/GaussianAvatars"
    for ours, theirs in (("expression", "expr"), ("jaw", "jaw_pose"), ("global_pose", "rotation"), ("neck", "neck_pose"),
                         ("eyes", "eyes_pose")):
        np.testing.assert_array_equal(getattr(seq, ours), arrays[theirs])
    assert not seq.eyelids.any() and seq.fps == 25.0 and seq.camera is None
    np.testing.assert_array_equal(seq.flame().eyes.numpy(), arrays["eyes_pose"])  # the eyes drive the avatar


def test_vhap_per_frame_export_folder_in_natural_order(tmp_path):
    arrays = _vhap(t=12)
    folder = tmp_path / "flame_param"
    folder.mkdir()
    for i in range(12):  # VHAP's export: one frame per file, rows [1, …], shape and offsets repeated
        np.savez(folder / f"frame_{i}.npz", **{k: arrays[k][[i]] for k in ("rotation", "translation", "neck_pose",
                                                                        "jaw_pose", "eyes_pose", "expr")},
                 shape=arrays["shape"], static_offset=arrays["static_offset"])
    seq = DrivingSequence.load(folder)
    assert seq.num_frames == 12 and seq.flame_version == "2023"
    np.testing.assert_array_equal(seq.expression, arrays["expr"])  # frame_10 after frame_9


def test_deca_code_npz_and_emoca_frame_folders(tmp_path):
    arrays = _deca()
    np.savez(tmp_path / "codes.npz", **arrays)
    clip = tmp_path / "emoca"
    for i in range(T):  # EMOCA's save_codes: <output>/<name>/{shape,exp,tex,pose,detail}.npy, one image each
        frame = clip / f"{i + 1:06d}_000"
        frame.mkdir(parents=True)
        for name, key in (("shape", "shape"), ("exp", "exp"), ("tex", "tex"), ("pose", "pose")):
            np.save(frame / f"{name}.npy", arrays[key][i])
        np.save(frame / "detail.npy", np.zeros(128, np.float32))
    for path in (tmp_path / "codes.npz", clip):
        seq = DrivingSequence.load(path)
        assert seq.num_frames == T and seq.flame_version == "2020" and seq.source == "DECA/EMOCA", path
        np.testing.assert_array_equal(seq.expression, arrays["exp"])
        np.testing.assert_array_equal(seq.global_pose, arrays["pose"][:, :3])  # FLAME's pose: head, then jaw
        np.testing.assert_array_equal(seq.jaw, arrays["pose"][:, 3:])
        assert not seq.neck.any() and not seq.eyes.any() and not seq.eyelids.any()


def test_smirk_encoder_outputs_in_one_file_or_per_frame(tmp_path):
    arrays = _smirk()
    np.savez(tmp_path / "smirk.npz", **arrays)
    (tmp_path / "frames").mkdir()
    for i in range(T):
        np.savez(tmp_path / "frames" / f"{i:04d}.npz", **{k: v[[i]] for k, v in arrays.items()})
    for path in (tmp_path / "smirk.npz", tmp_path / "frames"):
        seq = DrivingSequence.load(path)
        assert seq.flame_version == "2020" and seq.source == "SMIRK", path
        for ours, theirs in (("expression", "expression_params"), ("jaw", "jaw_params"), ("eyelids", "eyelid_params"),
                             ("global_pose", "pose_params")):
            np.testing.assert_array_equal(getattr(seq, ours), arrays[theirs])


def test_smoothing_and_resampling_cover_the_new_fields(tmp_path):
    np.savez(tmp_path / "v.npz", **_vhap(t=20))
    seq = DrivingSequence.load(tmp_path / "v.npz")
    smooth = seq.smoothed()
    assert np.abs(np.diff(smooth.eyes, 2, axis=0)).mean() < np.abs(np.diff(seq.eyes, 2, axis=0)).mean()
    picked = seq.frames_at(np.array([0, 0, 3]), 12.0)
    np.testing.assert_array_equal(picked.eyes, seq.eyes[[0, 0, 3]])
    assert picked.fps == 12.0 and picked.flame_version == "2023"


def test_flame_release_is_checked_and_kept(tmp_path):
    np.savez(tmp_path / "v.npz", **_vhap())
    vhap = DrivingSequence.load(tmp_path / "v.npz")
    with pytest.raises(AgoraError, match=r"v\.npz: VHAP/GaussianAvatars parameters are for FLAME 2023, .* FLAME 2020 "
                                         r".*--accept-flame-mismatch"):
        check_flame_version(vhap, tmp_path / "v.npz", accept_mismatch=False)
    check_flame_version(vhap, tmp_path / "v.npz", accept_mismatch=True)
    np.savez(tmp_path / "s.npz", **_smirk())
    check_flame_version(DrivingSequence.load(tmp_path / "s.npz"), tmp_path / "s.npz", accept_mismatch=False)
    # agora's own .npz keeps the release and the eyes; one without says nothing (accepted)
    back = DrivingSequence.load(vhap.save(tmp_path / "ours.npz"))
    assert back.flame_version == "2023"
    np.testing.assert_array_equal(back.eyes, vhap.eyes)
    np.savez(tmp_path / "plain.npz", expression=np.zeros((3, 50)), jaw=np.zeros((3, 3)))
    assert DrivingSequence.load(tmp_path / "plain.npz").flame_version is None
    np.savez(tmp_path / "odd.npz", expression=np.zeros((3, 50)), jaw=np.zeros((3, 3)), flame_version="2017")
    with pytest.raises(AgoraError, match="'flame_version' must be one of 2020, 2023"):
        DrivingSequence.load(tmp_path / "odd.npz")


# ----------------------------------------------------------------------------- wrong files

def _one_line(path, match: str | None = None) -> None:
    with pytest.raises(AgoraError) as err:
        DrivingSequence.load(path)
    message = str(err.value)
    assert "\n" not in message and str(path) in message, message
    if match is not None:
        assert match in message, message


@pytest.mark.parametrize("name, arrays, match", [
    ("unknown", {"foo": np.zeros((3, 3)), "bar": np.zeros(2)}, "not a driving-parameter layout agora knows"),
    ("empty", {}, "arrays: none"),
    ("wide_expr", {**_vhap(), "expr": np.zeros((T, 150), np.float32)}, "FLAME has 100 expression components"),
    ("short_jaw", {**_vhap(), "jaw_pose": np.zeros((T - 1, 3), np.float32)}, "'jaw_pose' has shape"),
    ("pose5", {**_deca(), "pose": np.zeros((T, 5), np.float32)}, "'pose' has shape"),
    ("nan", {**_smirk(), "jaw_params": np.full((T, 3), np.nan, np.float32)}, "non-finite"),
    ("huge", {**_deca(), "exp": np.full((T, 50), 1e6, np.float32)}, "far outside"),
    ("text", {**_vhap(), "expr": np.array([["a"] * 100] * T)}, "not an array of numbers"),
    ("zero", {**_smirk(t=0)}, "zero frames"),
    ("objects", {**_vhap(), "expr": np.array([None] * T, dtype=object)}, "Python objects"),
])
def test_wrong_npz_files_are_one_line(tmp_path, name, arrays, match):
    path = tmp_path / f"{name}.npz"
    np.savez(path, **arrays)
    _one_line(path, match)


def test_wrong_folders_are_one_line(tmp_path):
    (tmp_path / "empty").mkdir()
    _one_line(tmp_path / "empty", "holds no driving parameters")
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    np.savez(mixed / "0.npz", **_vhap(t=1))
    np.savez(mixed / "1.npz", **_smirk(t=1))
    with pytest.raises(AgoraError, match=r"1\.npz: is a SMIRK file among VHAP/GaussianAvatars ones"):
        DrivingSequence.load(mixed)
    emoca = tmp_path / "emoca"
    for i, size in enumerate((50, 50, 40)):
        (emoca / f"{i}").mkdir(parents=True)
        np.save(emoca / f"{i}" / "exp.npy", np.zeros(size, np.float32))
        np.save(emoca / f"{i}" / "pose.npy", np.zeros(6, np.float32))
    _one_line(emoca, "'exp' sizes differ between frames")
    (emoca / "1" / "pose.npy").unlink()
    with pytest.raises(AgoraError, match=r"1: lacks pose\.npy"):
        DrivingSequence.load(emoca)


def test_damaged_files_never_raise_anything_but_one_line(tmp_path):
    """Truncations and byte flips of each layout: loaded (a flip in unused bytes) or one AgoraError line."""
    rng = _rng(5)
    for name, arrays in (("vhap", _vhap()), ("deca", _deca()), ("smirk", _smirk())):
        good = tmp_path / f"{name}.npz"
        np.savez(good, **arrays)
        data = good.read_bytes()
        for trial in range(40):
            bad = bytearray(data)
            if trial % 2:
                bad = bad[: int(rng.integers(0, len(bad)))]
            else:
                for at in rng.integers(0, len(bad), size=4):
                    bad[at] ^= 0xFF
            path = tmp_path / f"{name}_{trial}.npz"
            path.write_bytes(bytes(bad))
            try:
                DrivingSequence.load(path)
            except AgoraError as err:
                assert "\n" not in str(err) and str(path) in str(err), str(err)


def test_reenact_cli_refuses_flame_2023_unless_accepted(tmp_path):
    import typer
    from test_invert_helpers import RES, quick_avatar
    from typer.testing import CliRunner

    from agora_cli.reenact import reenact
    from agora_core.invert.video_io import VideoReader

    app = typer.Typer()
    app.command("reenact")(reenact)
    app.command("other")(lambda: None)
    run = lambda *a: CliRunner().invoke(app, ["reenact", str(quick_avatar()), *map(str, a), "--no-progress"])  # noqa: E731
    np.savez(tmp_path / "flame_param.npz", **_vhap(t=5))
    out = tmp_path / "o" / "r.mp4"
    refused = run("--params", tmp_path / "flame_param.npz", "--out", out)
    lines = [ln for ln in refused.output.splitlines() if ln.strip()]
    assert refused.exit_code == 2 and len(lines) == 1 and "--accept-flame-mismatch" in lines[0], refused.output
    assert not (tmp_path / "o").exists()
    done = run("--params", tmp_path / "flame_param.npz", "--out", out, "--accept-flame-mismatch", "--fps", "10", "--size", RES)
    assert done.exit_code == 0, done.output
    reader = VideoReader(out)
    frames = reader.read_all()
    assert len(frames) == 5 and reader.fps == 10.0 and frames[0].shape == (RES, RES, 3)
    wrong = run(tmp_path / "v.mp4", "--fps", "10", "--out", out)
    assert wrong.exit_code == 2 and "--fps sets the frame rate of --params" in wrong.output
