"""StyleGAN2 building blocks for AGORA's generator and discriminator (plain PyTorch, CPU-ready).

- `stylegan2_layers`: equalised-LR layers, modulated conv (fast + reference), noise, ToOutput,
  minibatch std, spatial shape conditioning (paper sec. 3.3).
- `fir_resample`: [1,3,3,1] FIR up/down-sampling (fast + reference).
- `mapping`: EG3D-style conditional mapping network (z, c) -> w with w_avg and truncation.
- `stylegan2_synthesis`: skip synthesis network (identity branch), its 64² tap, and the
  synthesis tail the deformation branch is built from (paper sec. 3.4).
- `stylegan2_discriminator`: ResNet D with projection conditioning (dual discrimination, sec. 3.6).
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
]
