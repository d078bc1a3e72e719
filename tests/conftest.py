"""Test-session settings: isolate from the user's config and caches, keep CPU runs deterministic."""

from __future__ import annotations

import os
import tempfile

# Before anything imports gsplat/torch extensions: never touch ~/.cache from tests.
_TMP = tempfile.mkdtemp(prefix="agora-tests-")
os.environ.setdefault("TORCH_EXTENSIONS_DIR", os.path.join(_TMP, "torch_extensions"))
os.environ["AGORA_CONFIG_DIR"] = os.path.join(_TMP, "config")
for _var in ("AGORA_FLAME_PKL", "AGORA_FLAME_UV", "AGORA_FLAME_EYELIDS", "AGORA_SMIRK", "AGORA_MODNET",
             "AGORA_PERCEPTUAL_WEIGHTS"):
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


def _chromium() -> str | None:
    from agora_core.export.browser import find_chromium  # the lookup the browser code itself uses

    return find_chromium()


# Optional system components (not pip-installable): marker -> (locator, how to get it). Without the
# component a marked test skips with that line; with $CI set it fails instead, so CI keeps running it.
OPTIONAL_COMPONENTS = {
    "chromium": (_chromium, "needs Chromium: apt install chromium (Debian/Ubuntu) or set AGORA_CHROMIUM=/path"),
}


def pytest_configure(config):
    for name in OPTIONAL_COMPONENTS:
        config.addinivalue_line("markers", f"{name}: needs {name} (skipped without it; fails instead when $CI is set)")


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip_gpu = pytest.mark.skip(reason="needs CUDA: no GPU on this machine")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    """Before the test's fixtures are built: skip (or, under $CI, fail) when a marked component is missing."""
    for name, (locate, how) in OPTIONAL_COMPONENTS.items():
        if item.get_closest_marker(name) is None or locate() is not None:
            continue
        if os.environ.get("CI", "").lower() not in ("", "0", "false"):
            pytest.fail(f"{how} ($CI is set: CI must run this test, not skip it)", pytrace=False)
        pytest.skip(how)


# The authors' released-model fixtures, shared by the importer tests (decompressed once per run).
from official_fixtures import (  # noqa: E402, F401
    imported_run,
    official,
    official_agora_m_io,
    official_io,
    official_pkl,
)
