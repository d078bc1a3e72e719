"""Loading a model for inference, one way for every stage: our training runs, model folders (`agora
export model`: G_ema + model.json, what the repository ships in models/demo) and imported runs.

`load_model` returns an `InferenceModel` (the generator with its head, how it is framed and sampled)
from any of them, `random_model` the untrained generator of a config;
`draw_identity` is the one identity-for-a-seed rule (`agora sample --seed N`, exports, benchmarks);
`neutral_gaussians` the one neutral pose (zero expression, jaw, eyelids); `render_generator` the
images of G for (z, camera, FLAME) conditions. `inference.checkpoint` reads training checkpoints.
"""

from agora_core.inference.model_folder import export_model, is_model_folder
from agora_core.inference.model_source import (
    InferenceModel,
    describe_model,
    draw_identity,
    imported_agora_m,
    imported_head,
    is_imported_run,
    load_model,
    mapping_labels,
    neutral_flame,
    neutral_gaussians,
    random_model,
    render_generator,
)

__all__ = ["InferenceModel", "describe_model", "export_model", "is_model_folder", "load_model", "random_model",
           "mapping_labels", "draw_identity", "imported_agora_m", "imported_head", "is_imported_run", "neutral_flame", "neutral_gaussians",
           "render_generator"]
