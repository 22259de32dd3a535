"""PPO over the denoising chain: the update shared by DPPO (diffusion) and ReinFlow (flow).

DPPO (Ren et al. 2024) sees a chunking policy's sampling chain as an inner MDP inside the
environment MDP. Sampling an action chunk runs ``N`` Gaussian steps from noise ``x_0``::

    x_{i+1} ~ N(mean_i(x_i, obs), std_i^2),   i = 0 .. N-1,   action chunk = x_N

so each step is a Gaussian policy step with a known log-density, and PPO applies per step. Only
the last ``K`` steps are fine-tuned (the earlier ones stay pretrained); their pairs
``(x_i, x_{i+1})`` are what this module stores and trains on. An actor (``ChainActor``) says how
to compute ``mean_i, std_i`` with gradients; the diffusion actor (robopolicy/algos/dppo.py) and
the flow actor with a learned noise net (robopolicy/algos/reinflow.py) both plug in here.

This file, top to bottom:

1. ``sample_chain``: run the chain for a batch of observations. Sampling std is floored at
   ``min_sampling_std`` on every step (exploration noise even on deterministic DDIM/ODE steps)
   and the standard-normal draws are clipped to ``+-noise_clip``; the fine-tuned steps' pairs
   and their log-probabilities are kept.
2. ``step_log_prob``: DPPO's per-step log-likelihood: the element-wise Gaussian log-density,
   computed with its own std floor ``min_logprob_std``, over the executed part of the chunk
   only, clamped to ``[logprob_min, logprob_max]`` and averaged.
3. ``compute_gae``: GAE over env steps. After a termination (task success) the next state has
   value 0; after a truncation (time limit, or the end of the rollout) the return is
   bootstrapped with ``V(final observation)``; the advantage recursion stops at any episode end.
4. ``ppo_update``: minibatches over (env step, denoising step) pairs. Advantages (one per env
   step, normalised per minibatch) are discounted across denoising steps,
   ``A * gamma_denoising^(K-1-k)`` for fine-tuned step k = 0 .. K-1, so the steps nearest the
   action count most. Each step has its own clip range, rising exponentially from
   ``clip_base`` (k = 0, the noisiest) to ``clip_final`` (k = K-1):
   ``clip_k = base + (final - base) (exp(rate k / (K-1)) - 1) / (exp(rate) - 1)``.
   Loss = clipped policy loss + ``vf_coef`` value loss - ``ent_coef`` entropy proxy +
   ``bc_coef`` behaviour-cloning term (the negative log-likelihood, under the current actor, of
   chains sampled by the frozen pretrained policy at the same observations). During critic
   warm-up only the critic learns. The epoch loop stops early when the approximate KL exceeds
   ``target_kl``. Logged: clip fraction, approximate KL (``(r - 1) - log r``), entropy proxy
   (the mean Gaussian entropy per element, ``log std + log(2 pi e) / 2``), explained variance.
   The parts that are not the chain's, ``ppo_epochs`` (epochs, minibatches, optimizer steps, the
   KL stop), ``clipped_policy_loss``, ``normalized_advantages`` and ``value_loss``, serve FPO's
   update too (robopolicy/algos/fpo.py).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import nn

from robopolicy.config.chain_ppo import (  # the hyper-parameters and defaults
    ChainPPOConfig,
    PPOConfig,
)
from robopolicy.policies.base import BasePolicy, standard_normal


class ChainActor(Protocol):
    """What ``sample_chain`` and ``ppo_update`` need from a policy being fine-tuned."""

    policy: BasePolicy  # the deployable policy (encode_obs, unnormalize_action, shapes)
    num_steps: int  # N, steps of the sampling chain
    ft_steps: int  # K, the last K steps are fine-tuned

    def step_distribution(
        self, x: torch.Tensor, step: int, cond: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(mean, std)`` of ``x_{step+1}``, each ``(B, T, Da)``, differentiable in the
        fine-tuned parameters; ``std`` before the floors applied here (may be 0)."""
        ...


@dataclass
class ChainSample:
    """A batch of sampled chains; ``chain[:, k]`` is the input of fine-tuned step k."""

    chain: torch.Tensor  # (B, K+1, T, Da) normalised; chain[:, -1] is the sampled chunk
    log_prob: torch.Tensor  # (B, K) step_log_prob of each fine-tuned step
    action: torch.Tensor  # (B, act_steps, Da) raw actions the env executes


def action_window(policy: BasePolicy, act_steps: int) -> slice:
    """The chunk elements the env executes: ``act_steps`` from the current observation on."""
    if not 1 <= act_steps <= policy.horizon - policy.n_obs_steps + 1:
        raise ValueError(
            f"act_steps must be in [1, horizon - n_obs_steps + 1 = "
            f"{policy.horizon - policy.n_obs_steps + 1}], got {act_steps}"
        )
    start = policy.n_obs_steps - 1
    return slice(start, start + act_steps)


