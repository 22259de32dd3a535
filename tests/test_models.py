"""Backbones, ResNet-18 and the observation encoder: shapes, crops, keypoints, bad arguments."""

import pytest
import torch
from torch import nn

from robopolicy.models import (
    ConditionalUnet1D,
    MLPDenoiser,
    ObsEncoder,
    SinusoidalTimeEmbedding,
    TransformerDenoiser,
    resnet18_groupnorm,
)
from robopolicy.models.obs_encoder import RandomCrop, SpatialSoftmax, to_float_chw

torch.set_num_threads(1)

ACTION_DIM, COND_DIM = 3, 10


def tiny_denoiser(name: str, horizon: int) -> nn.Module:
    if name.startswith("unet1d"):
        layout = name.removeprefix("unet1d-")
        return ConditionalUnet1D(
            ACTION_DIM, COND_DIM, down_dims=(16, 32, 64), time_embed_dim=16, layout=layout
        )
    if name == "transformer":
        return TransformerDenoiser(ACTION_DIM, horizon, COND_DIM, d_model=32, n_layers=2)
    return MLPDenoiser(ACTION_DIM, horizon, COND_DIM, hidden_dims=(32, 32))


def test_time_embedding_values():
    emb = SinusoidalTimeEmbedding(8)(torch.tensor([0.0, 5.0]))
    assert emb.shape == (2, 8)
    assert torch.equal(emb[0], torch.tensor([0.0] * 4 + [1.0] * 4))
    assert torch.allclose(emb[1, 0], torch.sin(torch.tensor(5.0)))  # the first frequency is 1
    with pytest.raises(ValueError, match="dim"):
        SinusoidalTimeEmbedding(7)


DENOISERS = ["unet1d-diffusion_policy", "unet1d-every_level", "transformer", "mlp"]


@pytest.mark.parametrize("name", DENOISERS)
@pytest.mark.parametrize("horizon", [8, 7])  # 7: not a multiple of the UNet's 2**2
def test_denoiser_shapes_and_gradients(name, horizon):
    net = tiny_denoiser(name, horizon)
    x = torch.randn(4, horizon, ACTION_DIM)
    out = net(x, torch.tensor([0.0, 10.0, 50.0, 99.0]), torch.randn(4, COND_DIM))
    assert out.shape == x.shape
    out.square().mean().backward()
    assert all(p.grad is not None for p in net.parameters() if p.requires_grad)


@pytest.mark.parametrize("layout", ["diffusion_policy", "every_level"])
def test_denoiser_depends_on_time_and_condition(layout):
    net = tiny_denoiser(f"unet1d-{layout}", 8)
    x, cond = torch.randn(2, 8, ACTION_DIM), torch.randn(2, COND_DIM)
    t = torch.tensor([3.0, 3.0])
    base = net(x, t, cond)
    assert not torch.allclose(base, net(x, t + 40, cond))
    assert not torch.allclose(base, net(x, t, cond + 1))


@pytest.mark.parametrize(
    ("layout", "expected"), [("diffusion_policy", 4_583_303), ("every_level", 6_658_375)]
)
def test_unet_layout_parameter_counts(layout, expected):
    """4,583,303: diffusion_policy's ConditionalUnet1D and LeRobot 0.3.2's DiffusionPolicy UNet,
    both counted with their own code (issue 18) at down dims 64-128-256, kernel 5, 8 groups,
    FiLM scale and bias, step embedding 128, action dim 7, horizon 16 and a global condition of
    46 (2 observation steps of LeRobot's 23-number state; 46 is the width that reproduces it).
    6,658,375: this project's network before the layout option, at the same settings."""
    net = ConditionalUnet1D(
        7,
        46,
        down_dims=(64, 128, 256),
        kernel_size=5,
        n_groups=8,
        time_embed_dim=128,
        layout=layout,
    )
    assert sum(p.numel() for p in net.parameters()) == expected


