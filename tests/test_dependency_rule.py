"""The dependency rule of docs/architecture.md, checked on the import statements of agora_core.

Building blocks (errors, assets, torch_files, devices, run_config, gaussians, render, head, models) never
import a pipeline stage; no stage that uses a trained model (inference, invert, reenact, mobile,
export, bench, metrics, importer) imports the training package; `importer` (the authors' files) is
reached only through `inference` and the CLI; the generator does not know the importer exists.
Every import statement counts, at module level or inside a function (`ast.walk` visits both), in
either spelling (`from agora_core.train.x import y`, `from agora_core import train`, `import
agora_core.train`); only imports under `if TYPE_CHECKING:` do not (they never run).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

CORE = Path(__file__).resolve().parents[1] / "agora_core"
BUILDING_BLOCKS = {"errors", "assets", "torch_files", "devices", "run_config", "gaussians", "render", "head", "models"}
STAGES = {"data", "face", "train", "mobile", "invert", "reenact", "export", "bench", "metrics", "inference",
          "importer", "doctor", "report"}
INFERENCE_STAGES = {"inference", "invert", "reenact", "mobile", "export", "bench", "metrics", "importer", "report"}


def _runtime_imports(path: Path) -> set[str]:
    """agora_core sub-packages imported by `path`, outside `if TYPE_CHECKING:` blocks."""
    tree = ast.parse(path.read_text())
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip.update(id(n) for child in node.body for n in ast.walk(child))
    found = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}: relative import (the rule reads absolute agora_core imports)"
            names = [node.module] if node.module != "agora_core" else [f"agora_core.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        found.update(n.split(".")[1] for n in names if n.startswith("agora_core."))
    return found


def _package(path: Path) -> str:
    return path.relative_to(CORE).parts[0].removesuffix(".py")


FILES = sorted(CORE.rglob("*.py"))


@pytest.mark.parametrize("path", [p for p in FILES if _package(p) in BUILDING_BLOCKS], ids=lambda p: str(p.relative_to(CORE)))
def test_building_blocks_import_no_stage(path):
    bad = _runtime_imports(path) & STAGES
    assert not bad, f"{path.relative_to(CORE)} imports the stage(s) {sorted(bad)}"


def test_only_inference_reaches_the_importer():
    users = {str(p.relative_to(CORE)) for p in FILES if _package(p) not in {"importer", "inference"}
             and "importer" in _runtime_imports(p)}
    assert not users, f"import the authors' files through agora_core.inference, not from {sorted(users)}"


@pytest.mark.parametrize("path", [p for p in FILES if _package(p) in INFERENCE_STAGES], ids=lambda p: str(p.relative_to(CORE)))
def test_inference_stages_import_no_training(path):
    assert "train" not in _runtime_imports(path), (
        f"{path.relative_to(CORE)} imports agora_core.train; what a model's user needs lives in run_config, "
        "head.build, inference.checkpoint, metrics.swd or data.conditions")


def test_the_rule_sees_imports_inside_functions(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text("def f():\n    from agora_core.train.loop import train\n\n\n"
                     "def g():\n    from agora_core import train\n    import agora_core.train.build\n")
    assert _runtime_imports(probe) == {"train"}
    probe.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from agora_core.train import loop\n")
    assert _runtime_imports(probe) == set()
