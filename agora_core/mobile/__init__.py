"""AGORA-M: Gaussian blendshapes distilled from AGORA (paper sec. 3.7, eq. 9-11; appendix 0.A.3).

- `residuals`: posed-minus-neutral attribute residuals ΔA in four groups (eq. 9).
- `tuples`: deterministic (w, β, ψ, θ) tuples from a dataset or the generator's priors.
- `residual_source`: chunks of residuals regenerated on demand from the generator.
- `streaming_svd`: top-K right singular vectors without building B (randomized / exact Gram /
  full-SVD reference), sized to a memory budget.
- `basis_file`: `GaussianBasis` and `basis.safetensors`.
- `extract`: `extract_basis` (what `agora extract-basis` runs) and its Table-5 report.
- `coefficient_mlp`: f_mlp (eq. 10) and `mlp.safetensors`.
- `regressor_fit`: `fit_mlp` (what `agora fit-mlp` runs), resumable.
- `agora_model`: the AGORA generator to distil (checkpoint or random init of a config).
The runtime avatar (eq. 11) is `agora_core.mobile.blendshape_avatar.BlendshapeAvatar`.
"""

from agora_core.mobile.agora_model import AgoraModel, gaussian_count, grid_for_gaussians, load_agora_model
from agora_core.mobile.basis_file import GaussianBasis
from agora_core.mobile.blendshape_avatar import BlendshapeAvatar
from agora_core.mobile.coefficient_mlp import CoefficientMLP, join_groups, split_groups
from agora_core.mobile.extract import ExtractConfig, ExtractReport, extract_basis, write_extract_report
from agora_core.mobile.regressor_fit import FitConfig, FitReport, fit_coefficient_mlp, fit_mlp
from agora_core.mobile.residual_source import GeneratorResiduals, ResidualChunk, RowSource, regressor_input
from agora_core.mobile.residuals import RESIDUAL_GROUPS, attribute_groups, attribute_residuals
from agora_core.mobile.streaming_svd import (
    GroupBasis,
    StreamPlan,
    full_svd_basis,
    gram_basis,
    plan_stream,
    principal_angles,
    randomized_basis,
    stream_basis,
)
from agora_core.mobile.tuples import ConditionPool, IdentityPrior, TupleSampler

__all__ = [
    "AgoraModel", "load_agora_model", "gaussian_count", "grid_for_gaussians",
    "GaussianBasis", "BlendshapeAvatar", "CoefficientMLP", "split_groups", "join_groups",
    "ExtractConfig", "ExtractReport", "extract_basis", "write_extract_report",
    "FitConfig", "FitReport", "fit_coefficient_mlp", "fit_mlp",
    "GeneratorResiduals", "ResidualChunk", "RowSource", "regressor_input",
    "RESIDUAL_GROUPS", "attribute_groups", "attribute_residuals",
    "GroupBasis", "StreamPlan", "full_svd_basis", "gram_basis", "plan_stream", "principal_angles",
    "randomized_basis", "stream_basis",
    "ConditionPool", "IdentityPrior", "TupleSampler",
]  # fmt: skip
