"""A 1-D temporal UNet over the action chunk, conditioned by FiLM (the Diffusion Policy backbone).

The chunk ``x (B, T, Da)`` is treated as a ``Da``-channel signal of length ``T``. Each level of
the UNet has two residual blocks of 1-D convolutions; between levels the length is halved on the
way down (``Conv1d(d, d, 3, stride 2, padding 1)``) and doubled on the way up
(``ConvTranspose1d(d, d, 4, stride 2, padding 1)``), and each up level concatenates a skip
connection saved on the way down. Two layouts of the up path (``layout``):

* ``diffusion_policy``: Chi et al.'s ``ConditionalUnet1D`` (diffusion_policy and LeRobot's
  DiffusionPolicy build the same network). With ``L = len(down_dims)`` levels there are ``L - 1``
  up levels; up level ``j`` (``j = L-2 .. 0``) concatenates the skip of level ``j + 1`` and maps
  ``2 * down_dims[j+1] -> down_dims[j]``, then upsamples. The skip of the first (full-length)
  level is never used. At down dims 64-128-256, kernel 5, 8 groups, time embedding 128, action
  dim 7 and a 46-wide condition (2 observation steps of 23 numbers) it has 4,583,303
  parameters, as theirs do.
* ``every_level``: this project's first network, kept so that its checkpoints load. One up level
  per down level (``L``), each concatenating the skip of its own level, so every skip is used and
  the up path has one more level, at the deepest width; the last up level does not upsample. At the
  settings above it has 6,658,375 parameters (+45%) and ~58% more multiply-adds.

Conditioning is global: ``c = [time_mlp(t), cond]`` with ``time_mlp`` = sinusoidal features ->
``Linear(d, 4d)`` -> Mish -> ``Linear(4d, d)``; in every residual block ``c`` is mapped to a
per-channel scale and shift (FiLM, Perez et al. 2018)::

    h = conv_block_1(x)                     conv -> GroupNorm -> Mish
    gamma, beta = Linear(Mish(c)).chunk(2)
    h = (1 + gamma) * h + beta              FiLM; gamma = beta = 0 is the identity
    h = conv_block_2(h)
    out = h + residual_conv(x)              1x1 conv when channel counts differ

(Diffusion Policy writes ``gamma * h + beta``: the same parameters and the same functions, the
scale offset by one so that a freshly initialised block starts near the identity.) The output is
``Conv1dBlock(d0, d0)`` -> ``Conv1d(d0, Da, 1)``.

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


LAYOUTS = ("diffusion_policy", "every_level")


class ConditionalUnet1D(nn.Module):
    """``(x (B,T,Da), t (B,), cond (B,Dc)) -> (B,T,Da)``.

    ``down_dims`` gives the channel width of each level (the number of levels is its length);
    each width must be divisible by ``n_groups`` (GroupNorm). ``layout`` chooses the up path
    (module docstring): ``diffusion_policy`` or ``every_level``.
    """

    def __init__(
        self,
        action_dim: int,
        cond_dim: int,
        down_dims: Sequence[int] = (256, 512, 1024),
        kernel_size: int = 5,
        n_groups: int = 8,
        time_embed_dim: int = 128,
        layout: str = "diffusion_policy",
    ):
        super().__init__()
        down_dims = list(down_dims)
        if len(down_dims) == 0:
            raise ValueError("down_dims must list at least one channel width")
        if any(d % n_groups for d in down_dims):
            raise ValueError(f"down_dims {down_dims} must all be divisible by n_groups={n_groups}")
        if kernel_size % 2 != 1:
            raise ValueError(f"kernel_size must be odd, got {kernel_size}")
        if layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
        self.layout = layout
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

        # Up levels run from the deepest; each sees [current, the skip popped last] and ends at
        # the width of its output level, then upsamples unless the length is back to full.
        self.up = nn.ModuleList()
        self.upsample = nn.ModuleList()
        for out_level, skip_level in self._up_levels():
            dim, skip = down_dims[out_level], down_dims[skip_level]
            self.up.append(nn.ModuleList([res_block(width + skip, dim), res_block(dim, dim)]))
            upsample = nn.ConvTranspose1d(dim, dim, 4, stride=2, padding=1)
            self.upsample.append(upsample if skip_level > 0 else nn.Identity())
            width = dim

        self.final = nn.Sequential(
            Conv1dBlock(width, width, kernel_size, n_groups), nn.Conv1d(width, action_dim, 1)
        )

    def _up_levels(self) -> list[tuple[int, int]]:
        """``(output level, skip level)`` of each up level, deepest first. The length is halved
        after every down level but the last, so the length is full again once the skip of level
        0 has been used (``every_level``) or level 1's has (``diffusion_policy``)."""
        levels = reversed(range(self.num_levels))
        if self.layout == "every_level":
            return [(level, level) for level in levels]
        return [(level - 1, level) for level in levels if level > 0]

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
            h = torch.cat([h, skips.pop()], dim=1)  # diffusion_policy leaves level 0's unused
            h = block2(block1(h, c), c)
            h = upsample(h)

        return self.final(h)[:, :, :horizon].transpose(1, 2)
