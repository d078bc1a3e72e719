"""No silent surprises: what a run quietly did differently from what was asked is an error or one
warning line (empty config, --dry-run without data, missing G_ema, too few frames, K > N, several
faces, checks before weights, output permissions, PyTorch's weights_only advice)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from agora_cli.app import app
from agora_core.errors import AgoraError, AgoraWarning
from test_export_fixtures import tiny_generator, write_tiny_checkpoint

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("text", ["", "# only a comment\n", "{}\n"])
def test_an_empty_config_file_is_an_error_not_the_default_config(tmp_path, text):
    from agora_core.run_config import load_config

    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(AgoraError, match="c.yaml: the config file is empty"):
        load_config(path)


def test_train_dry_run_needs_neither_data_nor_run_folder_and_a_real_run_needs_both(tmp_path):
    result = CliRunner().invoke(app, ["train", "--config", str(REPO / "configs" / "demo.yaml"), "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "generator total" in result.output
    result = CliRunner().invoke(app, ["train", "--config", str(REPO / "configs" / "demo.yaml"),
                                      "--out", str(tmp_path / "run")])
    assert result.exit_code == 2 and "train needs --data DATA and --out RUN" in result.output


def test_a_failed_dataset_check_creates_no_run_folder(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "dataset.json").write_text('{"format": "something else"}')
    result = CliRunner().invoke(app, ["train", "--config", str(REPO / "configs" / "demo.yaml"), "--data",
                                      str(tmp_path / "data"), "--out", str(tmp_path / "run")])
    assert result.exit_code == 2 and "not an agora dataset" in result.output
    assert not (tmp_path / "run").exists()


def test_a_checkpoint_without_g_ema_warns_and_uses_g(tmp_path):
    from agora_core.inference.checkpoint import load_checkpoint
    from agora_core.train.checkpoint import save_checkpoint

    G, config = tiny_generator()
    path = write_tiny_checkpoint(tmp_path, G, config)
    state = torch.load(path, weights_only=True)
    del state["G_ema"]
    save_checkpoint(path, {k: v for k, v in state.items() if k not in ("format", "format_version")})
    with pytest.warns(AgoraWarning, match="has no G_ema; the raw generator G is used"):
        loaded = load_checkpoint(path)
    assert loaded["G_ema"].keys() == state["G"].keys()


def test_asking_for_more_frames_than_a_clip_has_warns(tmp_path):
    from agora_core.invert.video_io import select_sharp_frames
    from face_helpers import write_astronaut_video

    path = write_astronaut_video(tmp_path / "clip.mp4", frames=3, dx=4)
    with pytest.warns(AgoraWarning, match="clip.mp4: 8 frames asked for but the video has 3; using all 3"):
        chosen, frames = select_sharp_frames(path, 8)
    assert chosen == [0, 1, 2] and len(frames) == 3


def test_more_blendshapes_than_tuples_warns():
    from agora_core.mobile.extract import ExtractConfig, extract_basis

    G, _ = tiny_generator()
    with pytest.warns(AgoraWarning, match="--k 6 is more than --n 4 tuples: at most 4 components carry information"):
        basis, _ = extract_basis(G, ExtractConfig(n=4, k=6, heldout=0, expressions_per_identity=2, batch_size=4))
    assert basis.k == 6


class _TwoFaces:
    name = "stand-in"

    def detect(self, image_rgb):
        from agora_core.face.detect import Detection

        return [Detection((0.0, 0.0, 10.0, 10.0), 0.9), Detection((20.0, 20.0, 60.0, 64.0), 0.8)]


def test_a_photo_with_several_faces_says_which_one_was_used():
    from agora_core.face.detect import detect_largest_face

    with pytest.warns(AgoraWarning, match=r"group.jpg: 2 faces found; using the largest, box \(20, 20\)-\(60, 64\)"):
        chosen = detect_largest_face(np.zeros((64, 64, 3), np.uint8), _TwoFaces(), "group.jpg")
    assert chosen.box == (20.0, 20.0, 60.0, 64.0)


def test_prep_data_checks_its_paths_before_looking_for_weights(tmp_path, monkeypatch):
    from agora_core.data.prep import PrepConfig, prepare_dataset

    for var in ("AGORA_SMIRK", "AGORA_MODNET"):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(AgoraError, match="input folder not found"):
        prepare_dataset(tmp_path / "no_photos", tmp_path / "out", PrepConfig())
    assert not (tmp_path / "out").exists()


def test_agora_m_files_get_the_permissions_of_every_other_output(tmp_path):
    from agora_core.gaussians.files import atomic_write
    from test_export_fixtures import write_random_agora_m

    basis_path, mlp_path = write_random_agora_m(tmp_path, num_gaussians=4, w_dim=3, expr_dim=5)
    with atomic_write(tmp_path / "other.bin") as f:
        f.write(b"x")
    mode = lambda p: os.stat(p).st_mode & 0o777  # noqa: E731
    assert mode(basis_path) == mode(mlp_path) == mode(tmp_path / "other.bin")


def test_a_corrupt_checkpoint_error_does_not_repeat_pytorchs_weights_only_advice(tmp_path):
    from agora_core.inference.checkpoint import load_checkpoint

    G, config = tiny_generator()
    path = write_tiny_checkpoint(tmp_path, G, config)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(AgoraError) as err:
        load_checkpoint(path)
    assert "not a readable agora checkpoint" in str(err.value)
    assert "weights_only" not in str(err.value) and "\n" not in str(err.value)
