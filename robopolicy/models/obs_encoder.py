"""The observation encoder: a dict of observation histories -> one condition vector per sample.

For each of the ``To`` observation steps, every camera goes through its image encoder and the
low-dimensional keys (proprioception, object state) are concatenated and optionally passed
through an MLP; the per-step features are concatenated, then the steps are flattened::

    step_feat_k = [img_enc_1(image_1_k), ..., img_enc_n(image_n_k), lowdim_mlp(lowdim_k)]
    cond        = [step_feat_1, ..., step_feat_To]                  (B, To * step_dim)

Image encoder (one per camera, or one shared by all rgb cameras)::

    crop:  random crop in train mode, centre crop in eval mode (the same size), or none
    trunk: ResNet-18 with GroupNorm -> (512, h, w)
    pool:  spatial softmax keypoints (K expected (x, y) image coordinates) or global average
    proj:  Linear -> feature_dim

Spatial softmax (Levine et al. 2016): a 1x1 conv makes K heat maps; a softmax over the pixels
turns each into a distribution p_k(i, j) and the keypoint is its expected position
``(sum p_k x_j, sum p_k y_i)`` with pixel coordinates spread over ``[-1, 1]``.

Inputs are in the dataset layout: images ``(B, To, H, W, C)`` (rgb) or ``(B, To, H, W)`` /
``(B, To, H, W, 1)`` (depth). uint8 images are scaled to ``[0, 1]``; float images are taken as
they come (already normalised).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from robopolicy.models.mlp import MLP
from robopolicy.models.resnet import resnet18_groupnorm

IMAGE_TYPES = ("rgb", "depth")


def image_layout(spec: dict) -> tuple[int, int, int]:
    """``(channels, height, width)`` of an rgb or depth entry of ``shape_meta['obs']``."""
    shape = list(spec["shape"])
    if spec["type"] == "rgb":
        height, width, channels = shape
    elif len(shape) == 2:
        (height, width), channels = shape, 1
    else:
        height, width, channels = shape
    return channels, height, width


def to_float_chw(images: torch.Tensor, channels: int) -> torch.Tensor:
    """``(N, H, W[, C])`` any dtype -> ``(N, C, H, W)`` float in channels-last memory (the
    dataset's own order, so usually no copy); uint8 is scaled to ``[0, 1]``."""
    images = images.float() / 255.0 if images.dtype == torch.uint8 else images.float()
    if images.dim() == 3:
        images = images[:, :, :, None]
    if images.shape[-1] != channels:
        raise ValueError(
            f"expected {channels} channels last, got image shape {tuple(images.shape)}"
        )
    return images.permute(0, 3, 1, 2).contiguous(memory_format=torch.channels_last)


class RandomCrop(nn.Module):
    """Crop ``(N, C, H, W)`` to ``(N, C, h, w)``: random per image (train), centred (eval)."""

    def __init__(self, crop_shape: Sequence[int]):
        super().__init__()
        self.height, self.width = (int(d) for d in crop_shape)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        n, _, full_h, full_w = images.shape
        if self.training:
            top = torch.randint(0, full_h - self.height + 1, (n,), device=images.device)
            left = torch.randint(0, full_w - self.width + 1, (n,), device=images.device)
            rows = top[:, None] + torch.arange(self.height, device=images.device)  # (N, h)
            cols = left[:, None] + torch.arange(self.width, device=images.device)  # (N, w)
            batch = torch.arange(n, device=images.device)[:, None, None]
            crops = images.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]]
            return crops.permute(0, 3, 1, 2)
        top = (full_h - self.height) // 2
        left = (full_w - self.width) // 2
        return images[:, :, top : top + self.height, left : left + self.width]


class SpatialSoftmax(nn.Module):
    """``(N, C, H, W) -> (N, K, 2)`` expected keypoint coordinates ``(x, y)`` in ``[-1, 1]``."""

    def __init__(self, in_channels: int, num_keypoints: int):
        super().__init__()
        self.keypoint_conv = nn.Conv2d(in_channels, num_keypoints, 1)
        self.log_temperature = nn.Parameter(torch.zeros(()))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        n, _, height, width = features.shape
        heat = self.keypoint_conv(features).flatten(2)  # (N, K, H*W)
        probs = torch.softmax(heat / self.log_temperature.exp(), dim=-1)
        ys = torch.linspace(-1.0, 1.0, height, device=features.device)
        xs = torch.linspace(-1.0, 1.0, width, device=features.device)
        grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
        coords = torch.stack([grid_x.flatten(), grid_y.flatten()], dim=-1)  # (H*W, 2)
        return probs @ coords