def test_unet_diffusion_policy_up_path():
    """L - 1 up levels, each 2 * dim_out -> dim_in after the concatenation, all upsampling."""
    net = ConditionalUnet1D(ACTION_DIM, COND_DIM, down_dims=(16, 32, 64), layout="diffusion_policy")
    assert [(up[0].block1[0].in_channels, up[0].block1[0].out_channels) for up in net.up] == [
        (128, 32),
        (64, 16),
    ]
    assert all(isinstance(u, nn.ConvTranspose1d) for u in net.upsample)
    every = ConditionalUnet1D(ACTION_DIM, COND_DIM, down_dims=(16, 32, 64), layout="every_level")
    assert len(every.up) == 3 and isinstance(every.upsample[-1], nn.Identity)


def test_unet_rejects_bad_widths():
    with pytest.raises(ValueError, match="n_groups"):
        ConditionalUnet1D(ACTION_DIM, COND_DIM, down_dims=(12, 24), n_groups=8)
    with pytest.raises(ValueError, match="layout"):
        ConditionalUnet1D(ACTION_DIM, COND_DIM, down_dims=(16, 32), layout="unet")
    with pytest.raises(ValueError, match="n_heads"):
        TransformerDenoiser(ACTION_DIM, 8, COND_DIM, d_model=30, n_heads=4)


def test_resnet18_parameter_count_and_output():
    net = resnet18_groupnorm()
    n_params = sum(p.numel() for p in net.parameters())
    assert 11.0e6 < n_params < 11.4e6  # torchvision's resnet18 is 11.69M, 0.51M of it the fc
    assert not any(isinstance(m, nn.BatchNorm2d) for m in net.modules())
    assert net(torch.zeros(2, 3, 64, 64)).shape == (2, 512, 2, 2)
    assert resnet18_groupnorm(in_channels=1)(torch.zeros(1, 1, 32, 32)).shape == (1, 512, 1, 1)


def test_slim_resnet18_scales_every_stage():
    slim = resnet18_groupnorm(width=16)
    n_params = sum(p.numel() for p in slim.parameters())
    assert 0.65e6 < n_params < 0.75e6  # ~1/16 of the standard network's 11.2M
    assert slim(torch.zeros(2, 3, 64, 64)).shape == (2, 128, 2, 2)
    assert sum(isinstance(m, nn.Conv2d) for m in slim.modules()) == 20  # 17 3x3/7x7 + 3 1x1
    with pytest.raises(ValueError, match="multiple of 16"):
        resnet18_groupnorm(width=24)


def test_random_crop_train_and_center_crop_eval():
    crop = RandomCrop((4, 5))
    images = (
        torch.arange(2 * 10 * 12, dtype=torch.float32).reshape(2, 1, 10, 12).repeat(16, 2, 1, 1)
    )
    crop.eval()
    centre = crop(images)
    assert torch.equal(centre, images[:, :, 3:7, 3:8])
    crop.train()
    torch.manual_seed(0)
    crops = crop(images)
    assert crops.shape == (32, 2, 4, 5)
    # Each crop is a contiguous window of its own image: its top-left value fixes the offset.
    tops, lefts = set(), set()
    for image, window in zip(images, crops, strict=True):
        first = window[0, 0, 0]
        top, left = divmod(int(first) % 120, 12)
        assert torch.equal(window, image[:, top : top + 4, left : left + 5])
        tops.add(top)
        lefts.add(left)
    assert len(tops) > 1 and len(lefts) > 1  # offsets vary across the batch


def test_spatial_softmax_shape_and_peak_location():
    layer = SpatialSoftmax(in_channels=3, num_keypoints=3)
    assert layer(torch.randn(5, 3, 6, 7)).shape == (5, 3, 2)
    with torch.no_grad():  # heat maps = the input channels, sharpened
        layer.keypoint_conv.weight.copy_(torch.eye(3)[:, :, None, None] * 100)
        layer.keypoint_conv.bias.zero_()
    features = torch.zeros(1, 3, 5, 5)
    features[0, 0, 0, 0] = 1  # top-left
    features[0, 1, 4, 4] = 1  # bottom-right
    features[0, 2, 2, 4] = 1  # middle row, right edge
    expected = torch.tensor([[[-1.0, -1.0], [1.0, 1.0], [1.0, 0.0]]])
    assert torch.allclose(layer(features), expected, atol=1e-3)


