"""The authors' released-model fixtures (`tests/format_fixtures.py` finds them), decompressed once per
test run, and what the importer tests share: the imported generator, an imported run folder, and
their tolerances.

Tolerances: float32 forward passes of ~20 layers along different kernels (grouped vs batched convs,
another summation order) agree to a few hundred ulps relative to each tensor's largest value, hence
2e-5. Quaternions are unit while the raw rotation channels reach |raw| ≈ 20 here, and the
activation multiplies their absolute errors by up to π; the renderer's quaternions are also divided
by per-component norms over all Gaussians (~0.04) before the per-quaternion normalisation: hence
1e-4 for quaternions.
"""

from __future__ import annotations

import lzma
import shutil

import pytest
import torch

from agora_core.head import HeadModel
from agora_core.importer import (
    convert_official_state,
    import_official_checkpoint,
    official_generator_config,
    official_head_assets,
    read_official_checkpoint,
)
from agora_core.models.agora_generator import AgoraGenerator
from format_fixtures import FIXTURES

OFFICIAL = FIXTURES / "official"
TOL, QUAT_TOL = 2e-5, 1e-4


def rel(a, b):
    """Largest difference relative to the reference's largest value."""
    return float((a - b).abs().max() / b.abs().max())


def _unxz(src, dst):
    with lzma.open(src) as f, open(dst, "wb") as g:
        shutil.copyfileobj(f, g)
    return dst


def flame2020_dataset(folder):
    """The demo identity's views relabelled as SMIRK ("flame2020") parameters: a dataset an imported
    run accepts (its head is the authors' FLAME 2020; the dataset's FLAME rows have the demo head's sizes)."""
    import json

    from test_invert_helpers import demo_dataset

    shutil.copytree(demo_dataset(), folder)
    doc = json.loads((folder / "dataset.json").read_text())
    doc["head_model"] = "flame2020"
    (folder / "dataset.json").write_text(json.dumps(doc))
    return folder


@pytest.fixture(scope="session")
def official_pkl(tmp_path_factory):
    return _unxz(OFFICIAL / "agora_official_format_random.pkl.xz", tmp_path_factory.mktemp("official") / "ckpt.pkl")


@pytest.fixture(scope="session")
def official_io(tmp_path_factory):
    path = _unxz(OFFICIAL / "agora_official_format_random_io.pt.xz", tmp_path_factory.mktemp("official_io") / "io.pt")
    return torch.load(path, weights_only=True)


@pytest.fixture(scope="session")
def official_agora_m_io(tmp_path_factory):
    path = _unxz(OFFICIAL / "agora_m" / "agora_m_reference_io.pt.xz", tmp_path_factory.mktemp("agm") / "io.pt")
    return torch.load(path, weights_only=True)


@pytest.fixture(scope="session")
def official(official_pkl):
    ckpt = read_official_checkpoint(official_pkl)
    generator = AgoraGenerator(official_generator_config(ckpt), HeadModel(official_head_assets(ckpt)))
    generator.load_state_dict(convert_official_state(ckpt, generator))
    return ckpt, generator.eval().requires_grad_(False)


@pytest.fixture(scope="session")
def imported_run(official_pkl, tmp_path_factory):
    return import_official_checkpoint(official_pkl, tmp_path_factory.mktemp("imported") / "run")
