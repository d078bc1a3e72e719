"""Which head a generator is built on: the `head` section of a run's config (`run_config.TrainConfig`).

Light on purpose (no torch): configs are read before any model is built; `head.build.build_head`
turns one into a `HeadModel`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

HeadSource = Literal["demo", "flame"]


@dataclass(frozen=True)
class HeadConfig:
    """Which FLAME-format head model G is built on (FLAME has no eyelid blendshapes: SMIRK's are added)."""

    source: HeadSource = "demo"  # "demo": the procedural demo head; "flame": the files below
    flame_pkl: str = ""  # FLAME generic_model.pkl (source "flame"; "" = $AGORA_FLAME_PKL / assets.yaml)
    flame_uv: str = ""  # its UV template head_template.obj ("" = $AGORA_FLAME_UV / assets.yaml)
    flame_eyelids: str = ""  # SMIRK eyelid blendshapes: folder or .npy ("" = $AGORA_FLAME_EYELIDS / assets.yaml; "none" = without)
    mouth_interior: bool = True  # add the mouth interior (appendix 0.B.1.1), as the paper does
