"""FPO: fine-tune a flow or a diffusion policy with PPO on a denoising-loss ratio.

``python train.py algo=fpo checkpoint=PATH`` (McAllister et al. 2025, "Flow Matching Policy
Gradients"); the checkpoint's policy kind (``FlowPolicy`` or ``DiffusionPolicy``) picks nothing
here: both have a denoising loss and a sampler, which is all FPO uses.

Rollouts. Each chunk is sampled by the policy's own sampler (the flow ODE with its solver, or
DDIM / DDPM as the policy is set), from fresh initial noise, with every step's std floored at
``ppo.min_sampling_std`` (exploration; 0 samples the policy exactly) and the executed actions
clipped to ``ppo.action_clip``: ``sample_chain`` of robopolicy/rl/chain_ppo.py, of which only the
final chunk is kept. With it are stored ``ppo.n_mc`` (noise level, noise) pairs, drawn then, and
the policy's denoising loss at each (robopolicy/rl/fpo_ratio.py).

The update. PPO's clipped objective with one ratio per chunk,
``r = exp(mean_i (old loss_i - new loss_i))`` (fpo_ratio.py says which loss and why),
GAE advantages normalised per minibatch, the value loss, ``update_epochs`` epochs of shuffled
minibatches of chunks and the ``target_kl`` stop: ``ppo_epochs``, ``clipped_policy_loss``,
``normalized_advantages`` and ``value_loss`` of chain_ppo.py, the same code DPPO's update runs.

How it differs from DPPO and ReinFlow. Those make the sampler a chain of Gaussians and put each
step's exact log-likelihood ratio into PPO (a per-step ratio over (env step, denoising step)
pairs, with DDPM-like stochastic steps, or a learned noise network for a flow); FPO never looks
at the chain: its ratio is of the chunk, from the training loss, so the sampler is free (any
solver, any step count, deterministic or not) and the whole denoiser is trained, with no extra
network and no per-step clip schedule. The price: the ratio is a Monte Carlo estimate of an
ELBO ratio, not an exact likelihood ratio.

The loop (rollouts, GAE, the critic and its warm-up, evaluation through ``evaluate_policy``, the
code path of eval.py, checkpoints and exact resume) is ``run_ppo`` in robopolicy/rl/ppo_loop.py.
The fine-tuned denoiser is the only trainable part (the observation encoder stays frozen, so the
stored encodings stay valid); the saved policy is the base's own kind with
``num_inference_steps = algo.denoising_steps`` and its deterministic defaults, a plain policy
that loads anywhere.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from robopolicy.config.chain_ppo import ChainPPOConfig
from robopolicy.config.fpo import FPOUpdateConfig
from robopolicy.policies.base import BasePolicy
from robopolicy.policies.diffusion import DiffusionPolicy
from robopolicy.policies.flow import FlowPolicy
from robopolicy.rl.chain_ppo import (
    action_window,
    clipped_policy_loss,
    explained_variance,
    normalized_advantages,
    ppo_epochs,
    sample_chain,
    value_loss,
)
from robopolicy.rl.fpo_ratio import DenoisingPairs, draw_pairs, fpo_log_ratio, pair_losses
from robopolicy.rl.ppo_loop import load_base_policy, run_ppo
from robopolicy.rl.ppo_strategy import Rollout
from robopolicy.training.distributed import SINGLE_PROCESS, Distributed


class PolicySampler:
    """The policy's own sampler (its default solver or DDIM / DDPM settings) as the chain that
    ``sample_chain`` runs; only its final chunk is used."""

    ft_steps = 1  # sample_chain keeps the last step's pair; FPO needs none of them

    def __init__(self, policy: BasePolicy, num_steps: int):
        self.policy, self.num_steps = policy, num_steps

    def step_distribution(self, x, step, cond):
        return self.policy.step_distribution(x, step, cond, self.num_steps)


class FPOStrategy:
    """FPO's part of the on-policy loop (``PPOStrategy``, robopolicy/rl/ppo_strategy.py)."""

    def __init__(self, policy: BasePolicy, window: slice, ppo: FPOUpdateConfig, num_steps: int):
        self.policy, self.window, self.ppo = policy, window, ppo
        self.sampler = PolicySampler(policy, num_steps)
        self.sampling = ChainPPOConfig(  # sample_chain's settings; its log-probabilities go unused
            min_sampling_std=ppo.min_sampling_std,
            noise_clip=ppo.noise_clip,
            action_clip=ppo.action_clip,
        )

    def sample(self, cond, generator):
        """Chunks, their executed actions, and ``n_mc`` pairs with the current losses."""
        sample = sample_chain(self.sampler, cond, self.window, self.sampling, generator)
        chunk = sample.chain[:, -1].clamp(-self.ppo.action_clip, self.ppo.action_clip)
        pairs = draw_pairs(self.policy, len(chunk), self.ppo.n_mc, generator)
        old_loss = pair_losses(self.policy, chunk, cond, pairs)
        columns = {"chunk": chunk, "level": pairs.level, "eps": pairs.eps, "old_loss": old_loss}
        return sample.action, columns

    def update(self, critic, rollout, actor_optimizer, critic_optimizer, generator, train_actor):
        def minibatch_loss(rows: torch.Tensor):
            return fpo_loss(self.policy, critic, rollout, rows, self.ppo, train_actor)

        metrics = ppo_epochs(
            len(rollout.cond),
            minibatch_loss,
            self.ppo,
            actor_optimizer,
            critic_optimizer,
            generator,
            train_actor,
            rollout.cond.device,
        )
        metrics["ppo/explained_variance"] = explained_variance(rollout.values, rollout.returns)
        return metrics


