"""A transformer denoiser: the action chunk as tokens, attending to time and observation tokens.

The sequence fed to a pre-LayerNorm transformer encoder (full self-attention) is::

    [ time token | cond tokens (n_cond_tokens) | action tokens (T) ] + learned position embedding

    time token    = time_mlp(t)                                       (B, 1, d_model)
    cond tokens   = Linear(cond).reshape(B, n_cond_tokens, d_model)   (B, n_cond_tokens, d_model)
    action tokens = Linear(x_t)                                       (B, T, d_model)

and the output at the action positions is projected back to ``Da``. Prefix conditioning keeps
the block a plain ``nn.TransformerEncoderLayer``; every action token can read the time and the
observation at every layer.
"""

from __future__ import annotations

import torch
from torch import nn

from robopolicy.models.embeddings import time_mlp


class TransformerDenoiser(nn.Module):
    """``(x (B,T,Da), t (B,), cond (B,Dc)) -> (B,T,Da)``; the horizon ``T`` is fixed at build."""

    def __init__(
        self,
        action_dim: int,
        horizon: int,
        cond_dim: int,
        d_model: int = 256,
        n_heads: int = 4,
        n_layers: int = 6,
        n_cond_tokens: int = 1,
        dropout: float = 0.1,
    ):
        super().__init__()
        if d_model % n_heads != 0:
            raise ValueError(f"d_model={d_model} must be divisible by n_heads={n_heads}")
        if n_cond_tokens < 1:
            raise ValueError(f"n_cond_tokens must be >= 1, got {n_cond_tokens}")
        self.horizon = horizon
        self.n_cond_tokens = n_cond_tokens
        self.d_model = d_model
        self.time_embed = time_mlp(d_model, d_model)
        self.cond_proj = nn.Linear(cond_dim, n_cond_tokens * d_model)
        self.action_proj = nn.Linear(action_dim, d_model)
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + n_cond_tokens + horizon, d_model))
        nn.init.normal_(self.pos_embed, std=0.02)
        layer = nn.TransformerEncoderLayer(
            d_model,
            n_heads,
            dim_feedforward=4 * d_model,
            dropout=dropout,
            activation="gelu",
            batch_first=True,
            norm_first=True,
        )
        self.encoder = nn.TransformerEncoder(layer, n_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, action_dim)

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        batch = x.shape[0]
        tokens = torch.cat(
            [
                self.time_embed(t)[:, None, :],
                self.cond_proj(cond).reshape(batch, self.n_cond_tokens, self.d_model),
                self.action_proj(x),
            ],
            dim=1,
        )
        h = self.encoder(tokens + self.pos_embed)
        return self.head(self.norm(h[:, 1 + self.n_cond_tokens :]))