SHAPE_META = {
    "obs": {
        "front_rgb": {"shape": [24, 24, 3], "type": "rgb"},
        "wrist_rgb": {"shape": [24, 24, 3], "type": "rgb"},
        "wrist_depth": {"shape": [24, 24], "type": "depth"},
        "eef_pos": {"shape": [3], "type": "low_dim"},
        "gripper": {"shape": [1], "type": "low_dim"},
    },
    "action": {"shape": [4]},
}


def example_obs(batch=2, steps=2):
    return {
        "front_rgb": torch.randint(0, 256, (batch, steps, 24, 24, 3), dtype=torch.uint8),
        "wrist_rgb": torch.randint(0, 256, (batch, steps, 24, 24, 3), dtype=torch.uint8),
        "wrist_depth": torch.rand(batch, steps, 24, 24),
        "eef_pos": torch.randn(batch, steps, 3),
        "gripper": torch.randn(batch, steps, 1),
    }


@pytest.mark.parametrize("spatial_softmax", [True, False])
def test_obs_encoder_per_camera(spatial_softmax):
    encoder = ObsEncoder(
        SHAPE_META,
        crop_shape=(20, 20),
        image_feature_dim=8,
        use_spatial_softmax=spatial_softmax,
        num_keypoints=4,
    )
    assert len(encoder.image_encoders) == 3
    assert encoder.step_dim == 3 * 8 + 4
    out = encoder(example_obs())
    assert out.shape == (2, 2 * encoder.step_dim)
    encoder.eval()
    obs = example_obs()
    assert torch.equal(encoder(obs), encoder(obs))  # centre crop: deterministic


def test_image_path_is_channels_last_and_matches_the_nchw_network():
    """Images enter as channels-last memory, the conv weights are channels-last (also after a
    state-dict load), and the features equal those of the same weights in the default memory
    format (the encoder before issue 18), up to float rounding."""
    images = torch.randint(0, 256, (4, 24, 24, 3), dtype=torch.uint8)
    chw = to_float_chw(images, 3)
    assert chw.shape == (4, 3, 24, 24)
    assert chw.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(chw, images.permute(0, 3, 1, 2).float() / 255)
    torch.manual_seed(0)
    encoder = ObsEncoder(SHAPE_META, crop_shape=(20, 20), image_feature_dim=8).eval()
    fresh = ObsEncoder(SHAPE_META, crop_shape=(20, 20), image_feature_dim=8).eval()
    fresh.load_state_dict(encoder.state_dict())
    convs = [m for m in fresh.modules() if isinstance(m, nn.Conv2d)]
    assert convs and all(m.weight.is_contiguous(memory_format=torch.channels_last) for m in convs)
    reference = ObsEncoder(SHAPE_META, crop_shape=(20, 20), image_feature_dim=8).eval()
    reference.load_state_dict(encoder.state_dict())
    reference.to(memory_format=torch.contiguous_format)
    obs = example_obs()
    with torch.no_grad():
        assert torch.allclose(fresh(obs), reference(obs), atol=1e-5)


def test_obs_encoder_shared_rgb_and_low_dim_mlp():
    encoder = ObsEncoder(
        SHAPE_META,
        image_feature_dim=8,
        share_rgb_encoder=True,
        low_dim_mlp_dims=(16,),
        resnet_width=16,
    )
    assert len(encoder.image_encoders) == 2  # one for both rgb cameras, one for depth
    assert all(e.trunk.out_channels == 128 for e in encoder.image_encoders)
    assert encoder.step_dim == 3 * 8 + 16
    assert encoder(example_obs(batch=3, steps=1)).shape == (3, encoder.step_dim)


def test_obs_encoder_bad_arguments():
    with pytest.raises(ValueError, match="crop_shape"):
        ObsEncoder(SHAPE_META, crop_shape=(30, 20))
    meta = {
        "obs": {
            "a": {"shape": [24, 24, 3], "type": "rgb"},
            "b": {"shape": [32, 32, 3], "type": "rgb"},
        },
        "action": {"shape": [2]},
    }
    with pytest.raises(ValueError, match="share_rgb_encoder"):
        ObsEncoder(meta, share_rgb_encoder=True)
