"""A tanh-squashed Gaussian actor over feature vectors: SAC's policy, DSRL's noise actor.

``u ~ N(mu(s), sigma(s)^2)``, ``a = b tanh(u)``, so every action it ever outputs lies in
``[-b, b]``. Its log-density is the Gaussian's minus the log-Jacobian of the squashing,
``log pi(a|s) = log N(u) - sum log(b (1 - tanh(u)^2))``, written with the stable identity
``log(1 - tanh(u)^2) = 2 (log 2 - u - softplus(-2u))``. ``mean_action`` is ``b tanh(mu(s))``,
the deterministic action used for evaluation and deployment.

``mu`` and ``log sigma`` come from one LayerNorm ``MLP`` (robopolicy/models/mlp.py). The actor
lives with the models, not with SAC (robopolicy/rl/sac.py), because the steered policy that
DSRL deploys (robopolicy/policies/steered.py) is built from it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from robopolicy.models.mlp import MLP


class SquashedGaussianActor(nn.Module):
    """``a = bound * tanh(u)``, ``u ~ N(mu(s), sigma(s)^2)`` (module docstring).

    ``config`` holds the constructor arguments, so ``SquashedGaussianActor(**actor.config)``
    rebuilds it for a checkpoint.
    """

    def __init__(
        self,
        obs_dim: int,
        action_dim: int,
        hidden_dims: Sequence[int],
        bound: float,
        activation: str = "tanh",
        log_std_min: float = -5.0,
        log_std_max: float = 2.0,
    ):
        super().__init__()
        if not bound > 0:
            raise ValueError(f"the action bound must be positive, got {bound}")
        if not log_std_min < log_std_max:
            raise ValueError(f"need log_std_min < log_std_max, got {log_std_min}, {log_std_max}")
        self.config = {
            "obs_dim": int(obs_dim),
            "action_dim": int(action_dim),
            "hidden_dims": [int(h) for h in hidden_dims],
            "bound": float(bound),
            "activation": activation,
            "log_std_min": float(log_std_min),
            "log_std_max": float(log_std_max),
        }
        self.action_dim = int(action_dim)
        self.bound = float(bound)
        self.log_std_min = float(log_std_min)
        self.log_std_max = float(log_std_max)
        self.net = MLP(
            int(obs_dim),
            self.config["hidden_dims"],
            2 * self.action_dim,
            activation=activation,
            layer_norm=True,
        )

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(mu, log_sigma)`` of the pre-squash Gaussian, each ``(B, action_dim)``."""
        mu, log_std = self.net(obs).chunk(2, dim=-1)
        return mu, log_std.clamp(self.log_std_min, self.log_std_max)

    def sample(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """A reparameterised action ``(B, action_dim)`` in ``[-bound, bound]`` and its
        log-density ``(B,)``."""
        mu, log_std = self(obs)
        u = mu + log_std.exp() * torch.randn_like(mu)
        gaussian = (-0.5 * ((u - mu) / log_std.exp()) ** 2 - log_std).sum(-1) - 0.5 * math.log(
            2 * math.pi
        ) * self.action_dim
        log_squash = 2.0 * (math.log(2.0) - u - F.softplus(-2.0 * u)) + math.log(self.bound)
        return self.bound * torch.tanh(u), gaussian - log_squash.sum(-1)

    def mean_action(self, obs: torch.Tensor) -> torch.Tensor:
        """The deterministic action ``bound * tanh(mu(s))``."""
        return self.bound * torch.tanh(self(obs)[0])
