"""Multi-layer perceptrons: a generic ``MLP`` and ``MLPDenoiser``, the smallest denoiser backbone.

``MLPDenoiser`` flattens the noisy action chunk and concatenates it with the time embedding and
the observation condition (the choice of DPPO's state-based policies)::

    h   = [flatten(x_t), emb(t), cond]             (B, T*Da + Dt + Dc)
    out = MLP(h).reshape(B, T, Da)

It knows the horizon ``T`` at construction, unlike the convolutional and transformer backbones.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from robopolicy.models.embeddings import time_mlp

ACTIVATIONS = {"mish": nn.Mish, "relu": nn.ReLU, "gelu": nn.GELU, "silu": nn.SiLU, "tanh": nn.Tanh}


class MLP(nn.Module):
    """``in_dim -> hidden_dims... -> out_dim``, activation after every hidden layer.

    ``residual=True`` adds a skip connection around each hidden layer whose input and output
    widths match (``h <- h + act(norm(W h))``); ``layer_norm=True`` normalises before each
    activation. ``out_dim=None`` ends on the last hidden layer (its activation included).

    The repo's one MLP builder: the observation encoder, the PPO critic, and SAC's actor and
    critics (``layer_norm=True``: ``Linear -> LayerNorm -> activation`` per hidden layer) use it.
    """

    def __init__(
        self,
        in_dim: int,
        hidden_dims: Sequence[int],
        out_dim: int | None,
        activation: str = "mish",
        layer_norm: bool = False,
        residual: bool = False,
    ):
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
        if out_dim is None and len(hidden_dims) == 0:
            raise ValueError("hidden_dims must not be empty when out_dim is None")
        if any(int(h) < 1 for h in hidden_dims):
            raise ValueError(f"hidden_dims must be positive ints, got {list(hidden_dims)}")
        self.residual = residual
        self.hidden = nn.ModuleList()
        width = in_dim
        for hidden_dim in hidden_dims:
            norm = nn.LayerNorm(hidden_dim) if layer_norm else nn.Identity()
            layer = nn.Sequential(nn.Linear(width, hidden_dim), norm, ACTIVATIONS[activation]())
            self.hidden.append(layer)
            width = hidden_dim
        self.head = nn.Linear(width, out_dim) if out_dim is not None else nn.Identity()
        self.out_dim = out_dim if out_dim is not None else width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.hidden:
            y = layer(x)
            x = x + y if self.residual and y.shape == x.shape else y
        return self.head(x)


class MLPDenoiser(nn.Module):
    """``(x (B,T,Da), t (B,), cond (B,Dc)) -> (B,T,Da)`` with a residual MLP on the flat chunk."""

    def __init__(
        self,
        action_dim: int,
        horizon: int,
        cond_dim: int,
        hidden_dims: Sequence[int] = (512, 512, 512),
        time_embed_dim: int = 64,
        activation: str = "mish",
        layer_norm: bool = True,
    ):
        super().__init__()
        self.action_dim = action_dim
        self.horizon = horizon
        self.time_embed = time_mlp(time_embed_dim, time_embed_dim)
        self.mlp = MLP(
            horizon * action_dim + time_embed_dim + cond_dim,
            hidden_dims,
            horizon * action_dim,
            activation=activation,
            layer_norm=layer_norm,
            residual=True,
        )

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        batch = x.shape[0]
        h = torch.cat([x.reshape(batch, -1), self.time_embed(t), cond], dim=-1)
        return self.mlp(h).reshape(batch, self.horizon, self.action_dim)
