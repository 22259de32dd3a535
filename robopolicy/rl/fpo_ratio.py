"""FPO's likelihood-ratio surrogate (McAllister et al. 2025, "Flow Matching Policy Gradients").

A flow or diffusion policy has no tractable density of its action chunk, but its own training
loss is (up to a weighting, Kingma & Gao 2023) a negative evidence lower bound of it. FPO puts the
difference of that loss, before and after an update, where PPO puts a log-likelihood ratio::

    r = exp( mean_i l_old(a, tau_i, eps_i) - mean_i l_new(a, tau_i, eps_i) ),   i = 1 .. n_mc

for the sampled (executed, normalised) chunk ``a`` of an observation. The ``n_mc`` pairs of a
noise level ``tau_i`` and a noise ``eps_i`` are drawn once, when the chunk is sampled, and the
same pairs give the old losses (stored then) and the new ones (recomputed at every minibatch),
so ``r`` is exactly 1 before the first update and the Monte Carlo noise of the two means cancels
in their difference.

``l`` is the policy's own denoising loss, the squared regression error of ``BasePolicy.
compute_loss`` summed over the chunk's elements (the squared norm of the paper's loss, where
``compute_loss`` averages), through the policy's ``sample_noise_level`` and ``noisy_sample``:

* ``FlowPolicy``: ``x_tau = tau a + (1 - tau) eps``, the conditional flow-matching loss
  ``|| v(x_tau, tau) - (a - eps) ||^2`` (velocity prediction; ``|| a_hat - a ||^2`` for sample
  prediction), ``tau`` drawn as the policy's training draws it (pi0's Beta, or uniform).
* ``DiffusionPolicy``: ``x_k = sqrt(abar_k) a + sqrt(1 - abar_k) eps``, Ho et al.'s simple loss
  ``|| eps_hat(x_k, k) - eps ||^2`` (epsilon prediction; ``|| a_hat - a ||^2`` for sample
  prediction), ``k ~ U{0, ..., K-1}``.

The weighting. The exact ELBO of a DDPM weights its step ``k`` by ``(SNR_{k-1} / SNR_k - 1) / 2``
(epsilon form), which on the cosine schedule spans about three orders of magnitude across the
steps; the simple loss weights them equally. Kingma & Gao show the simple (and the flow-matching)
losses are weighted ELBOs, with weights that are (for the rectified flow with uniform times) or
nearly are (cosine diffusion) monotonic in the noise level, i.e. ELBOs of noise-augmented
chunks. We keep the policy's own training weighting: it is the objective the denoiser was
pretrained on (so a fine-tuning step and a behaviour-cloning step move the same quantity), and
the exact ELBO weights would let a few near-clean steps dominate the Monte Carlo mean of
``n_mc`` draws, raising the ratio's variance for no gain in what the ratio ranks.

The sum, not the mean, over the chunk's elements: the ELBO is of the whole chunk, and the sum
sets the ratio's temperature. With the mean (a first version) the log-ratio is ``T * Da`` times
smaller, so a 0.05 clip let a PushCube base's denoising loss on its own chunks double within a
few iterations, and its rollout success fell from 60% to 3% (docs/rl.md). The whole chunk, not
only its executed window: the chunk is the policy's action, its loss the policy's objective.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from robopolicy.policies.base import BasePolicy, standard_normal


@dataclass
class DenoisingPairs:
    """``n_mc`` (noise level, noise) pairs for each of B chunks."""

    level: torch.Tensor  # (B, n_mc) flow times tau in [0, 1], or diffusion steps k
    eps: torch.Tensor  # (B, n_mc, T, Da) standard-normal noise


def draw_pairs(
    policy: BasePolicy, batch: int, n_mc: int, generator: torch.Generator
) -> DenoisingPairs:
    """Fresh pairs: levels as the policy's training draws them (the global RNG: Beta sampling
    takes no generator), noises from ``generator``."""
    level = policy.sample_noise_level(batch * n_mc, policy.device).view(batch, n_mc)
    shape = (batch, n_mc, policy.horizon, policy.action_dim)
    return DenoisingPairs(level, standard_normal(shape, generator, policy.device))


def pair_losses(
    policy: BasePolicy, chunk: torch.Tensor, cond: torch.Tensor, pairs: DenoisingPairs
) -> torch.Tensor:
    """``(B, n_mc)``: the policy's denoising loss (summed over the chunk) of the normalised
    chunks ``chunk (B, T, Da)`` under the encoded observations ``cond (B, Dc)`` at each pair
    (differentiable in the denoiser)."""
    batch, n_mc = pairs.level.shape
    action = chunk.unsqueeze(1).expand(-1, n_mc, -1, -1).reshape(batch * n_mc, *chunk.shape[1:])
    noisy, time, target = policy.noisy_sample(
        action, pairs.level.reshape(-1), pairs.eps.reshape(action.shape)
    )
    prediction = policy.denoiser(noisy, time, cond.repeat_interleave(n_mc, dim=0))
    return ((prediction - target) ** 2).sum(dim=(1, 2)).view(batch, n_mc)


def fpo_log_ratio(old_losses: torch.Tensor, new_losses: torch.Tensor) -> torch.Tensor:
    """``(B,)``: ``log r = mean over the pairs of (old loss - new loss)``."""
    return (old_losses - new_losses).mean(dim=1)
