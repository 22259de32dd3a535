"""Tiny diffusion / flow policies for the policy tests: a 4-float state, 2-D actions, a stand-in
normaliser with the real one's calling convention (``normalize(dict)``, ``unnormalize(dict)``)."""

import torch
from torch import nn

from robopolicy.policies import DiffusionPolicy, FlowPolicy

SHAPE_META = {
    "obs": {"state": {"shape": [4], "type": "low_dim"}},
    "action": {"shape": [2]},
}
HORIZON, TO, TA = 8, 2, 4
BACKBONE_KWARGS = {
    "unet1d": {"down_dims": [16, 32], "time_embed_dim": 16},
    "transformer": {"d_model": 32, "n_layers": 1, "dropout": 0.0},
    "mlp": {"hidden_dims": [64, 64]},
}
POLICIES = [DiffusionPolicy, FlowPolicy]


class AffineNormalizer(nn.Module):
    """``normalized = (x - offset) / scale`` for "action" and "state"; other keys pass through."""

    def __init__(self):
        super().__init__()
        self.register_buffer("action_offset", torch.zeros(2))
        self.register_buffer("action_scale", torch.ones(2))
        self.register_buffer("state_offset", torch.zeros(4))
        self.register_buffer("state_scale", torch.ones(4))

    def normalize(self, data):
        return {k: self._apply(k, v, forward=True) for k, v in data.items()}

    def unnormalize(self, data):
        return {k: self._apply(k, v, forward=False) for k, v in data.items()}

    def _apply(self, key, value, forward):
        if key not in ("action", "state"):
            return value
        offset, scale = getattr(self, f"{key}_offset"), getattr(self, f"{key}_scale")
        return (value - offset) / scale if forward else value * scale + offset


def make_policy(cls, backbone="mlp", **kwargs):
    torch.manual_seed(0)
    args = dict(
        horizon=HORIZON,
        n_obs_steps=TO,
        n_action_steps=TA,
        backbone=backbone,
        backbone_kwargs=BACKBONE_KWARGS.get(backbone, {}),
    )
    if cls is DiffusionPolicy:
        args["num_train_timesteps"] = 50
    args.update(kwargs)
    return cls(SHAPE_META, AffineNormalizer(), **args)


def make_obs(batch=3):
    return {"state": torch.randn(batch, TO, 4)}


def make_batch(batch=3):
    return {
        "obs": make_obs(batch),
        "action": torch.randn(batch, HORIZON, 2),
        "is_pad": torch.zeros(batch, HORIZON, dtype=torch.bool),
    }


class ZeroDenoiser(nn.Module):
    """Predicts zeros: a denoiser with one parameter, so that policy.device finds it."""

    def __init__(self):
        super().__init__()
        self.anchor = nn.Parameter(torch.zeros(()))

    def forward(self, x, t, cond):
        return torch.zeros_like(x) + self.anchor
