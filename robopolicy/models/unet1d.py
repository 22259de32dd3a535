"""A 1-D temporal UNet over the action chunk, conditioned by FiLM (the Diffusion Policy backbone).

The chunk ``x (B, T, Da)`` is treated as a ``Da``-channel signal of length ``T``. Each level of
the UNet has two residual blocks of 1-D convolutions; between levels the length is halved on the
way down and doubled on the way up, and each up level concatenates the skip connection saved at
the same level on the way down.

Conditioning is global: ``c = [time_mlp(t), cond]`` is mapped, in every residual block, to a
per-channel scale and shift (FiLM, Perez et al. 2018)::

    h = conv_block_1(x)                     conv -> GroupNorm -> Mish
    gamma, beta = Linear(Mish(c)).chunk(2)
    h = (1 + gamma) * h + beta              FiLM; gamma = beta = 0 is the identity
    h = conv_block_2(h)
    out = h + residual_conv(x)              1x1 conv when channel counts differ

The length is padded (edge values repeated) up to a multiple of ``2 ** (len(down_dims) - 1)``
and the output cropped back, so any horizon works.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from robopolicy.models.embeddings import time_mlp


class Conv1dBlock(nn.Sequential):
    """Conv1d (length preserved) -> GroupNorm -> Mish."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, n_groups: int):
        super().__init__(
            nn.Conv1d(in_channels, out_channels, kernel_size, padding=kernel_size // 2),
            nn.GroupNorm(n_groups, out_channels),
            nn.Mish(),
        )


class FiLMResidualBlock1D(nn.Module):
    """Two conv blocks with a FiLM modulation between them and a residual connection."""

    def __init__(
        self, in_channels: int, out_channels: int, cond_dim: int, kernel_size: int, n_groups: int
    ):
        super().__init__()
        self.block1 = Conv1dBlock(in_channels, out_channels, kernel_size, n_groups)
        self.block2 = Conv1dBlock(out_channels, out_channels, kernel_size, n_groups)
        self.film = nn.Sequential(nn.Mish(), nn.Linear(cond_dim, 2 * out_channels))
        if in_channels == out_channels:
            self.residual = nn.Identity()
        else:
            self.residual = nn.Conv1d(in_channels, out_channels, 1)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        h = self.block1(x)
        gamma, beta = self.film(cond)[:, :, None].chunk(2, dim=1)
        h = (1 + gamma) * h + beta
        return self.block2(h) + self.residual(x)


class ConditionalUnet1D(nn.Module):
    """``(x (B,T,Da), t (B,), cond (B,Dc)) -> (B,T,Da)``.

    ``down_dims`` gives the channel width of each level (the number of levels is its length);
    each width must be divisible by ``n_groups`` (GroupNorm).
    """

    def __init__(
        self,
        action_dim: int,
        cond_dim: int,
        down_dims: Sequence[int] = (256, 512, 1024),
        kernel_size: int = 5,
        n_groups: int = 8,
        time_embed_dim: int = 128,
    ):
        super().__init__()
        down_dims = list(down_dims)
        if len(down_dims) == 0:
            raise ValueError("down_dims must list at least one channel width")
        if any(d % n_groups for d in down_dims):
            raise ValueError(f"down_dims {down_dims} must all be divisible by n_groups={n_groups}")
        if kernel_size % 2 != 1:
            raise ValueError(f"kernel_size must be odd, got {kernel_size}")
        self.num_levels = len(down_dims)
        self.time_embed = time_mlp(time_embed_dim, time_embed_dim)
        film_dim = time_embed_dim + cond_dim

        def res_block(c_in: int, c_out: int) -> FiLMResidualBlock1D:
            return FiLMResidualBlock1D(c_in, c_out, film_dim, kernel_size, n_groups)

        self.down = nn.ModuleList()
        self.downsample = nn.ModuleList()
        width = action_dim
        for level, dim in enumerate(down_dims):
            self.down.append(nn.ModuleList([res_block(width, dim), res_block(dim, dim)]))
            is_last = level == self.num_levels - 1
            self.downsample.append(
                nn.Identity() if is_last else nn.Conv1d(dim, dim, 3, stride=2, padding=1)
            )
            width = dim

        self.mid = nn.ModuleList([res_block(width, width), res_block(width, width)])

        # Up levels run from the deepest to the first; each sees [current, skip of its level].
        self.up = nn.ModuleList()
        self.upsample = nn.ModuleList()
        for level in reversed(range(self.num_levels)):
            dim = down_dims[level]
            self.up.append(nn.ModuleList([res_block(width + dim, dim), res_block(dim, dim)]))
            self.upsample.append(
                nn.Identity()
                if level == 0
                else nn.ConvTranspose1d(dim, dim, 4, stride=2, padding=1)
            )
            width = dim

        self.final = nn.Sequential(
            Conv1dBlock(width, width, kernel_size, n_groups), nn.Conv1d(width, action_dim, 1)
        )

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        horizon = x.shape[1]
        multiple = 2 ** (self.num_levels - 1)
        padded = -(-horizon // multiple) * multiple
        h = x.transpose(1, 2)  # (B, Da, T)
        if padded != horizon:
            h = F.pad(h, (0, padded - horizon), mode="replicate")
        c = torch.cat([self.time_embed(t), cond], dim=-1)

        skips = []
        for (block1, block2), downsample in zip(self.down, self.downsample, strict=True):
            h = block2(block1(h, c), c)
            skips.append(h)
            h = downsample(h)
        for block in self.mid:
            h = block(h, c)
        for (block1, block2), upsample in zip(self.up, self.upsample, strict=True):
            h = torch.cat([h, skips.pop()], dim=1)
            h = block2(block1(h, c), c)
            h = upsample(h)

        return self.final(h)[:, :, :horizon].transpose(1, 2)
