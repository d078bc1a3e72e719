"""Loading a model for inference, one way for every stage: our training runs and imported runs.

`load_model` returns an `InferenceModel` (the generator with its head, how it is framed and sampled);
`draw_identity` is the one identity-for-a-seed rule (`agora sample --seed N`, exports, benchmarks);
`neutral_gaussians` the one neutral pose (zero expression, jaw, eyelids).
"""

from agora_core.inference.model_source import (
    InferenceModel,
    describe_model,
    draw_identity,
    imported_agora_m,
    is_imported_run,
    load_model,
    mapping_labels,
    neutral_flame,
    neutral_gaussians,
)

__all__ = ["InferenceModel", "describe_model", "load_model", "mapping_labels", "draw_identity", "imported_agora_m", "is_imported_run", "neutral_flame", "neutral_gaussians"]
