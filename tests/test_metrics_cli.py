"""`agora eval` and `agora train-tracker` end to end on a tiny checkpoint / dataset (CliRunner)."""

from __future__ import annotations

import json

import pytest
import typer
from typer.testing import CliRunner

from agora_cli.eval import evaluate
from agora_cli.train_tracker import train_tracker
from agora_core.face.smirk import load_smirk_encoder
from test_metrics_fixtures import cached_build_head, write_tiny_checkpoint, write_tiny_dataset

EVAL_KEYS = {"format", "format_version", "checkpoint", "kimg", "dataset", "dataset_images", "resolution",
             "head_model", "device", "quick", "protocol", "weights", "metrics", "seconds"}
SMALL = ["--n", "8", "--real", "8", "--identities", "2", "--pairs", "2", "--id-pairs", "2", "--swd-images", "8",
         "--batch", "4", "--device", "cpu", "--no-progress"]


def _app(fn) -> typer.Typer:
    app = typer.Typer()
    app.command()(fn)
    return app


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return write_tiny_checkpoint(tmp_path_factory.mktemp("eval"))


@pytest.fixture(scope="module")
def tracker_path(tmp_path_factory):
    """`agora train-tracker` for 2 steps on a tiny dataset (the real command, its real encoder)."""
    root = tmp_path_factory.mktemp("tracker")
    data = write_tiny_dataset(root / "data", n=6, resolution=16)
    out = root / "tracker.pt"
    result = CliRunner().invoke(_app(train_tracker), [str(data), "--out", str(out), "--steps", "2", "--batch", "2",
                                                      "--holdout", "0.34", "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "held-out RMSE" in result.output
    return out


def test_train_tracker_writes_a_checkpoint_that_load_smirk_encoder_loads(tracker_path):
    encoder = load_smirk_encoder(tracker_path)
    assert not encoder.training
    info = json.loads(tracker_path.with_suffix(".json").read_text())
    assert info["kind"] == "agora-demo-tracker" and info["input_size"] == 64 and info["num_shape"] == 20
    assert set(info["extra"]["heldout_rmse"]) == {"expression", "jaw", "eyelids", "pose", "shape", "cam"}


def test_eval_quick_writes_json_and_marks_missing_weights(tiny, tmp_path, monkeypatch):
    monkeypatch.setattr("agora_core.head.build.build_head", cached_build_head)
    ckpt, data = tiny
    out = tmp_path / "eval.json"
    result = CliRunner().invoke(_app(evaluate), [str(ckpt), "--data", str(data), "--quick", "--json", str(out), *SMALL])
    assert result.exit_code == 0, result.output
    doc = json.loads(out.read_text())
    assert set(doc) == EVAL_KEYS and doc["quick"] is True
    metrics = doc["metrics"]
    assert set(metrics) == {"fid", "kid", "id", "aed", "aed_jaw", "apd", "asd", "aed_eyelids", "swd"}
    for name, flag in [("fid", "--inception"), ("kid", "--inception"), ("id", "--arcface"), ("apd", "--tracker")]:
        assert metrics[name]["status"] == "needs weights" and flag in metrics[name]["needs"]
    assert metrics["swd"]["status"] == "ok" and metrics["swd"]["value"] > 0
    assert doc["protocol"]["fid_images"] == 8 and doc["protocol"]["truncation_animation"] == 0.7
    assert "needs weights (--inception PATH)" in result.output


def test_eval_with_a_tracker_and_arcface_reports_values(tiny, tracker_path, tmp_path, monkeypatch):
    from test_metrics_fixtures import write_tiny_arcface_onnx

    monkeypatch.setattr("agora_core.head.build.build_head", cached_build_head)
    ckpt, data = tiny
    onnx_path = write_tiny_arcface_onnx(tmp_path / "w600k_r50.onnx")
    out = tmp_path / "eval.json"
    result = CliRunner().invoke(_app(evaluate), [str(ckpt), "--data", str(data), "--metrics", "id,apd", "--tracker",
                                                 str(tracker_path), "--arcface", str(onnx_path), "--json", str(out),
                                                 *SMALL])
    assert result.exit_code == 0, result.output
    doc = json.loads(out.read_text())
    assert set(doc["metrics"]) == {"id", "aed", "aed_jaw", "apd", "asd", "aed_eyelids"}
    ident = doc["metrics"]["id"]
    assert ident["status"] == "ok" and -1 <= ident["value"] <= 1 and ident["pairs"] == 2
    assert doc["metrics"]["apd"]["samples"] == 4 and doc["metrics"]["asd"]["dims"] == 20
    assert doc["weights"]["tracker_kind"] == "agora-demo-tracker" and doc["weights"]["tracker_input_size"] == 64


def test_strict_turns_a_missing_weight_into_an_error(tiny, monkeypatch):
    monkeypatch.setattr("agora_core.head.build.build_head", cached_build_head)
    ckpt, data = tiny
    result = CliRunner().invoke(_app(evaluate), [str(ckpt), "--data", str(data), "--metrics", "fid", "--strict",
                                                 *SMALL])
    assert result.exit_code == 2
    assert "--inception PATH" in result.output


def test_fid_and_kid_through_evaluate_with_a_stand_in_feature_network(tiny, monkeypatch):
    from agora_core.metrics.evaluate import Evaluators, evaluate as run_evaluation
    from agora_core.metrics.protocol import ProtocolConfig
    from test_metrics_fixtures import StandInFeatures

    monkeypatch.setattr("agora_core.head.build.build_head", cached_build_head)
    ckpt, data = tiny
    protocol = ProtocolConfig(fid_images=8, fid_real_images=8, batch=4)
    doc = run_evaluation(ckpt, data, ("fid", "kid"), protocol, evaluators=Evaluators(features=StandInFeatures()),
                         progress=False)
    fid, kid = doc["metrics"]["fid"], doc["metrics"]["kid"]
    # an untrained G's renders against random-noise images: far apart
    assert fid["status"] == "ok" and fid["value"] > 0 and (fid["n_generated"], fid["n_real"]) == (8, 8)
    assert kid["status"] == "ok" and kid["subset_size"] == 8 and kid["value"] > 0
