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

One iteration of ``run_chain_ppo`` (the loop):

1. reset the ``n_envs`` chunked envs (robopolicy/rl/chunk_env.py) with seeds derived from the
   run seed and the iteration, as DPPO does, so a resumed run continues exactly;
2. ``n_steps`` times: encode the observation histories, sample chains (``sample_chain``), value
   them, execute ``act_steps`` actions of each chunk, add ``step_reward`` per executed env step
   (a time cost), scale the rewards (running scaling), and value the observation each env ended
   its step in (the final one where an episode ended);
3. GAE over env steps, then ``ppo_update`` (the actor is held still for the first
   ``n_critic_warmup_itr`` iterations while the critic warms up; its rate then follows
   ``actor_learning_rate``, constant or cosine-decayed to ``actor_lr_final``);
4. log (``env_steps`` with every record; ``time/rollout_s`` env stepping, ``time/inference_s``
   policy and critic calls during rollouts, ``time/update_s``), evaluate every ``eval_every``
   iterations, write ``checkpoints/latest.safetensors``.

Resume (``resume=PATH``) restores the fine-tuned policy, the critic and any extra trainable module
(ReinFlow's noise net), both optimizers, the reward scaler, the iteration, env-step and wall-clock
counters, and every RNG (the global ones and the sampling generator); since envs are reset by
seed at each iteration, the resumed run repeats the uninterrupted one's iterations.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from robopolicy.algos.bc import evaluate_policy
from robopolicy.policies.base import BasePolicy
from robopolicy.policies.diffusion import DiffusionPolicy
from robopolicy.policies.finetuned_diffusion import FinetunedDiffusionPolicy
from robopolicy.policies.noise_schedules import inference_timesteps
from robopolicy.policies.registry import load_policy, policy_record
from robopolicy.rl.chain_ppo import (
    ChainActor,
    ChainPPOConfig,
    ChainRollout,
    action_window,
    compute_gae,
    ppo_update,
    sample_chain,
)
from robopolicy.rl.chunk_env import final_observations, make_chunked_vector_env
from robopolicy.rl.critic import ValueCritic
from robopolicy.rl.reward_scaling import RunningRewardScaler
from robopolicy.training.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from robopolicy.training.distributed import SINGLE_PROCESS, Distributed
from robopolicy.training.rng import rng_state, seed_everything, set_rng_state
from robopolicy.training.run_logger import RunLogger
from robopolicy.utils.stats import wilson_interval

ENV_SEED_OFFSET = 10_000_000  # training episodes' seeds start here, far from eval and demo seeds


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
    if not 1 <= ft_steps <= num_steps:
        raise ValueError(
            f"algo.ft_denoising_steps={ft_steps} must be in [1, algo.denoising_steps={num_steps}]"
        )
    timesteps = inference_timesteps(base.num_train_timesteps, num_steps)
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


def load_base_policy(cfg: DictConfig, device, expected: type[BasePolicy]) -> BasePolicy:
    """The pretrained policy in ``cfg.checkpoint`` (EMA weights), checked to be ``expected``."""
    if not cfg.checkpoint:
        raise ValueError(
            f"algo={cfg.algo.name} fine-tunes a pretrained policy: set checkpoint=PATH "
            "(e.g. a BC run's checkpoints/latest.safetensors)"
        )
    policy, _ = load_policy(cfg.checkpoint, device=device)
    if not isinstance(policy, expected):
        raise ValueError(
            f"checkpoint={cfg.checkpoint} holds a {type(policy).__name__}; algo={cfg.algo.name} "
            f"fine-tunes a {expected.__name__}"
        )
    return policy.eval()


def ppo_config(algo: DictConfig) -> ChainPPOConfig:
    """``algo.ppo`` as a ``ChainPPOConfig`` (one clear error for an unknown key)."""
    values = OmegaConf.to_container(algo.ppo, resolve=True)
    known = {f.name for f in fields(ChainPPOConfig)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"algo.ppo has unknown keys {unknown}; expected some of {sorted(known)}")
    return ChainPPOConfig(**values)


def run_chain_ppo(
    cfg: DictConfig,
    run_dir: Path,
    actor: ChainActor,
    extra_modules: dict[str, nn.Module],
    pretrained: ChainActor | None,
    ranks: Distributed = SINGLE_PROCESS,
) -> dict[str, Any]:
    """The on-policy loop shared by DPPO and ReinFlow (module docstring).

    ``actor.policy`` is the deployable policy; its trainable parameters and those of
    ``extra_modules`` (saved under their names) are fine-tuned; ``pretrained`` samples the chains
    of the behaviour-cloning term (needed only when ``algo.ppo.bc_coef > 0``).
    """
    if ranks.enabled:
        raise ValueError("RL fine-tuning runs in one process; launch it without torchrun")
    algo = cfg.algo
    ppo = ppo_config(algo)
    seed_everything(cfg.seed)
    policy = actor.policy.eval()
    device = policy.device
    window = action_window(policy, int(algo.act_steps))
    generator = torch.Generator().manual_seed(int(cfg.seed))
    critic = ValueCritic(policy.cond_dim, **algo.critic).to(device)
    trainable = [p for p in policy.parameters() if p.requires_grad]
    for module in extra_modules.values():
        trainable += list(module.parameters())
    actor_optimizer = torch.optim.AdamW(
        trainable, lr=algo.actor_lr, weight_decay=algo.actor_weight_decay
    )
    critic_optimizer = torch.optim.AdamW(
        critic.parameters(), lr=algo.critic_lr, weight_decay=algo.critic_weight_decay
    )
    scaler = RunningRewardScaler(int(algo.n_envs), ppo.gamma)
    env_kwargs = OmegaConf.to_container(cfg.task.env_kwargs, resolve=True)
    if algo.reward_type is not None:
        env_kwargs["reward_type"] = algo.reward_type
    env_spec = {
        "id": cfg.task.env_id,
        "kwargs": OmegaConf.to_container(cfg.task.env_kwargs, resolve=True),
    }
    logger = RunLogger.for_run(cfg, run_dir)
    counters = {"iteration": 0, "env_steps": 0, "wall_s": 0.0}
    metrics: dict[str, Any] = {}

    def checkpoint_state() -> dict:
        return {
            "policy": policy_record(policy, policy.state_dict()),
            "critic": critic.state_dict(),
            "extra_modules": {name: m.state_dict() for name, m in extra_modules.items()},
            "optimizer": {
                "actor": actor_optimizer.state_dict(),
                "critic": critic_optimizer.state_dict(),
            },
            "reward_scaler": scaler.state_dict(),
            "rng": rng_state(),
            "generator": generator.get_state(),
            "step": counters["iteration"],
            "counters": dict(counters),
            "env_spec": env_spec,
            "base_checkpoint": str(cfg.checkpoint),
            "config": OmegaConf.to_container(cfg, resolve=True),
            "metrics": metrics,
        }

    if cfg.resume:
        state = load_checkpoint(cfg.resume)
        if "critic" not in state:
            raise CheckpointError(cfg.resume, "is not an RL training checkpoint (no critic)")
        try:
            policy.load_state_dict(state["policy"]["weights"])
            critic.load_state_dict(state["critic"])
            for name, module in extra_modules.items():
                module.load_state_dict(state["extra_modules"][name])
        except (RuntimeError, ValueError, KeyError) as error:
            raise CheckpointError(cfg.resume, f"does not fit this run: {error}") from None
        actor_optimizer.load_state_dict(state["optimizer"]["actor"])
        critic_optimizer.load_state_dict(state["optimizer"]["critic"])
        scaler.load_state_dict(state["reward_scaler"])
        set_rng_state(state["rng"])
        generator.set_state(state["generator"])
        counters.update(state["counters"])
        print(f"[dppo] resumed from {cfg.resume} at iteration {counters['iteration']}")

    envs = make_chunked_vector_env(
        cfg.task.env_id,
        env_kwargs,
        int(algo.n_envs),
        n_obs_steps=policy.n_obs_steps,
        act_steps=int(algo.act_steps),
        env_modules=list(cfg.env_modules),
        max_episode_steps=cfg.task.get("max_episode_steps"),
    )
    stop_at = (
        algo.n_iterations if algo.stop_after is None else min(algo.n_iterations, algo.stop_after)
    )
    reached_target = False
    try:
        while counters["iteration"] < stop_at and not reached_target:
            started = time.perf_counter()
            iteration = counters["iteration"]
            rollout, stats = collect_rollout(
                envs, actor, pretrained, critic, scaler, window, ppo, generator, cfg, iteration
            )
            update_started = time.perf_counter()
            warmup = iteration < algo.n_critic_warmup_itr
            for group in actor_optimizer.param_groups:
                group["lr"] = actor_learning_rate(algo, iteration)
            metrics = ppo_update(
                actor,
                critic,
                rollout,
                window,
                ppo,
                actor_optimizer,
                critic_optimizer,
                generator,
                train_actor=not warmup,
            )
            update_s = time.perf_counter() - update_started
            counters["iteration"] += 1
            counters["env_steps"] += stats.pop("env_steps")
            counters["wall_s"] += time.perf_counter() - started
            metrics.update(stats)
            metrics.update(
                {
                    "env_steps": counters["env_steps"],
                    "time/wall_s": counters["wall_s"],
                    "time/update_s": update_s,
                    "train/critic_warmup": float(warmup),
                    "train/actor_lr": actor_optimizer.param_groups[0]["lr"],
                }
            )
            if algo.eval_every and counters["iteration"] % algo.eval_every == 0:
                eval_started = time.perf_counter()
                metrics.update(evaluate(policy, cfg, cfg.eval.n_episodes_during_training))
                metrics["time/eval_s"] = time.perf_counter() - eval_started
                counters["wall_s"] += metrics["time/eval_s"]
                metrics["time/wall_s"] = counters["wall_s"]
                target = algo.target_success
                reached_target = target is not None and metrics["eval/success_rate"] >= target
            logger.log(metrics, counters["iteration"])
            print(_summary(counters, metrics))
            done = counters["iteration"] >= stop_at or reached_target
            if counters["iteration"] % algo.checkpoint_every == 0 or done:
                save_checkpoint(run_dir / "checkpoints" / "latest.safetensors", checkpoint_state())
    finally:
        envs.close()
    logger.plot({"success": ["eval/success_rate", "rollout/success_rate"]})
    logger.finish()
    return {
        "step": counters["iteration"],
        "finished": counters["iteration"] >= algo.n_iterations or reached_target,
        "checkpoint": run_dir / "checkpoints" / "latest.safetensors",
        **metrics,
    }


def actor_learning_rate(algo: DictConfig, iteration: int) -> float:
    """The actor's rate at ``iteration``: ``actor_lr`` until the critic warm-up ends, then a
    cosine decay to ``actor_lr_final`` at ``n_iterations`` (constant when that is null)."""
    peak, final = float(algo.actor_lr), algo.get("actor_lr_final")
    if final is None:
        return peak
    if isinstance(final, bool) or not isinstance(final, (int, float)) or final < 0:
        raise ValueError(f"algo.actor_lr_final={final!r} must be a rate >= 0, or null")
    start, end = int(algo.n_critic_warmup_itr), int(algo.n_iterations)
    progress = min(max((iteration - start) / max(end - start, 1), 0.0), 1.0)
    return float(final) + (peak - float(final)) * 0.5 * (1.0 + math.cos(math.pi * progress))


def collect_rollout(
    envs,
    actor: ChainActor,
    pretrained: ChainActor | None,
    critic: nn.Module,
    scaler: RunningRewardScaler,
    window: slice,
    ppo: ChainPPOConfig,
    generator: torch.Generator,
    cfg: DictConfig,
    iteration: int,
) -> tuple[ChainRollout, dict[str, float]]:
    """``algo.n_steps`` chunk steps of every env from a seeded reset; GAE applied."""
    algo = cfg.algo
    policy = actor.policy
    n_envs = int(algo.n_envs)
    first_seed = ENV_SEED_OFFSET + (int(cfg.seed) * 100_000 + iteration) * n_envs
    obs, _ = envs.reset(seed=[first_seed + j for j in range(n_envs)])
    columns: dict[str, list[torch.Tensor]] = {
        k: [] for k in ("cond", "chain", "log_prob", "value", "next_value", "reward", "bc_chain")
    }
    terminated_rows, ended_rows = [], []
    inference_s = rollout_s = 0.0
    env_steps = episodes = successes = 0
    for _ in range(int(algo.n_steps)):
        tick = time.perf_counter()
        with torch.no_grad():
            cond = policy.encode_obs(_as_tensors(obs, policy))
            sample = sample_chain(actor, cond, window, ppo, generator)
            columns["value"].append(critic(cond))
            if pretrained is not None:
                columns["bc_chain"].append(
                    sample_chain(pretrained, cond, window, ppo, generator).chain
                )
        action = sample.action.float().cpu().numpy()
        tock = time.perf_counter()
        obs, reward, terminated, truncated, info = envs.step(action)
        rollout_s += time.perf_counter() - tock
        inference_s += tock - tick
        ended = terminated | truncated
        tick = time.perf_counter()
        with torch.no_grad():
            reached = final_observations(obs, info, ended)
            columns["next_value"].append(critic(policy.encode_obs(_as_tensors(reached, policy))))
        inference_s += time.perf_counter() - tick
        columns["cond"].append(cond)
        columns["chain"].append(sample.chain)
        columns["log_prob"].append(sample.log_prob)
        executed = _step_info(info, "env_steps", ended, 0).astype(np.float64)
        reward = reward + float(algo.step_reward) * executed
        columns["reward"].append(torch.as_tensor(scaler(reward, ended), dtype=torch.float32))
        terminated_rows.append(torch.as_tensor(terminated))
        ended_rows.append(torch.as_tensor(ended))
        env_steps += int(executed.sum())
        episodes += int(ended.sum())
        successes += int(sum(_step_info(info, "is_success", ended, False)[ended]))

    device = policy.device
    stacked = {k: torch.stack(v).to(device) for k, v in columns.items() if v}
    advantages, returns = compute_gae(
        stacked["reward"],
        stacked["value"],
        stacked["next_value"],
        torch.stack(terminated_rows).to(device),
        torch.stack(ended_rows).to(device),
        ppo.gamma,
        ppo.gae_lambda,
    )
    rollout = ChainRollout(
        cond=stacked["cond"].flatten(0, 1),
        chain=stacked["chain"].flatten(0, 1),
        log_prob=stacked["log_prob"].flatten(0, 1),
        advantages=advantages.flatten(),
        returns=returns.flatten(),
        values=stacked["value"].flatten(),
        bc_chain=stacked["bc_chain"].flatten(0, 1) if "bc_chain" in stacked else None,
    )
    stats = {
        "env_steps": env_steps,
        "rollout/episodes": episodes,
        "rollout/success_rate": successes / episodes if episodes else float("nan"),
        "rollout/value_mean": float(rollout.values.mean()),
        "time/rollout_s": rollout_s,
        "time/inference_s": inference_s,
    }
    return rollout, stats


def evaluate(policy: BasePolicy, cfg: DictConfig, n_episodes: int) -> dict[str, float]:
    """Deterministic closed-loop success with the eval.py code path and sampler settings."""
    result = evaluate_policy(policy, cfg, n_episodes)
    successes = int(result.success.sum())
    low, high = wilson_interval(successes, len(result.success))
    return {
        "eval/success_rate": result.success_rate,
        "eval/success_low": low,
        "eval/success_high": high,
        "eval/mean_length": float(result.lengths.mean()),
    }


def _as_tensors(obs: dict[str, np.ndarray], policy: BasePolicy) -> dict[str, torch.Tensor]:
    out = {}
    for key in policy.shape_meta["obs"]:
        value = torch.from_numpy(np.ascontiguousarray(obs[key]))
        out[key] = value.float() if value.is_floating_point() else value
    return out


def _step_info(info: dict, key: str, ended: np.ndarray, default) -> np.ndarray:
    """Per env, ``info[key]`` of the step just taken: from ``final_info`` where the episode
    ended (same-step autoreset put the new episode's reset info in ``info`` there)."""
    values = np.array([info.get(key, [default] * len(ended))[j] for j in range(len(ended))])
    if ended.any():
        final = info["final_info"]
        for j in np.flatnonzero(ended):
            values[j] = final[key][j]
    return values


def _summary(counters: dict, metrics: dict) -> str:
    parts = [f"[rl] iteration {counters['iteration']}", f"env_steps {counters['env_steps']}"]
    for key in ("rollout/success_rate", "eval/success_rate", "ppo/approx_kl", "ppo/clip_fraction"):
        if key in metrics:
            parts.append(f"{key} {metrics[key]:.3g}")
    return ", ".join(parts)
