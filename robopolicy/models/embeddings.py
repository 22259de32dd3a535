"""Sinusoidal embedding of a scalar time (a diffusion step or a flow time), as in "Attention Is All
You Need" and DDPM.

For a time ``t`` and an embedding of even width ``d = 2h``::

    freq_i = max_period ** (-i / (h - 1)),   i = 0 .. h-1
    emb(t) = [sin(t * freq_0), ..., sin(t * freq_{h-1}), cos(t * freq_0), ..., cos(t * freq_{h-1})]

The frequencies run from 1 down to 1/max_period, so ``t`` should vary over a range of hundreds or
thousands for every channel to carry information. The policies therefore pass times on the scale
of diffusion steps: the diffusion policy its integer step index in ``[0, num_train_timesteps)``,
the flow policy ``1000 * t`` for ``t`` in ``[0, 1]``.
"""

from __future__ import annotations

import torch
from torch import nn


class SinusoidalTimeEmbedding(nn.Module):
    """``(B,)`` float times -> ``(B, dim)`` sinusoidal features (no learned parameters)."""

    def __init__(self, dim: int, max_period: float = 10000.0):
        super().__init__()
        if dim < 4 or dim % 2 != 0:
            raise ValueError(f"dim must be an even number >= 4, got {dim}")
        self.dim = dim
        half = dim // 2
        exponents = torch.arange(half, dtype=torch.float32) / (half - 1)
        # A buffer so it follows .to(device); not persistent, so it stays out of checkpoints.
        self.register_buffer("freqs", max_period ** (-exponents), persistent=False)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        angles = t.float()[:, None] * self.freqs[None, :]
        return torch.cat([angles.sin(), angles.cos()], dim=-1)


def time_mlp(dim: int, out_dim: int) -> nn.Sequential:
    """Sinusoidal features followed by a small MLP, the usual learned time embedding."""
    return nn.Sequential(
        SinusoidalTimeEmbedding(dim),
        nn.Linear(dim, 4 * dim),
        nn.Mish(),
        nn.Linear(4 * dim, out_dim),
    )