def step_log_prob(
    x_next: torch.Tensor,
    mean: torch.Tensor,
    std: torch.Tensor,
    window: slice,
    logprob_min: float,
    logprob_max: float,
) -> torch.Tensor:
    """``(B,)``: mean over ``window`` of the clamped element-wise ``log N(x_next; mean, std^2)``.

    The one log-probability of a chain step: ``sample_chain`` (the old log-probabilities) and
    the PPO update (the new ones) both call it with ``std`` floored at ``min_logprob_std``."""
    z = (x_next - mean) / std
    density = -0.5 * z**2 - std.log() - 0.5 * math.log(2 * math.pi)
    return density[:, window].clamp(logprob_min, logprob_max).mean(dim=(1, 2))


@torch.no_grad()
def sample_chain(
    actor: ChainActor,
    cond: torch.Tensor,
    window: slice,
    cfg: ChainPPOConfig,
    generator: torch.Generator,
) -> ChainSample:
    """Run ``actor``'s chain from fresh noise for the encoded observations ``cond (B, Dc)``."""
    policy = actor.policy
    x = policy.initial_noise(cond.shape[0], None, generator)
    first_tuned = actor.num_steps - actor.ft_steps
    chain, log_probs = [], []
    for step in range(actor.num_steps):
        mean, std = actor.step_distribution(x, step, cond)
        z = standard_normal(mean.shape, generator, mean.device).clamp(
            -cfg.noise_clip, cfg.noise_clip
        )
        x_next = mean + std.clamp_min(cfg.min_sampling_std) * z
        if step >= first_tuned:
            chain.append(x)
            log_probs.append(
                step_log_prob(
                    x_next,
                    mean,
                    std.clamp_min(cfg.min_logprob_std),
                    window,
                    cfg.logprob_min,
                    cfg.logprob_max,
                )
            )
        x = x_next
    chain.append(x)
    clipped = x.clamp(-cfg.action_clip, cfg.action_clip)
    action = policy.unnormalize_action(clipped)[:, window]
    return ChainSample(torch.stack(chain, 1), torch.stack(log_probs, 1), action)


