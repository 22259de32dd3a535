"""What an on-policy algorithm puts into the PPO loop (robopolicy/rl/ppo_loop.py): a
``PPOStrategy`` samples the chunks and says what to store with them, and updates from the
``Rollout`` the loop collects. ``ChainStrategy`` is chain PPO's (DPPO, ReinFlow:
robopolicy/rl/chain_ppo.py); FPO's is robopolicy/algos/fpo.py."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch
from torch import nn

from robopolicy.config.chain_ppo import ChainPPOConfig, PPOConfig
from robopolicy.policies.base import BasePolicy
from robopolicy.rl.chain_ppo import ChainActor, ChainRollout, ppo_update, sample_chain


@dataclass
class Rollout:
    """One iteration's data, env-step-major: S env steps of E envs flattened to ``S * E`` rows."""

    cond: torch.Tensor  # (S*E, Dc) encoded observations (the frozen encoder's features)
    advantages: torch.Tensor  # (S*E,) GAE
    returns: torch.Tensor  # (S*E,)
    values: torch.Tensor  # (S*E,) critic values at collection time
    samples: dict[str, torch.Tensor]  # the strategy's own columns, (S*E, ...) each


class PPOStrategy(Protocol):
    """What an on-policy algorithm puts into the loop: how it samples and how it updates."""

    policy: BasePolicy  # the deployable policy (encode_obs, shapes); its trainable parameters
    #   are fine-tuned
    ppo: PPOConfig  # its update's settings (gamma and gae_lambda are the loop's too)

    def sample(
        self, cond: torch.Tensor, generator: torch.Generator
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """For encoded observations ``cond (E, Dc)``, without gradients: the raw actions the
        envs execute ``(E, act_steps, Da)`` and the columns to store, ``(E, ...)`` each."""
        ...

    def update(
        self,
        critic: nn.Module,
        rollout: Rollout,
        actor_optimizer: torch.optim.Optimizer,
        critic_optimizer: torch.optim.Optimizer,
        generator: torch.Generator,
        train_actor: bool,
    ) -> dict[str, float]:
        """The PPO update on one iteration's rollout; returns its metrics."""
        ...


class ChainStrategy:
    """Chain PPO (DPPO, ReinFlow): sample the actor's chain and store its fine-tuned steps' pairs
    and log-probabilities (and the pretrained copy's chains for the BC term); ``ppo_update``."""

    def __init__(
        self, actor: ChainActor, pretrained: ChainActor | None, window: slice, ppo: ChainPPOConfig
    ):
        self.actor, self.pretrained, self.window, self.ppo = actor, pretrained, window, ppo
        self.policy = actor.policy

    def sample(self, cond, generator):
        sample = sample_chain(self.actor, cond, self.window, self.ppo, generator)
        columns = {"chain": sample.chain, "log_prob": sample.log_prob}
        if self.pretrained is not None:
            bc = sample_chain(self.pretrained, cond, self.window, self.ppo, generator)
            columns["bc_chain"] = bc.chain
        return sample.action, columns

    def update(self, critic, rollout, actor_optimizer, critic_optimizer, generator, train_actor):
        chains = ChainRollout(
            cond=rollout.cond,
            chain=rollout.samples["chain"],
            log_prob=rollout.samples["log_prob"],
            advantages=rollout.advantages,
            returns=rollout.returns,
            values=rollout.values,
            bc_chain=rollout.samples.get("bc_chain"),
        )
        return ppo_update(
            self.actor,
            critic,
            chains,
            self.window,
            self.ppo,
            actor_optimizer,
            critic_optimizer,
            generator,
            train_actor=train_actor,
        )
