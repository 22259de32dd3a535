"""Soft actor-critic (Haarnoja et al. 2018) for a bounded continuous action: DSRL's learner.

The pieces, all small LayerNorm MLPs (``Linear -> LayerNorm -> activation`` per hidden layer, the
critic recipe that makes high update-to-data ratios stable; Ball et al. 2023, DSRL):

* the actor, ``SquashedGaussianActor`` (robopolicy/models/squashed_gaussian.py):
  ``u ~ N(mu(s), sigma(s)^2)``, ``a = b tanh(u)``, every action in ``[-b, b]``.
* ``Critic``: an ensemble of ``n`` Q-networks ``Q_i(s, a)`` (clipped double Q with ``n = 2``).
* ``SAC``: the updates. With ``alpha = exp(log_alpha)``::

      target   y = r + gamma (1 - terminated) (min_i Qtarget_i(s', a') - alpha log pi(a'|s')),
                   a' ~ pi(.|s')
      critic   L = sum_i mean (Q_i(s, a) - y)^2
      actor    L = mean (alpha log pi(a~|s) - min_i Q_i(s, a~)),  a~ ~ pi(.|s) (reparameterised)
      alpha    L = -mean log_alpha (log pi(a~|s) + target_entropy)
      targets  Qtarget <- (1 - tau) Qtarget + tau Q   after every critic update

  ``terminated`` is the environment's termination only: a time-limit truncation still
  bootstraps from the value of the episode's last observation (Pardo et al. 2018).

The actor and critic act on feature vectors ``s``; the caller decides what they are (DSRL: the
frozen base policy's observation encoding). ``update_critic`` takes an optional
``next_action_fn(s', a') -> critic input`` so that a critic can be trained over something other
than the actor's output (DSRL-NA: the action chunk the base policy makes from the noise ``a'``),
and ``update_actor`` an optional critic to maximise (DSRL-NA: the distilled noise critic).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence

import torch
from torch import nn

from robopolicy.models.mlp import MLP
from robopolicy.models.squashed_gaussian import SquashedGaussianActor


class Critic(nn.Module):
    """``n_critics`` independent Q-networks over ``concat(s, a)``; ``forward -> (n, B)``."""

    def __init__(
        self,
        obs_dim: int,
        action_dim: int,
        hidden_dims: Sequence[int],
        n_critics: int = 2,
        activation: str = "tanh",
    ):
        super().__init__()
        if n_critics < 1:
            raise ValueError(f"n_critics must be >= 1, got {n_critics}")
        hidden_dims = [int(h) for h in hidden_dims]
        self.q_nets = nn.ModuleList(
            MLP(obs_dim + action_dim, hidden_dims, 1, activation=activation, layer_norm=True)
            for _ in range(n_critics)
        )

    def forward(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        x = torch.cat([obs, action], dim=-1)
        return torch.stack([q(x).squeeze(-1) for q in self.q_nets])


def td_target(
    reward: torch.Tensor, terminated: torch.Tensor, next_value: torch.Tensor, gamma: float
) -> torch.Tensor:
    """``r + gamma (1 - terminated) V(s')``: no bootstrap after a termination, a full one after
    a truncation (whose ``s'`` is the ended episode's last observation)."""
    return reward + gamma * (1.0 - terminated.float()) * next_value


class SAC(nn.Module):
    """Actor, critic, target critic, temperature and their Adam optimizers (module docstring).

    Args:
        actor: the policy being trained (DSRL shares it with the steered policy).
        critic: the Q-ensemble trained by TD; a frozen copy is the target network.
        gamma: discount per transition. tau: target-network averaging rate.
        lr: Adam learning rate of actor, critic and temperature.
        target_entropy: the entropy the temperature steers the actor towards (nats).
        init_temperature: alpha at the start.
    """

    def __init__(
        self,
        actor: SquashedGaussianActor,
        critic: Critic,
        gamma: float = 0.99,
        tau: float = 0.005,
        lr: float = 3e-4,
        target_entropy: float = 0.0,
        init_temperature: float = 1.0,
    ):
        super().__init__()
        if not 0.0 <= gamma <= 1.0:
            raise ValueError(f"gamma must be in [0, 1], got {gamma}")
        if not 0.0 < tau <= 1.0:
            raise ValueError(f"tau must be in (0, 1], got {tau}")
        if not init_temperature > 0:
            raise ValueError(f"init_temperature must be positive, got {init_temperature}")
        self.actor = actor
        self.critic = critic
        self.critic_target = copy.deepcopy(critic).requires_grad_(False)
        self.log_alpha = nn.Parameter(torch.tensor(math.log(init_temperature)))
        self.gamma = float(gamma)
        self.tau = float(tau)
        self.target_entropy = float(target_entropy)
        self.actor_optimizer = torch.optim.Adam(actor.parameters(), lr=lr)
        self.critic_optimizer = torch.optim.Adam(critic.parameters(), lr=lr)
        self.alpha_optimizer = torch.optim.Adam([self.log_alpha], lr=lr)

    @property
    def alpha(self) -> torch.Tensor:
        return self.log_alpha.exp().detach()

    def update_critic(
        self,
        obs: torch.Tensor,
        action: torch.Tensor,
        reward: torch.Tensor,
        terminated: torch.Tensor,
        next_obs: torch.Tensor,
        next_action_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    ) -> dict[str, float]:
        """One TD step of the critic on a batch, then the target-network update."""
        with torch.no_grad():
            next_action, next_log_prob = self.actor.sample(next_obs)
            if next_action_fn is not None:
                next_action = next_action_fn(next_obs, next_action)
            next_q = self.critic_target(next_obs, next_action).min(dim=0).values
            target = td_target(reward, terminated, next_q - self.alpha * next_log_prob, self.gamma)
        q = self.critic(obs, action)
        loss = ((q - target) ** 2).mean(dim=1).sum()
        self.critic_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.critic_optimizer.step()
        with torch.no_grad():
            for online, averaged in zip(
                self.critic.parameters(), self.critic_target.parameters(), strict=True
            ):
                averaged.lerp_(online, self.tau)
        return {"critic_loss": loss.item(), "q_mean": q.mean().item()}

    def update_actor(self, obs: torch.Tensor, critic: Critic | None = None) -> dict[str, float]:
        """One step of the actor against ``critic`` (default: its own), then the temperature."""
        critic = self.critic if critic is None else critic
        critic.requires_grad_(False)  # the gradient flows through the critic to the action only
        try:
            action, log_prob = self.actor.sample(obs)
            q = critic(obs, action).min(dim=0).values
            actor_loss = (self.alpha * log_prob - q).mean()
            self.actor_optimizer.zero_grad(set_to_none=True)
            actor_loss.backward()
        finally:
            critic.requires_grad_(True)
        self.actor_optimizer.step()
        alpha_loss = -(self.log_alpha * (log_prob.detach() + self.target_entropy)).mean()
        self.alpha_optimizer.zero_grad(set_to_none=True)
        alpha_loss.backward()
        self.alpha_optimizer.step()
        return {
            "actor_loss": actor_loss.item(),
            "entropy": -log_prob.mean().item(),
            "alpha": self.alpha.item(),
        }

    def optimizer_state(self) -> dict:
        return {
            "actor": self.actor_optimizer.state_dict(),
            "critic": self.critic_optimizer.state_dict(),
            "alpha": self.alpha_optimizer.state_dict(),
        }

    def load_optimizer_state(self, state: dict) -> None:
        self.actor_optimizer.load_state_dict(state["actor"])
        self.critic_optimizer.load_state_dict(state["critic"])
        self.alpha_optimizer.load_state_dict(state["alpha"])