def compute_gae(
    rewards: torch.Tensor,
    values: torch.Tensor,
    next_values: torch.Tensor,
    terminated: torch.Tensor,
    ended: torch.Tensor,
    gamma: float,
    gae_lambda: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Advantages and returns, each ``(S, E)`` like the inputs (S env steps of E envs).

    ``next_values[t]`` is V of the observation step t led to: the ended episode's final
    observation where ``ended[t]`` (terminated or truncated), the rollout's last observation at
    t = S-1. ``terminated[t]`` zeroes it (no future after success); ``ended[t]`` cuts the
    recursion (the next row belongs to a new episode).
    """
    not_terminated = 1.0 - terminated.float()
    not_ended = 1.0 - ended.float()
    advantages = torch.zeros_like(rewards)
    running = torch.zeros_like(rewards[0])
    for t in reversed(range(rewards.shape[0])):
        delta = rewards[t] + gamma * not_terminated[t] * next_values[t] - values[t]
        running = delta + gamma * gae_lambda * not_ended[t] * running
        advantages[t] = running
    return advantages, advantages + values


def clip_schedule(ft_steps: int, cfg: ChainPPOConfig) -> torch.Tensor:
    """``(K,)`` PPO clip range per fine-tuned step, ``clip_base`` -> ``clip_final``."""
    if ft_steps == 1:
        return torch.tensor([cfg.clip_final])
    k = torch.arange(ft_steps, dtype=torch.float64) / (ft_steps - 1)
    rise = (torch.exp(cfg.clip_rate * k) - 1) / math.expm1(cfg.clip_rate)
    return (cfg.clip_base + (cfg.clip_final - cfg.clip_base) * rise).float()


def denoising_discount(ft_steps: int, gamma_denoising: float) -> torch.Tensor:
    """``(K,)``: ``gamma_denoising^(K-1-k)``, 1 for the step that produces the action."""
    return gamma_denoising ** torch.arange(ft_steps - 1, -1, -1, dtype=torch.float32)


def explained_variance(predicted: torch.Tensor, target: torch.Tensor) -> float:
    """``1 - Var(target - predicted) / Var(target)`` (NaN when the target is constant)."""
    variance = target.var()
    if variance == 0:
        return float("nan")
    return float(1 - (target - predicted).var() / variance)


@dataclass
class ChainRollout:
    """One iteration's data, env-step-major: S env steps of E envs flattened to ``S * E`` rows."""

    cond: torch.Tensor  # (S*E, Dc) encoded observations (the frozen encoder's features)
    chain: torch.Tensor  # (S*E, K+1, T, Da)
    log_prob: torch.Tensor  # (S*E, K) old log-probabilities
    advantages: torch.Tensor  # (S*E,)
    returns: torch.Tensor  # (S*E,)
    values: torch.Tensor  # (S*E,) critic values at collection time
    bc_chain: torch.Tensor | None = None  # (S*E, K+1, T, Da) chains of the pretrained policy


def ppo_update(
    actor: ChainActor,
    critic: nn.Module,
    rollout: ChainRollout,
    window: slice,
    cfg: ChainPPOConfig,
    actor_optimizer: torch.optim.Optimizer,
    critic_optimizer: torch.optim.Optimizer,
    generator: torch.Generator,
    train_actor: bool = True,
) -> dict[str, float]:
    """``update_epochs`` passes of minibatches over all (env step, fine-tuned step) pairs, until
    the approximate KL of a minibatch exceeds ``target_kl``; returns the mean metrics."""
    rows, ft_steps = rollout.log_prob.shape
    device = rollout.cond.device
    schedule = _StepSchedule(
        first_tuned=actor.num_steps - ft_steps,
        clips=clip_schedule(ft_steps, cfg).to(device),
        discounts=denoising_discount(ft_steps, cfg.gamma_denoising).to(device),
    )

    def minibatch_loss(pairs: torch.Tensor) -> tuple[torch.Tensor, dict[str, float], float]:
        row, k = pairs // ft_steps, pairs % ft_steps
        return _minibatch_loss(actor, critic, rollout, row, k, schedule, window, cfg, train_actor)

    metrics = ppo_epochs(
        rows * ft_steps,
        minibatch_loss,
        cfg,
        actor_optimizer,
        critic_optimizer,
        generator,
        train_actor,
        device,
    )
    metrics["ppo/explained_variance"] = explained_variance(rollout.values, rollout.returns)
    return metrics


MinibatchLoss = Callable[[torch.Tensor], tuple[torch.Tensor, dict[str, float], float]]


def ppo_epochs(
    n_items: int,
    minibatch_loss: MinibatchLoss,
    cfg: PPOConfig,
    actor_optimizer: torch.optim.Optimizer,
    critic_optimizer: torch.optim.Optimizer,
    generator: torch.Generator,
    train_actor: bool,
    device: torch.device | str,
) -> dict[str, float]:
    """The epochs of any PPO update here (the chain's, FPO's): ``update_epochs`` shuffled passes
    over ``n_items`` in minibatches of ``minibatch_size``; ``minibatch_loss(indices)`` gives the
    loss, its metrics (``ppo/approx_kl`` among them) and the largest ``|ratio - 1|``. One
    optimizer step per minibatch (the actor's with its gradient norm clipped, skipped unless
    ``train_actor``); stops when a minibatch's approximate KL exceeds ``target_kl``. Returns the
    metrics averaged over minibatches, with their count, the first minibatch's ratio error and
    whether it stopped early."""
    actor_parameters = [p for group in actor_optimizer.param_groups for p in group["params"]]
    totals: dict[str, float] = {}
    minibatches = 0
    first_ratio_error = float("nan")
    stopped_early = False
    for _epoch in range(cfg.update_epochs):
        order = torch.randperm(n_items, generator=generator).to(device)
        for start in range(0, len(order), cfg.minibatch_size):
            loss, step_metrics, ratio_error = minibatch_loss(
                order[start : start + cfg.minibatch_size]
            )
            actor_optimizer.zero_grad(set_to_none=True)
            critic_optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if train_actor:
                if cfg.max_grad_norm is not None:
                    nn.utils.clip_grad_norm_(actor_parameters, cfg.max_grad_norm)
                actor_optimizer.step()
            critic_optimizer.step()
            if minibatches == 0:
                first_ratio_error = ratio_error
            for key, value in step_metrics.items():
                totals[key] = totals.get(key, 0.0) + value
            minibatches += 1
            if cfg.target_kl is not None and step_metrics["ppo/approx_kl"] > cfg.target_kl:
                stopped_early = True
                break
        if stopped_early:
            break
    metrics = {key: value / max(minibatches, 1) for key, value in totals.items()}
    metrics.update(
        {
            "ppo/minibatches": minibatches,
            "ppo/first_ratio_error": first_ratio_error,
            "ppo/stopped_early": float(stopped_early),
        }
    )
    return metrics


def value_loss(critic: nn.Module, cond: torch.Tensor, returns: torch.Tensor) -> torch.Tensor:
    """The critic's regression loss, ``0.5 (V(cond) - returns)^2`` averaged."""
    return 0.5 * ((critic(cond) - returns) ** 2).mean()


def normalized_advantages(advantages: torch.Tensor, enabled: bool) -> torch.Tensor:
    """Advantages standardised over the minibatch (when ``enabled`` and it has two or more)."""
    if enabled and len(advantages) > 1:
        return (advantages - advantages.mean()) / (advantages.std() + 1e-8)
    return advantages


def clipped_policy_loss(
    log_ratio: torch.Tensor, advantages: torch.Tensor, clip: torch.Tensor | float
) -> tuple[torch.Tensor, dict[str, float], float]:
    """PPO's clipped surrogate, ``mean(max(-A r, -A clamp(r, 1 - clip, 1 + clip)))`` with
    ``r = exp(log_ratio)`` (``clip`` a number or one per item); its metrics (approximate KL
    ``(r - 1) - log r``, clip fraction, mean ratio); and the largest ``|r - 1|``."""
    ratio = log_ratio.exp()
    loss = torch.max(-advantages * ratio, -advantages * torch.clamp(ratio, 1 - clip, 1 + clip))
    with torch.no_grad():
        metrics = {
            "ppo/approx_kl": ((ratio - 1) - log_ratio).mean().item(),
            "ppo/clip_fraction": ((ratio - 1).abs() > clip).float().mean().item(),
            "ppo/ratio_mean": ratio.mean().item(),
        }
        ratio_error = (ratio - 1).abs().max().item()
    return loss.mean(), metrics, ratio_error


@dataclass
class _StepSchedule:
    """Per fine-tuned denoising step: the ratio clip and the advantage discount."""

    first_tuned: int  # index of the first fine-tuned step in the chain
    clips: torch.Tensor  # (ft_steps,)
    discounts: torch.Tensor  # (ft_steps,)


def _minibatch_loss(
    actor: ChainActor,
    critic: nn.Module,
    rollout: ChainRollout,
    row: torch.Tensor,
    k: torch.Tensor,
    schedule: _StepSchedule,
    window: slice,
    cfg: ChainPPOConfig,
    train_actor: bool,
) -> tuple[torch.Tensor, dict[str, float], float]:
    """The clipped PPO loss (with the value loss, and the entropy and BC terms where set) of the
    pairs ``(row, k)``; its metrics; and the largest ``|ratio - 1|`` (0 before any update)."""
    cond = rollout.cond[row]
    critic_loss = value_loss(critic, cond, rollout.returns[row])
    new_log_prob, entropy = _log_prob_and_entropy(
        actor, rollout.chain[row], k, cond, schedule.first_tuned, window, cfg
    )
    log_ratio = new_log_prob - rollout.log_prob[row, k]
    advantages = normalized_advantages(rollout.advantages[row], cfg.norm_adv)
    advantages = advantages * schedule.discounts[k]
    policy_loss, ratio_metrics, ratio_error = clipped_policy_loss(
        log_ratio, advantages, schedule.clips[k]
    )
    loss = cfg.vf_coef * critic_loss
    bc_loss = torch.zeros(())
    if train_actor:
        loss = loss + policy_loss - cfg.ent_coef * entropy.mean()
        if cfg.bc_coef > 0 and rollout.bc_chain is not None:
            bc_log_prob, _ = _log_prob_and_entropy(
                actor, rollout.bc_chain[row], k, cond, schedule.first_tuned, window, cfg
            )
            bc_loss = -bc_log_prob.mean()
            loss = loss + cfg.bc_coef * bc_loss
    metrics = {
        "loss/policy": policy_loss.item(),
        "loss/value": critic_loss.item(),
        "loss/bc": bc_loss.item(),
        **ratio_metrics,
        "ppo/entropy": entropy.mean().item(),
    }
    return loss, metrics, ratio_error


def _log_prob_and_entropy(
    actor: ChainActor,
    chain: torch.Tensor,
    k: torch.Tensor,
    cond: torch.Tensor,
    first_tuned: int,
    window: slice,
    cfg: ChainPPOConfig,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Current log-probability ``(B,)`` of the pairs ``chain[b, k_b] -> chain[b, k_b + 1]``, and
    the entropy proxy, one actor call per distinct step in the minibatch."""
    rows = torch.arange(len(k), device=chain.device)
    x, x_next = chain[rows, k], chain[rows, k + 1]
    log_prob = torch.zeros(len(k), device=chain.device)
    entropy = torch.zeros(len(k), device=chain.device)
    for step in torch.unique(k).tolist():
        chosen = k == step
        mean, std = actor.step_distribution(x[chosen], first_tuned + step, cond[chosen])
        std = std.clamp_min(cfg.min_logprob_std)
        log_prob[chosen] = step_log_prob(
            x_next[chosen], mean, std, window, cfg.logprob_min, cfg.logprob_max
        )
        entropy[chosen] = (std[:, window].log() + 0.5 * math.log(2 * math.pi * math.e)).mean(
            dim=(1, 2)
        )
    return log_prob, entropy
