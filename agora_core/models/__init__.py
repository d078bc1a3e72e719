"""StyleGAN2 building blocks for AGORA's generator and discriminator (plain PyTorch, CPU-ready).

- `stylegan2_layers`: equalised-LR layers, modulated conv (fast + reference), noise, ToOutput,
  minibatch std, spatial shape conditioning (paper sec. 3.3).
- `fir_resample`: [1,3,3,1] FIR up/down-sampling (fast + reference).
- `mapping`: EG3D-style conditional mapping network (z, c) -> w with w_avg and truncation.
- `stylegan2_synthesis`: skip synthesis network (identity branch), its 64² tap, and the
  synthesis tail the deformation branch is built from (paper sec. 3.4).
- `stylegan2_inference`: the same synthesis layers folded for inference, taken inside
  `torch.inference_mode()` only (the layers above stay the reference and what autograd sees).
- `stylegan2_discriminator`: ResNet D with projection conditioning (dual discrimination, sec. 3.6).

AGORA itself:
- `generator_config`: `GeneratorConfig`, `DiscriminatorConfig` (frozen dataclasses).
- `lifting`: UV sampling (eq. 4), 3D lifting (eq. 5) and residual composition (sec. 3.4-3.5).
- `shape_conditioning`: the UV shape displacement map (sec. 3.3, eq. 6).
- `facial_mask`: where expression residuals are allowed.
- `deformation_branch`: G_d with expression-conditioned styles (sec. 3.4, eq. 7).
- `agora_generator`: `AgoraGenerator` with the identity / animate split.
- `dual_discrimination`: the displacement-coloured cue S(psi) (sec. 3.6, eq. 8).
- `agora_discriminator`: `AgoraDiscriminator` (cue variants of Table 3).
"""

from agora_core.models.fir_resample import downsample2d, downsample2d_reference, upsample2d, upsample2d_reference
from agora_core.models.mapping import MappingNetwork, normalize_2nd_moment, truncate
from agora_core.models.stylegan2_discriminator import (
    Discriminator,
    DiscriminatorBlock,
    DiscriminatorEpilogue,
    projection_logits,
)
from agora_core.models.stylegan2_layers import (
    EqualConv2d,
    EqualLinear,
    ModulatedConv,
    NoiseInjection,
    ToOutput,
    bias_act,
    count_parameters,
    demodulation_coefficients,
    minibatch_std,
    modulated_conv2d,
    modulated_conv2d_reference,
    normalize_shape_condition,
)
from agora_core.models.stylegan2_synthesis import (
    SynthesisBlock,
    SynthesisLayer,
    SynthesisNetwork,
    SynthesisTail,
    SynthesisTap,
    synthesis_channels,
)
from agora_core.models.generator_config import DiscriminatorConfig, GeneratorConfig
from agora_core.models.lifting import lift_gaussians, opacity_beta_loss, sample_uv_attributes
from agora_core.models.shape_conditioning import shape_displacement, shape_displacement_map
from agora_core.models.facial_mask import facial_sample_mask, facial_vertex_mask
from agora_core.models.deformation_branch import DeformationBranch, ExpressionEmbedding, expression_condition
from agora_core.models.agora_generator import AgoraGenerator, GeneratorOutput, IdentityCache
from agora_core.models.dual_discrimination import dual_discrimination_cue
from agora_core.models.agora_discriminator import AgoraDiscriminator

__all__ = [
    "Discriminator",
    "DiscriminatorBlock",
    "DiscriminatorEpilogue",
    "EqualConv2d",
    "EqualLinear",
    "MappingNetwork",
    "ModulatedConv",
    "NoiseInjection",
    "SynthesisBlock",
    "SynthesisLayer",
    "SynthesisNetwork",
    "SynthesisTail",
    "SynthesisTap",
    "ToOutput",
    "bias_act",
    "count_parameters",
    "demodulation_coefficients",
    "downsample2d",
    "downsample2d_reference",
    "minibatch_std",
    "modulated_conv2d",
    "modulated_conv2d_reference",
    "normalize_2nd_moment",
    "normalize_shape_condition",
    "projection_logits",
    "synthesis_channels",
    "truncate",
    "upsample2d",
    "upsample2d_reference",
    # AGORA
    "AgoraDiscriminator",
    "AgoraGenerator",
    "DeformationBranch",
    "DiscriminatorConfig",
    "ExpressionEmbedding",
    "GeneratorConfig",
    "GeneratorOutput",
    "IdentityCache",
    "dual_discrimination_cue",
    "expression_condition",
    "facial_sample_mask",
    "facial_vertex_mask",
    "lift_gaussians",
    "opacity_beta_loss",
    "sample_uv_attributes",
    "shape_displacement",
    "shape_displacement_map",
]
