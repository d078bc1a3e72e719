"""Mapping network M: (z, camera label) -> w, conditioned as in EG3D (AGORA paper eq. 3).

z is normalised by its second moment; the label c is embedded by an EqualLinear (to w_dim
features) and normalised the same way; the two are concatenated and passed through an MLP of
equalised-LR lrelu layers with learning-rate multiplier 0.01. w is broadcast to `num_ws` copies
(one per synthesis layer). The network tracks the running mean w_avg used for truncation.

The same class with z_dim=0 and num_ws=None is the discriminator's label mapping (projection
conditioning, Miyato & Koyama 2018, as in StyleGAN2-ADA).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from agora_core.models.stylegan2_layers import EqualLinear


def normalize_2nd_moment(x: Tensor, eps: float = 1e-8) -> Tensor:
    """x / sqrt(mean(x²) over features + eps).

    Args:
        x: [B, D].
    Returns:
        [B, D] with unit mean square per row.
    """
    assert x.ndim == 2, x.shape
    return x * torch.rsqrt(x.square().mean(dim=1, keepdim=True) + eps)


def truncate(ws: Tensor, w_avg: Tensor, psi: float, cutoff: int | None = None) -> Tensor:
    """Truncation trick: w' = w_avg + psi · (w − w_avg) on the first `cutoff` ws (all if None).

    Args:
        ws: [B, num_ws, w_dim].
        w_avg: [w_dim].
        psi: 1 = no truncation, 0 = every w equals w_avg.
    Returns:
        [B, num_ws, w_dim].
    """
    assert ws.ndim == 3 and w_avg.shape == (ws.shape[2],), (ws.shape, w_avg.shape)
    if psi == 1:
        return ws
    cutoff = ws.shape[1] if cutoff is None else cutoff
    head = w_avg.lerp(ws[:, :cutoff], psi)
    return torch.cat([head, ws[:, cutoff:]], dim=1)


class MappingNetwork(nn.Module):
    """EG3D-style conditional mapping network.

    Args:
        z_dim: latent size (0: label only, as in the discriminator's label mapping).
        c_dim: label size (0: unconditional).
        w_dim: output size.
        num_ws: number of broadcast copies; None returns [B, w_dim].
        num_layers: MLP depth (StyleGAN2: 8; the AGORA authors use 2).
        lr_mul: learning-rate multiplier of the MLP layers (not of the label embedding).
        w_avg_beta: decay of the running mean of w; None disables tracking (and truncation).
        layer_features: hidden width (default w_dim).
    """

    def __init__(self, z_dim: int, c_dim: int, w_dim: int, num_ws: int | None, num_layers: int = 8,
                 lr_mul: float = 0.01, w_avg_beta: float | None = 0.998, layer_features: int | None = None):
        super().__init__()
        assert z_dim >= 0 and c_dim >= 0 and z_dim + c_dim > 0, (z_dim, c_dim)
        assert num_layers >= 1 and w_dim > 0, (num_layers, w_dim)
        self.z_dim, self.c_dim, self.w_dim, self.num_ws = z_dim, c_dim, w_dim, num_ws
        self.w_avg_beta = w_avg_beta
        self.embed = EqualLinear(c_dim, w_dim) if c_dim > 0 else None
        hidden = layer_features or w_dim
        widths = [z_dim + (w_dim if c_dim > 0 else 0)] + [hidden] * (num_layers - 1) + [w_dim]
        self.layers = nn.ModuleList(
            EqualLinear(widths[i], widths[i + 1], lr_mul=lr_mul, activation="lrelu") for i in range(num_layers)
        )
        if w_avg_beta is not None:
            self.register_buffer("w_avg", torch.zeros(w_dim))

    def forward(self, z: Tensor | None, c: Tensor | None, truncation_psi: float = 1.0,
                truncation_cutoff: int | None = None) -> Tensor:
        """(z [B, z_dim], c [B, c_dim]) -> ws [B, num_ws, w_dim] (or [B, w_dim] if num_ws is None).

        In training mode w_avg moves towards the batch mean of w (before truncation).
        """
        parts = []
        if self.z_dim > 0:
            assert z is not None and z.ndim == 2 and z.shape[1] == self.z_dim, (None if z is None else z.shape)
            parts.append(normalize_2nd_moment(z))
        if self.c_dim > 0:
            assert c is not None and c.ndim == 2 and c.shape[1] == self.c_dim, (None if c is None else c.shape)
            parts.append(normalize_2nd_moment(self.embed(c)))
        assert len({p.shape[0] for p in parts}) == 1, [p.shape for p in parts]
        x = torch.cat(parts, dim=1)
        for layer in self.layers:
            x = layer(x)

        if self.w_avg_beta is not None and self.training:
            with torch.no_grad():
                self.w_avg.copy_(x.detach().mean(dim=0).lerp(self.w_avg, self.w_avg_beta))
        if self.num_ws is None:
            assert truncation_psi == 1, "truncation needs num_ws"
            return x
        ws = x[:, None, :].repeat(1, self.num_ws, 1)
        if truncation_psi != 1:
            assert self.w_avg_beta is not None, "truncation needs w_avg tracking (w_avg_beta)"
            ws = truncate(ws, self.w_avg, truncation_psi, truncation_cutoff)
        return ws
