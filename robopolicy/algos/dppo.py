"""DPPO: fine-tune a pretrained diffusion policy with PPO over its denoising chain.

``python train.py algo=dppo checkpoint=PATH`` (Ren et al. 2024, "Diffusion Policy Policy
Optimization"). The PPO update itself, shared with ReinFlow, is robopolicy/rl/chain_ppo.py;
this file builds the diffusion actor and runs the on-policy loop that both algorithms use.

The actor. The pretrained ``DiffusionPolicy`` becomes a ``FinetunedDiffusionPolicy``: its chain
has ``denoising_steps`` steps (DDIM, with eta = 1 while fine-tuning so every step is the DDPM
Gaussian; or DDPM), the last ``ft_denoising_steps`` of them run a trainable copy of the
denoiser and the earlier ones the frozen pretrained copy. The observation encoder is frozen too.
Evaluation samples the same chain deterministically (DDIM eta = 0; the policy's defaults), through
``evaluate_policy``, the code path of eval.py, with ``cfg.eval.sampler``.

The loop (rollouts, GAE, the update, evaluation, checkpoints and exact resume) is
``run_chain_ppo`` in robopolicy/rl/ppo_loop.py, shared with ReinFlow.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig

from robopolicy.policies.diffusion import DiffusionPolicy
from robopolicy.policies.finetuned_diffusion import FinetunedDiffusionPolicy
from robopolicy.rl.ppo_loop import load_base_policy, run_chain_ppo
from robopolicy.training.distributed import SINGLE_PROCESS, Distributed


class DiffusionChainActor:
    """The diffusion policy's sampling chain as ``chain_ppo`` sees it."""

    def __init__(
        self, policy: FinetunedDiffusionPolicy, num_steps: int, ft_steps: int, sampler: str, eta
    ):
        self.policy, self.num_steps, self.ft_steps = policy, num_steps, ft_steps
        self.sampler, self.eta = sampler, eta

    def step_distribution(self, x, step, cond):
        return self.policy.step_distribution(
            x, step, cond, self.num_steps, sampler=self.sampler, eta=self.eta
        )


def train_dppo(
    cfg: DictConfig, run_dir: Path, device: torch.device | str, ranks: Distributed = SINGLE_PROCESS
) -> dict[str, Any]:
    """Fine-tune the diffusion policy in ``cfg.checkpoint`` with DPPO (module docstring)."""
    algo = cfg.algo
    base = load_base_policy(cfg, device, DiffusionPolicy)
    num_steps, ft_steps = int(algo.denoising_steps), int(algo.ft_denoising_steps)
    timesteps = base.inference_timesteps(num_steps)  # the base's timestep_spacing
    policy = FinetunedDiffusionPolicy.from_pretrained(
        base,
        finetuned_below=timesteps[num_steps - ft_steps],
        num_inference_steps=num_steps,
        sampler=algo.sampler,
        eta=0.0,  # the saved policy's default: deterministic DDIM, as evaluation samples
    )
    policy.requires_grad_(False)
    policy.denoiser.tuned.requires_grad_(True)
    actor = DiffusionChainActor(policy, num_steps, ft_steps, algo.sampler, float(algo.eta))
    pretrained = None
    if algo.ppo.bc_coef > 0:
        pretrained = DiffusionChainActor(
            copy.deepcopy(policy).requires_grad_(False),
            num_steps,
            ft_steps,
            algo.sampler,
            float(algo.eta),
        )
    return run_chain_ppo(cfg, run_dir, actor, {}, pretrained, ranks)
