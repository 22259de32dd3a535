"""The PPO-over-the-chain parts: log-probabilities, GAE, schedules, reward scaling, the critic."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from robopolicy.rl.chain_ppo import (
    ChainPPOConfig,
    _log_prob_and_entropy,
    clip_schedule,
    compute_gae,
    denoising_discount,
    explained_variance,
    sample_chain,
    step_log_prob,
)
from robopolicy.rl.critic import ValueCritic
from robopolicy.rl.reward_scaling import RunningRewardScaler


def test_step_log_prob_is_the_mean_gaussian_log_density_over_the_window():
    torch.manual_seed(0)
    mean = torch.randn(3, 8, 2)
    std = torch.rand(3, 8, 2) + 0.2
    x_next = mean + std * torch.randn(3, 8, 2)
    window = slice(1, 5)
    got = step_log_prob(x_next, mean, std, window, -100.0, 100.0)
    by_hand = (-((x_next - mean) ** 2) / (2 * std**2) - std.log() - 0.5 * math.log(2 * math.pi))[
        :, 1:5
    ].mean(dim=(1, 2))
    by_torch = torch.distributions.Normal(mean, std).log_prob(x_next)[:, 1:5].mean(dim=(1, 2))
    torch.testing.assert_close(got, by_hand)
    torch.testing.assert_close(got, by_torch)


def test_step_log_prob_clamps_each_element():
    mean = torch.zeros(1, 4, 1)
    std = torch.full((1, 4, 1), 0.1)
    x_next = torch.tensor([[[0.0], [5.0], [0.0], [5.0]]])  # 50 std away: density ~ -1250
    got = step_log_prob(x_next, mean, std, slice(0, 4), -5.0, 2.0)
    peak = -math.log(0.1) - 0.5 * math.log(2 * math.pi)  # 1.38, inside the clamp
    assert got.item() == pytest.approx((2 * peak + 2 * -5.0) / 4)


class RandomGaussianChain:
    """A ``ChainActor`` whose step ``i`` is ``N(0.8 x + b_i + c, s_i^2)`` (``c``: the row's
    condition summed) with fixed random ``b_i, s_i``; a third of the ``s_i`` are 0, the rest in
    ``[0, 0.6)``, so the std floors matter."""

    def __init__(
        self, num_steps: int = 4, ft_steps: int = 3, horizon: int = 6, action_dim: int = 2
    ):
        generator = torch.Generator().manual_seed(0)
        shape = (num_steps, horizon, action_dim)
        self.bias = torch.randn(shape, generator=generator)
        std = 0.6 * torch.rand(shape, generator=generator)
        self.std = torch.where(torch.rand(shape, generator=generator) < 1 / 3, 0.0, std)
        self.num_steps, self.ft_steps = num_steps, ft_steps
        self.policy = SimpleNamespace(
            initial_noise=lambda batch, _noise, gen: torch.randn(
                batch, horizon, action_dim, generator=gen
            ),
            unnormalize_action=lambda x: x,
        )

    def step_distribution(self, x, step, cond):
        mean = 0.8 * x + self.bias[step] + cond.sum(-1)[:, None, None]
        return mean, self.std[step].expand_as(mean)


def test_rl_log_prob_is_the_floored_clamped_normal_log_prob_in_sampling_and_update():
    """The log-probability RL stores when sampling and recomputes in the PPO update is torch's
    Normal log-density with std floored at ``min_logprob_std`` (not ``min_sampling_std``),
    clamped to ``[logprob_min, logprob_max]`` per element, averaged over the executed window."""
    actor = RandomGaussianChain()
    cfg = ChainPPOConfig(
        min_sampling_std=0.05, min_logprob_std=0.1, logprob_min=-2.0, logprob_max=1.0
    )
    cond, window = torch.randn(16, 3), slice(1, 5)
    sample = sample_chain(actor, cond, window, cfg, torch.Generator().manual_seed(1))
    first_tuned = actor.num_steps - actor.ft_steps
    clamped_low = clamped_high = False
    for k in range(actor.ft_steps):
        x, x_next = sample.chain[:, k], sample.chain[:, k + 1]
        mean, std = actor.step_distribution(x, first_tuned + k, cond)
        density = torch.distributions.Normal(mean, std.clamp_min(0.1)).log_prob(x_next)[:, window]
        clamped_low |= bool((density < -2.0).any())
        clamped_high |= bool((density > 1.0).any())
        expected = density.clamp(-2.0, 1.0).mean(dim=(1, 2))
        torch.testing.assert_close(sample.log_prob[:, k], expected)
    assert clamped_low and clamped_high  # both clamps were exercised

    rows = torch.arange(16).repeat_interleave(actor.ft_steps)
    k = torch.arange(actor.ft_steps).repeat(16)
    recomputed, _ = _log_prob_and_entropy(
        actor, sample.chain[rows], k, cond[rows], first_tuned, window, cfg
    )
    torch.testing.assert_close(recomputed, sample.log_prob[rows, k], rtol=0.0, atol=1e-6)


def test_gae_bootstraps_after_truncation_but_not_after_termination():
    # one env, three steps; the episode ends at step 1 and a new one starts at step 2
    rewards = torch.tensor([[1.0], [0.0], [2.0]])
    values = torch.tensor([[0.5], [0.4], [0.3]])
    next_values = torch.tensor([[0.4], [0.9], [0.6]])  # 0.9: V(final obs of the ended episode)
    ended = torch.tensor([[False], [True], [False]])
    gamma, lam = 0.9, 0.8

    truncated_adv, truncated_ret = compute_gae(
        rewards, values, next_values, torch.zeros_like(ended), ended, gamma, lam
    )
    d2 = 2.0 + 0.9 * 0.6 - 0.3  # the new episode, bootstrapped at the rollout's end
    d1 = 0.0 + 0.9 * 0.9 - 0.4  # truncation: bootstrap with V(final obs)
    d0 = 1.0 + 0.9 * 0.4 - 0.5
    expected = torch.tensor([[d0 + 0.72 * d1], [d1], [d2]])  # 0.72 = gamma * lambda
    torch.testing.assert_close(truncated_adv, expected)
    torch.testing.assert_close(truncated_ret, expected + values)

    terminated_adv, _ = compute_gae(rewards, values, next_values, ended, ended, gamma, lam)
    d1 = 0.0 - 0.4  # termination: no value after the last step
    torch.testing.assert_close(terminated_adv, torch.tensor([[d0 + 0.72 * d1], [d1], [d2]]))


def test_clip_rises_from_base_to_final_and_discount_favours_the_last_step():
    cfg = ChainPPOConfig(clip_base=1e-3, clip_final=1e-2, clip_rate=3.0)
    clips = clip_schedule(10, cfg)
    assert clips[0].item() == pytest.approx(1e-3)
    assert clips[-1].item() == pytest.approx(1e-2)
    assert bool((clips[1:] > clips[:-1]).all())
    middle = 1e-3 + 9e-3 * math.expm1(3.0 * 4 / 9) / math.expm1(3.0)
    assert clips[4].item() == pytest.approx(middle)
    assert clip_schedule(1, cfg).tolist() == pytest.approx([1e-2])
    torch.testing.assert_close(denoising_discount(3, 0.9), torch.tensor([0.81, 0.9, 1.0]))


def test_explained_variance():
    target = torch.tensor([1.0, 2.0, 3.0, 4.0])
    assert explained_variance(target, target) == pytest.approx(1.0)
    assert explained_variance(torch.full((4,), 2.5), target) == pytest.approx(0.0)
    assert math.isnan(explained_variance(target, torch.ones(4)))


def test_reward_scaler_divides_by_the_std_of_discounted_returns():
    rng = np.random.default_rng(0)
    scaler = RunningRewardScaler(n_envs=2, gamma=0.9)
    returns, seen = np.zeros(2), []
    for step in range(200):
        reward = rng.uniform(0, 1, 2)
        ended = np.array([step % 7 == 6, step % 11 == 10])
        scaled = scaler(reward, ended)
        returns = 0.9 * returns + reward
        seen.extend(returns)
        returns[ended] = 0.0
    assert scaled == pytest.approx(reward / np.sqrt(np.var(seen) + 1e-8), rel=1e-3)
    restored = RunningRewardScaler(n_envs=2, gamma=0.9)
    restored.load_state_dict(scaler.state_dict())
    assert restored(reward, ended) == pytest.approx(scaler(reward, ended))
    with pytest.raises(ValueError, match="3 envs"):
        scaler.load_state_dict(RunningRewardScaler(n_envs=3, gamma=0.9).state_dict())


def test_critic_maps_features_to_one_value_each():
    critic = ValueCritic(6, hidden_dims=[16, 16])
    assert critic(torch.randn(5, 6)).shape == (5,)
    with pytest.raises(ValueError, match="in_dim"):
        ValueCritic(0)
