"""`agora extract-basis` and `agora fit-mlp` end to end on a tiny random-init model (demo head)."""

from __future__ import annotations

import json

import pytest
import typer
from test_bench_reenactment import TINY_YAML
from test_mobile_tinyhead import single_thread  # noqa: F401  (fixture)
from typer.testing import CliRunner

from agora_cli.extract_basis import extract_basis
from agora_cli.fit_mlp import fit_mlp
from agora_core.mobile import CoefficientMLP, GaussianBasis


def make_app() -> typer.Typer:
    app = typer.Typer()
    app.command("extract-basis")(extract_basis)
    app.command("fit-mlp")(fit_mlp)
    return app


def test_extract_then_fit_then_resume(tmp_path):
    config = tmp_path / "tiny.yaml"
    config.write_text(TINY_YAML)
    app, runner = make_app(), CliRunner()
    basis_path = tmp_path / "basis.safetensors"
    res = runner.invoke(app, ["extract-basis", "--config", str(config), "--n", "24", "--k", "4", "--heldout", "8",
                              "--expressions-per-identity", "4", "--memory-budget", "64", "--out", str(basis_path)])
    assert res.exit_code == 0, res.output
    assert "randomly initialised" in res.output and "average" in res.output
    basis = GaussianBasis.load(basis_path)
    assert basis.k == 4 and basis.n == 24
    report = json.loads(basis_path.with_suffix(".json").read_text())
    assert report["config"]["n"] == 24 and {r["group"] for r in report["report"]["rows"]} == {
        "xyz", "scale", "rotation", "opacity"}

    mlp_path = tmp_path / "mlp.safetensors"
    fit = ["fit-mlp", str(basis_path), "--config", str(config), "--n", "40", "--hidden", "8", "--batch-size", "8",
           "--expressions-per-identity", "4", "--out", str(mlp_path)]
    res = runner.invoke(app, fit + ["--epochs", "2"])
    assert res.exit_code == 0, res.output
    assert "val MSE" in res.output
    model, meta = CoefficientMLP.load(mlp_path)
    assert model.k == 4 and meta["epochs"] == "2"
    res = runner.invoke(app, fit + ["--epochs", "4"])
    assert res.exit_code == 0, res.output
    assert "resumed after epoch 2" in res.output
    assert CoefficientMLP.load(mlp_path)[1]["epochs"] == "4"


def test_cli_errors_are_one_line(tmp_path):
    app, runner = make_app(), CliRunner()
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"junk")
    config = tmp_path / "tiny.yaml"
    config.write_text(TINY_YAML)
    res = runner.invoke(app, ["fit-mlp", str(junk), "--config", str(config)])
    assert res.exit_code == 2 and "junk.safetensors" in res.output and "Traceback" not in res.output
    res = runner.invoke(app, ["extract-basis", "--n", "4"])
    assert res.exit_code == 2 and "CKPT" in res.output
    res = runner.invoke(app, ["extract-basis", "--config", str(config), "--method", "qr"])
    assert res.exit_code == 2 and "--method" in res.output


def test_checkpoint_as_source(tmp_path):
    """A training checkpoint (G_ema + stored config + sampling) drives load_agora_model and the CLI."""
    import torch

    from agora_core.mobile import ExtractConfig, TupleSampler, extract_basis, load_agora_model
    from agora_core.train.checkpoint import save_checkpoint
    from agora_core.run_config import config_to_dict, load_config

    config = tmp_path / "tiny.yaml"
    config.write_text(TINY_YAML)
    source = load_agora_model(None, config, seed=3)
    camera = torch.arange(25, dtype=torch.float32)
    sampling = {"camera": camera, "shape_mean": torch.full((source.generator.head.num_shape,), 0.5),
                "shape_std": torch.full((source.generator.head.num_shape,), 0.1)}
    ckpt = save_checkpoint(tmp_path / "run" / "checkpoints" / "kimg000002.pt", {
        "G_ema": source.generator.state_dict(), "config": config_to_dict(load_config(config)), "sampling": sampling})
    model = load_agora_model(tmp_path / "run", seed=0)  # a run folder: its newest checkpoint
    assert not model.random_init and model.source.endswith("run")
    for name, value in source.generator.state_dict().items():
        assert torch.equal(model.generator.state_dict()[name], value), name
    assert model.prior.camera.tolist() == camera.tolist()
    t = TupleSampler(z_dim=8, num_shape=model.generator.head.num_shape, num_expr=10, expr_dim=4, seed=0, stream=0,
                     expressions_per_identity=2, prior=model.prior).tuples(0, 4)
    assert torch.allclose(t.camera, camera.expand(4, 25)) and abs(float(t.shape.mean()) - 0.5) < 0.1

    basis, _ = extract_basis(model.generator, ExtractConfig(n=16, k=3, heldout=0, expressions_per_identity=4),
                             prior=model.prior, source_checkpoint=str(ckpt))
    basis_path = basis.save(tmp_path / "basis.safetensors")
    res = CliRunner().invoke(make_app(), ["fit-mlp", str(ckpt), str(basis_path), "--n", "16", "--epochs", "1",
                                          "--hidden", "4", "--out", str(tmp_path / "mlp.safetensors")])
    assert res.exit_code == 0, res.output
    assert "randomly initialised" not in res.output


def test_condition_pool_checks_the_dataset_head(tmp_path):
    """extract-basis / fit-mlp --dataset: FLAME rows of another head model are refused, one line."""
    from agora_core.data.format import read_dataset_index
    from agora_core.errors import AgoraError
    from agora_core.mobile.tuples import ConditionPool
    from test_train_fixtures import write_tiny_dataset

    root = write_tiny_dataset(tmp_path / "ds", n=4)
    own = read_dataset_index(root).header.head_model
    assert len(ConditionPool.from_dataset(root, own)) == 4
    with pytest.raises(AgoraError, match="FLAME parameters of head model") as err:
        ConditionPool.from_dataset(root, "flame-0123456789ab+mouth")
    assert "\n" not in str(err.value)


def test_a_checkpoint_of_another_head_is_refused(tmp_path):
    from agora_core.errors import AgoraError
    from agora_core.mobile.agora_model import load_agora_model
    from test_invert_helpers import write_checkpoint

    path = write_checkpoint(tmp_path / "ckpt.pt", head_model="flame-0123456789ab+mouth")
    with pytest.raises(AgoraError, match="made with head model") as err:
        load_agora_model(path)
    assert "\n" not in str(err.value)
