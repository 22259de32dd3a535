"""ReinFlow: fine-tune a flow-matching policy with PPO by learning the noise it explores with.

``python train.py algo=reinflow checkpoint=PATH`` (Zhang et al. 2025, "ReinFlow: Fine-tuning
Flow Matching Policy with Online Reinforcement Learning").

A flow policy samples by integrating an ODE, ``x_{i+1} = x_i + dt v(x_i, t_i, obs)``, which has no
density to put in a PPO ratio. ReinFlow adds a small learned noise network ``sigma(obs, t_i)``
and samples every Euler step as a Gaussian::

    x_{i+1} ~ N(x_i + dt v(x_i, t_i, obs), sigma(obs, t_i)^2)

which makes the sampler exactly the kind of Gaussian chain that DPPO fine-tunes, so the same
update (robopolicy/rl/chain_ppo.py) and the same loop (``run_chain_ppo`` in
robopolicy/rl/ppo_loop.py) apply unchanged: the velocity network and the noise network are the
fine-tuned parameters, every step of the chain is fine-tuned, and the noise std is bounded in
``[min_std, max_std]`` so exploration neither vanishes nor swamps the flow.

ReinFlow beside FPO (robopolicy/algos/fpo.py, flow policy optimisation with a ratio from the
conditional flow-matching loss): ReinFlow keeps exact per-step log-likelihoods, on the chain-PPO
update DPPO uses, at the cost of a noise network and a Gaussian chain; FPO trains the flow on a
Monte Carlo ratio of its chunk's denoising loss and leaves the sampler as it is. Both run on the
same loop (robopolicy/rl/ppo_loop.py).

The noise network exists only for exploration. Evaluation and deployment integrate the ODE
deterministically (``noise_std = 0``, the flow policy's default), so the fine-tuned checkpoint
holds a plain ``FlowPolicy`` that loads anywhere; the noise network is saved beside it in the
training checkpoint (``extra_modules.noise_net``) for resume.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig
from torch import nn

from robopolicy.models.mlp import MLP
from robopolicy.policies.flow import FlowPolicy
from robopolicy.rl.ppo_loop import load_base_policy, run_chain_ppo
from robopolicy.training.distributed import SINGLE_PROCESS, Distributed
from robopolicy.training.rng import seed_everything


class NoiseStdNet(nn.Module):
    """``sigma(cond, t) in [min_std, max_std]`` per chunk element, ``(B, T, Da)``.

    Starts at ``init_std`` everywhere (zero last layer, bias set to match), so fine-tuning begins
    from a known amount of exploration.
    """

    def __init__(
        self,
        cond_dim: int,
        horizon: int,
        action_dim: int,
        hidden_dims: list[int],
        min_std: float,
        max_std: float,
        init_std: float,
    ):
        super().__init__()
        if not 0 < min_std <= init_std <= max_std:
            raise ValueError(
                f"need 0 < min_std <= init_std <= max_std, got {min_std}, {init_std}, {max_std}"
            )
        self.shape = (horizon, action_dim)
        self.min_std, self.max_std = min_std, max_std
        self.mlp = MLP(cond_dim + 1, hidden_dims, horizon * action_dim, activation="mish")
        nn.init.zeros_(self.mlp.head.weight)
        share = (init_std - min_std) / (max_std - min_std) if max_std > min_std else 0.5
        share = min(max(share, 1e-3), 1 - 1e-3)
        nn.init.constant_(self.mlp.head.bias, float(torch.logit(torch.tensor(share))))

    def forward(self, cond: torch.Tensor, t: float) -> torch.Tensor:
        time = torch.full((cond.shape[0], 1), t, device=cond.device, dtype=cond.dtype)
        share = torch.sigmoid(self.mlp(torch.cat([cond, time], dim=1)))
        std = self.min_std + (self.max_std - self.min_std) * share
        return std.view(cond.shape[0], *self.shape)


class FlowChainActor:
    """The flow policy's Euler chain with learned Gaussian noise, as ``chain_ppo`` sees it."""

    def __init__(self, policy: FlowPolicy, noise_net: NoiseStdNet, num_steps: int):
        self.policy, self.noise_net = policy, noise_net
        self.num_steps = self.ft_steps = num_steps

    def step_distribution(self, x, step, cond):
        mean, _ = self.policy.step_distribution(
            x, step, cond, self.num_steps, solver="euler", noise_std=0.0
        )
        return mean, self.noise_net(cond, step / self.num_steps)


def train_reinflow(
    cfg: DictConfig, run_dir: Path, device: torch.device | str, ranks: Distributed = SINGLE_PROCESS
) -> dict[str, Any]:
    """Fine-tune the flow policy in ``cfg.checkpoint`` with ReinFlow (module docstring)."""
    algo = cfg.algo
    seed_everything(cfg.seed)  # the noise network's initial weights follow the run's seed
    policy = load_base_policy(cfg, device, FlowPolicy)
    num_steps = int(algo.denoising_steps)
    config = dict(policy.config, num_inference_steps=num_steps, solver="euler", noise_std=0.0)
    finetuned = FlowPolicy.from_config(config, copy.deepcopy(policy.normalizer))
    finetuned.load_state_dict(policy.state_dict())
    finetuned = finetuned.to(policy.device).eval().requires_grad_(False)
    finetuned.denoiser.requires_grad_(True)
    noise = algo.noise_net
    noise_net = NoiseStdNet(
        finetuned.cond_dim,
        finetuned.horizon,
        finetuned.action_dim,
        list(noise.hidden_dims),
        noise.min_std,
        noise.max_std,
        noise.init_std,
    ).to(finetuned.device)
    actor = FlowChainActor(finetuned, noise_net, num_steps)
    pretrained = None
    if algo.ppo.bc_coef > 0:
        frozen_noise = copy.deepcopy(noise_net).requires_grad_(False)
        pretrained = FlowChainActor(
            copy.deepcopy(finetuned).requires_grad_(False), frozen_noise, num_steps
        )
    return run_chain_ppo(cfg, run_dir, actor, {"noise_net": noise_net}, pretrained, ranks)
