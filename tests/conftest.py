"""Test-session settings: isolate from the user's config and caches, keep CPU runs deterministic."""

from __future__ import annotations

import os
import tempfile

# Before anything imports gsplat/torch extensions: never touch ~/.cache from tests.
_TMP = tempfile.mkdtemp(prefix="agora-tests-")
os.environ.setdefault("TORCH_EXTENSIONS_DIR", os.path.join(_TMP, "torch_extensions"))
os.environ["AGORA_CONFIG_DIR"] = os.path.join(_TMP, "config")
for _var in ("AGORA_FLAME_PKL", "AGORA_FLAME_UV", "AGORA_FLAME_EYELIDS", "AGORA_SMIRK", "AGORA_MODNET"):
    os.environ.pop(_var, None)

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402

from format_fixtures import FIXTURES  # noqa: E402


@pytest.fixture(autouse=True)
def _restore_torch_threads():
    """CLI calls with --threads N set torch's global thread count; later tests must not inherit it
    (float32 summation order, and so the last bits of conv outputs, depend on it)."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    """The format fixtures (files in the exact formats of real assets; see format_fixtures.py)."""
    assert FIXTURES.is_dir(), f"format fixtures not found at {FIXTURES}"
    return FIXTURES


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip_gpu = pytest.mark.skip(reason="needs CUDA: no GPU on this machine")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)
