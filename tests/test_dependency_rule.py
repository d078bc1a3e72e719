"""The dependency rule of docs/architecture.md, checked on the import statements of agora_core.

Building blocks (errors, assets, torch_files, devices, gaussians, render, head, models) never import a
pipeline stage; `importer` (the authors' files) is reached only through `inference` and the CLI;
the generator does not know the importer exists. Imports under `if TYPE_CHECKING:` do not count
(they never run).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

CORE = Path(__file__).resolve().parents[1] / "agora_core"
BUILDING_BLOCKS = {"errors", "assets", "torch_files", "devices", "gaussians", "render", "head", "models"}
STAGES = {"data", "face", "train", "mobile", "invert", "reenact", "export", "bench", "metrics", "inference",
          "importer", "doctor", "report"}


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
        names = [node.module] if isinstance(node, ast.ImportFrom) and node.module else (
            [a.name for a in node.names] if isinstance(node, ast.Import) else [])
        found.update(n.split(".")[1] for n in names if n.startswith("agora_core.") and n.count(".") >= 1)
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