class ImageEncoder(nn.Module):
    """``(N, C, H, W)`` float -> ``(N, feature_dim)``: crop, ResNet-18 trunk, pool, project.

    The convolution weights are kept channels-last, as ``to_float_chw`` gives the images, so the
    whole trunk runs channels-last. A channels-last image under default-format weights (what
    this encoder did before issue 18) ran the standard-width ResNet-18 1.67x slower at batch 1;
    channels-last end to end beat a contiguous NCHW copy too (docs/benchmarks.md, issue 18).
    """

    def __init__(
        self,
        in_channels: int,
        crop_shape: Sequence[int] | None,
        feature_dim: int,
        use_spatial_softmax: bool,
        num_keypoints: int,
        width: int = 64,
    ):
        super().__init__()
        self.crop = RandomCrop(crop_shape) if crop_shape is not None else nn.Identity()
        self.trunk = resnet18_groupnorm(in_channels, width)
        if use_spatial_softmax:
            self.pool = nn.Sequential(
                SpatialSoftmax(self.trunk.out_channels, num_keypoints), nn.Flatten()
            )
            pooled_dim = 2 * num_keypoints
        else:
            self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
            pooled_dim = self.trunk.out_channels
        self.proj = nn.Linear(pooled_dim, feature_dim)
        self.to(memory_format=torch.channels_last)  # 4-D weights only; values unchanged

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.proj(self.pool(self.trunk(self.crop(images))))


class ObsEncoder(nn.Module):
    """``{key: (B, To, ...)} -> (B, To * step_dim)`` for the keys and types in ``shape_meta``.

    Args:
        shape_meta: ``{"obs": {key: {"shape", "type"}}, "action": ...}``; keys are used in order.
        crop_shape: ``(h, w)`` crop of every image (train: random, eval: centre); None: no crop.
        image_feature_dim: output width of each camera's encoder.
        use_spatial_softmax: keypoint pooling (True) or global average pooling (False).
        num_keypoints: K, the number of spatial-softmax keypoints.
        share_rgb_encoder: one encoder for all rgb cameras (they must have the same shape).
        low_dim_mlp_dims: hidden widths of an MLP over the concatenated low-dim keys; empty: the
            normalised values are used as they are.
        resnet_width: channels of the ResNet-18's first stage (64: the standard network; 16 or
            32: a slimmer one for CPU training).
    """

    def __init__(
        self,
        shape_meta: dict,
        crop_shape: Sequence[int] | None = None,
        image_feature_dim: int = 64,
        use_spatial_softmax: bool = True,
        num_keypoints: int = 32,
        share_rgb_encoder: bool = False,
        low_dim_mlp_dims: Sequence[int] = (),
        resnet_width: int = 64,
    ):
        super().__init__()
        obs_meta = shape_meta["obs"]
        self.image_keys = [k for k, v in obs_meta.items() if v["type"] in IMAGE_TYPES]
        self.low_dim_keys = [k for k, v in obs_meta.items() if v["type"] == "low_dim"]
        self.image_channels = {k: image_layout(obs_meta[k])[0] for k in self.image_keys}
        for key in self.image_keys:
            _, height, width = image_layout(obs_meta[key])
            if crop_shape is not None and (crop_shape[0] > height or crop_shape[1] > width):
                raise ValueError(
                    f"crop_shape {list(crop_shape)} is larger than image {key!r} ({height}x{width})"
                )
        rgb_keys = [k for k in self.image_keys if obs_meta[k]["type"] == "rgb"]
        if share_rgb_encoder and len({tuple(obs_meta[k]["shape"]) for k in rgb_keys}) > 1:
            raise ValueError("share_rgb_encoder needs every rgb camera to have the same shape")

        def make_encoder(key: str) -> ImageEncoder:
            return ImageEncoder(
                self.image_channels[key],
                crop_shape,
                image_feature_dim,
                use_spatial_softmax,
                num_keypoints,
                resnet_width,
            )

        # Encoders in a list, with each image key pointing at its index (shared rgb: one entry).
        self.image_encoders = nn.ModuleList()
        self.encoder_index: dict[str, int] = {}
        for key in self.image_keys:
            if share_rgb_encoder and key in rgb_keys and rgb_keys[0] in self.encoder_index:
                self.encoder_index[key] = self.encoder_index[rgb_keys[0]]
                continue
            self.encoder_index[key] = len(self.image_encoders)
            self.image_encoders.append(make_encoder(key))

        low_dim = sum(math.prod(obs_meta[k]["shape"]) for k in self.low_dim_keys)
        if low_dim_mlp_dims and low_dim > 0:
            self.low_dim_net = MLP(low_dim, low_dim_mlp_dims, None)
            low_dim = self.low_dim_net.out_dim
        else:
            self.low_dim_net = nn.Identity()
        self.step_dim = image_feature_dim * len(self.image_keys) + low_dim

    def forward(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        batch, steps = obs[(self.image_keys + self.low_dim_keys)[0]].shape[:2]
        features = []
        for key in self.image_keys:
            images = obs[key].flatten(0, 1)  # (B*To, H, W[, C])
            images = to_float_chw(images, self.image_channels[key])
            features.append(self.image_encoders[self.encoder_index[key]](images))
        if self.low_dim_keys:
            low_dim = torch.cat(
                [obs[k].flatten(0, 1).flatten(1).float() for k in self.low_dim_keys], -1
            )
            features.append(self.low_dim_net(low_dim))
        return torch.cat(features, dim=-1).reshape(batch, steps * self.step_dim)
