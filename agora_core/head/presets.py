"""The head models the pipeline stages use, built one way everywhere.

Both sources go through the FLAME-format loader and the mouth interior (appendix 0.B.1.1):
the procedural demo head (written to FLAME's pickle + UV obj and read back) and a user's
FLAME 2020/2023 files.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from agora_core.head.assets import FlameAssets
from agora_core.head.model import HeadModel
from agora_core.head.mouth import add_mouth_interior

DEMO_HEAD = "demo"


@lru_cache(maxsize=2)
def _demo_assets(mouth_interior: bool) -> FlameAssets:
    from agora_core.head.demo_head import demo_head_assets

    assets = demo_head_assets()
    return add_mouth_interior(assets) if mouth_interior else assets


def demo_head_model(mouth_interior: bool = True) -> HeadModel:
    """The procedural demo head (through the FLAME pickle loader), with the mouth interior."""
    return HeadModel(_demo_assets(mouth_interior))


def flame_head_model(pkl_path: str | Path, uv_obj_path: str | Path, mouth_interior: bool = True) -> HeadModel:
    """A user's FLAME model (generic_model.pkl + head_template.obj), with the mouth interior."""
    from agora_core.head.flame_io import flame_assets_from_pickle

    assets = flame_assets_from_pickle(pkl_path, uv_obj_path)
    return HeadModel(add_mouth_interior(assets) if mouth_interior else assets)


def head_model(source: str = DEMO_HEAD, flame_pkl: str | Path | None = None, flame_uv: str | Path | None = None,
               mouth_interior: bool = True) -> HeadModel:
    """`source` "demo" -> the demo head; "flame" -> the FLAME files (required then)."""
    if source == DEMO_HEAD:
        return demo_head_model(mouth_interior)
    from agora_core.assets import require_asset

    return flame_head_model(require_asset("flame_pkl", flame_pkl), require_asset("flame_uv_obj", flame_uv), mouth_interior)
