"""ResNet-18 (He et al. 2016) with GroupNorm instead of BatchNorm, as a vision trunk.

Diffusion Policy found BatchNorm harmful with an EMA of the weights (running statistics lag the
averaged weights), so every normalisation layer here is ``GroupNorm(channels // 16, channels)``.
The network is trained from scratch (no pretrained weights are downloaded).

Architecture (input ``(B, C, H, W)``, output ``(B, 512, H/32, W/32)``; no average pool, no fc)::

    stem    conv 7x7/2 (64) -> norm -> ReLU -> maxpool 3x3/2
    layer1  2 x BasicBlock(64)
    layer2  2 x BasicBlock(128), first with stride 2
    layer3  2 x BasicBlock(256), first with stride 2
    layer4  2 x BasicBlock(512), first with stride 2

    BasicBlock: y = ReLU(norm(conv3x3(ReLU(norm(conv3x3(x))))) + shortcut(x))
                shortcut = conv1x1/stride -> norm when the shape changes, else identity

About 11.2M parameters, like torchvision's resnet18 without its fc layer. ``width`` scales every
stage (``width, 2 width, 4 width, 8 width`` channels; 64 is the standard network): the same
18-layer architecture at ``width=16`` has 1/16 of the parameters and multiply-adds, which is what
makes an image policy trainable on a few CPU cores.
"""

from __future__ import annotations

import torch
from torch import nn


def group_norm(channels: int, group_size: int = 16) -> nn.GroupNorm:
    return nn.GroupNorm(max(1, channels // group_size), channels)


class BasicBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, padding=1, bias=False)
        self.norm1 = group_norm(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, padding=1, bias=False)
        self.norm2 = group_norm(out_channels)
        self.relu = nn.ReLU(inplace=True)
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                group_norm(out_channels),
            )
        else:
            self.shortcut = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.relu(self.norm1(self.conv1(x)))
        h = self.norm2(self.conv2(h))
        return self.relu(h + self.shortcut(x))


class ResNet18(nn.Module):
    """The ResNet-18 trunk: ``(B, in_channels, H, W) -> (B, 8 width, ceil(H/32), ceil(W/32))``."""

    def __init__(self, in_channels: int = 3, width: int = 64):
        super().__init__()
        if width < 16 or width % 16:
            raise ValueError(f"ResNet-18 width must be a multiple of 16 (GroupNorm), got {width}")
        self.out_channels = 8 * width
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, width, 7, stride=2, padding=3, bias=False),
            group_norm(width),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(3, stride=2, padding=1),
        )
        layers = []
        stages = ((width, 1), (2 * width, 2), (4 * width, 2), (8 * width, 2))
        for out_channels, stride in stages:
            layers.append(
                nn.Sequential(
                    BasicBlock(width, out_channels, stride),
                    BasicBlock(out_channels, out_channels, 1),
                )
            )
            width = out_channels
        self.layers = nn.Sequential(*layers)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(self.stem(x))


def resnet18_groupnorm(in_channels: int = 3, width: int = 64) -> ResNet18:
    """A randomly initialised ResNet-18 trunk with GroupNorm (see the module docstring)."""
    return ResNet18(in_channels, width)