def fpo_loss(
    policy: BasePolicy,
    critic: nn.Module,
    rollout: Rollout,
    rows: torch.Tensor,
    cfg: FPOUpdateConfig,
    train_actor: bool = True,
) -> tuple[torch.Tensor, dict[str, float], float]:
    """FPO's minibatch loss over the chunks ``rows`` of ``rollout``: ``vf_coef`` value loss plus
    (when ``train_actor``) the clipped surrogate of the denoising-loss ratio; its metrics; and the
    largest ``|r - 1|`` (0, to float precision, before any update)."""
    samples = rollout.samples
    cond = rollout.cond[rows]
    critic_loss = value_loss(critic, cond, rollout.returns[rows])
    pairs = DenoisingPairs(samples["level"][rows], samples["eps"][rows])
    new_loss = pair_losses(policy, samples["chunk"][rows], cond, pairs)
    log_ratio = fpo_log_ratio(samples["old_loss"][rows], new_loss)
    advantages = normalized_advantages(rollout.advantages[rows], cfg.norm_adv)
    policy_loss, ratio_metrics, ratio_error = clipped_policy_loss(log_ratio, advantages, cfg.clip)
    loss = cfg.vf_coef * critic_loss
    if train_actor:
        loss = loss + policy_loss
    metrics = {
        "loss/policy": policy_loss.item(),
        "loss/value": critic_loss.item(),
        "fpo/denoising_loss": new_loss.mean().item(),
        **ratio_metrics,
    }
    return loss, metrics, ratio_error


def finetuned_copy(base: BasePolicy, num_steps: int) -> BasePolicy:
    """A copy of ``base`` (same kind, weights and normaliser) sampling ``num_steps`` steps by
    default, with only its denoiser trainable."""
    config = dict(base.config, num_inference_steps=num_steps)
    policy = type(base).from_config(config, copy.deepcopy(base.normalizer))
    policy.load_state_dict(base.state_dict())
    policy = policy.to(base.device).eval().requires_grad_(False)
    policy.denoiser.requires_grad_(True)
    return policy


def train_fpo(
    cfg: DictConfig, run_dir: Path, device: torch.device | str, ranks: Distributed = SINGLE_PROCESS
) -> dict[str, Any]:
    """Fine-tune the flow or diffusion policy in ``cfg.checkpoint`` with FPO (module
    docstring)."""
    algo = cfg.algo
    base = load_base_policy(cfg, device, (FlowPolicy, DiffusionPolicy))
    num_steps = int(algo.denoising_steps)
    policy = finetuned_copy(base, num_steps)
    window = action_window(policy, int(algo.act_steps))
    ppo = OmegaConf.to_object(algo.ppo)  # an FPOUpdateConfig (robopolicy/config/fpo.py)
    return run_ppo(cfg, run_dir, FPOStrategy(policy, window, ppo, num_steps), {}, ranks)
