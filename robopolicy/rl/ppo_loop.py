"""The on-policy loop of chain PPO, shared by DPPO (robopolicy/algos/dppo.py) and ReinFlow
(robopolicy/algos/reinflow.py); the update itself is robopolicy/rl/chain_ppo.py.

An algorithm hands ``run_chain_ppo`` a ``ChainActor`` (its policy's sampling chain as a chain of
Gaussians), any extra trainable modules and, for the behaviour-cloning term, a frozen copy. One
iteration:

1. reset the ``n_envs`` chunked envs (robopolicy/rl/chunk_env.py) with the run's training seeds
   for that iteration (robopolicy/utils/seeds.py), as DPPO does, so a resumed run continues
   exactly;
2. ``n_steps`` times: encode the observation histories, sample chains (``sample_chain``), value
   them, execute ``act_steps`` actions of each chunk, add ``step_reward`` per executed env step
   (a time cost), scale the rewards (running scaling), and value the observation each env ended
   its step in (the final one where an episode ended);
3. GAE over env steps, then ``ppo_update`` (the actor is held still for the first
   ``n_critic_warmup_itr`` iterations while the critic warms up; its rate then follows
   ``actor_learning_rate``, constant or cosine-decayed to ``actor_lr_final``);
4. log (``env_steps`` with every record; ``time/rollout_s`` env stepping, ``time/inference_s``
   policy and critic calls during rollouts, ``time/update_s``), evaluate every ``eval_every``
   iterations (``evaluate_policy``, the code path of eval.py, with ``cfg.eval.sampler``), write
   ``checkpoints/latest.safetensors``.

Resume (``resume=PATH``) restores the fine-tuned policy, the critic and the extra modules, both
optimizers, the reward scaler, the iteration, env-step and wall-clock counters, and every RNG
(the global ones and the sampling generator); since envs are reset by seed at each iteration,
the resumed run repeats the uninterrupted one's iterations.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from robopolicy.eval.evaluate import evaluate_policy, success_metrics
from robopolicy.eval.vector_info import step_values
from robopolicy.policies.base import BasePolicy
from robopolicy.policies.registry import load_policy, policy_state
from robopolicy.rl.chain_ppo import (
    ChainActor,
    ChainPPOConfig,
    ChainRollout,
    action_window,
    compute_gae,
    ppo_update,
    sample_chain,
)
from robopolicy.rl.chunk_env import (
    final_observations,
    make_chunked_vector_env,
    observation_tensors,
)
from robopolicy.rl.critic import ValueCritic
from robopolicy.rl.reward_scaling import RunningRewardScaler
from robopolicy.training.distributed import SINGLE_PROCESS, Distributed
from robopolicy.training.rng import seed_everything
from robopolicy.training.run_logger import RunLogger
from robopolicy.training.run_state import Counters, RunState, StateOf, run_facts
from robopolicy.utils.seeds import training_reset_seeds

log = logging.getLogger("train.rl")  # under train.py's logger: its terminal and train.log


@dataclass
class ChainPPOLearner:
    """What one iteration works with: the chains, the critic, their optimizers, the reward
    scaler, the sampling generator and the PPO settings."""

    actor: ChainActor
    pretrained: ChainActor | None  # samples the behaviour-cloning term's chains (bc_coef > 0)
    critic: ValueCritic
    actor_optimizer: torch.optim.Optimizer
    critic_optimizer: torch.optim.Optimizer
    scaler: RunningRewardScaler
    generator: torch.Generator
    window: slice  # the executed actions' rows of a chunk
    ppo: ChainPPOConfig


def run_chain_ppo(
    cfg: DictConfig,
    run_dir: Path,
    actor: ChainActor,
    extra_modules: dict[str, nn.Module],
    pretrained: ChainActor | None,
    ranks: Distributed = SINGLE_PROCESS,
) -> dict[str, Any]:
    """Fine-tune ``actor`` by chain PPO (module docstring).

    ``actor.policy`` is the deployable policy; its trainable parameters and those of
    ``extra_modules`` (saved under their names) are fine-tuned.
    """
    if ranks.enabled:
        raise ValueError("RL fine-tuning runs in one process; launch it without torchrun")
    algo = cfg.algo
    seed_everything(cfg.seed)
    learner = _build_learner(cfg, actor, extra_modules, pretrained)
    counters = Counters(iteration=0, env_steps=0, wall_s=0.0)
    state = _run_state(cfg, learner, extra_modules, counters)
    logger = RunLogger.for_run(cfg, run_dir)
    if cfg.resume:
        state.restore(cfg.resume)
        logger.rewind(counters["iteration"])
        log.info(f"resumed from {cfg.resume} at iteration {counters['iteration']}")
    envs = make_chunked_vector_env(
        cfg.task.env_id,
        _training_env_kwargs(cfg),
        int(algo.n_envs),
        n_obs_steps=actor.policy.n_obs_steps,
        act_steps=int(algo.act_steps),
        env_modules=list(cfg.env_modules),
        max_episode_steps=cfg.task.get("max_episode_steps"),
    )
    stop_at = (
        algo.n_iterations if algo.stop_after is None else min(algo.n_iterations, algo.stop_after)
    )
    checkpoint = run_dir / "checkpoints" / "latest.safetensors"
    metrics: dict[str, Any] = {}
    reached_target = False
    try:
        while counters["iteration"] < stop_at and not reached_target:
            metrics = _iteration(learner, envs, cfg, counters)
            if algo.eval_every and counters["iteration"] % algo.eval_every == 0:
                metrics.update(_evaluate(actor.policy, cfg, counters))
                target = algo.target_success
                reached_target = target is not None and metrics["eval/success_rate"] >= target
            logger.log(metrics, counters["iteration"])
            log.info(_summary(counters, metrics))
            done = counters["iteration"] >= stop_at or reached_target
            if counters["iteration"] % algo.checkpoint_every == 0 or done:
                state.save(checkpoint, counters["iteration"], metrics)
    finally:
        envs.close()
    logger.plot({"success": ["eval/success_rate", "rollout/success_rate"]})
    logger.finish()
    return {
        "step": counters["iteration"],
        "finished": counters["iteration"] >= algo.n_iterations or reached_target,
        "checkpoint": checkpoint,
        **metrics,
    }


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


def actor_learning_rate(algo: DictConfig, iteration: int) -> float:
    """The actor's rate at ``iteration``: ``actor_lr`` until the critic warm-up ends, then a
    cosine decay to ``actor_lr_final`` at ``n_iterations`` (constant when that is null)."""
    peak, final = float(algo.actor_lr), algo.get("actor_lr_final")
    if final is None:
        return peak
    start, end = int(algo.n_critic_warmup_itr), int(algo.n_iterations)
    progress = min(max((iteration - start) / max(end - start, 1), 0.0), 1.0)
    return float(final) + (peak - float(final)) * 0.5 * (1.0 + math.cos(math.pi * progress))


def _build_learner(
    cfg: DictConfig,
    actor: ChainActor,
    extra_modules: dict[str, nn.Module],
    pretrained: ChainActor | None,
) -> ChainPPOLearner:
    algo = cfg.algo
    policy = actor.policy.eval()
    window = action_window(policy, int(algo.act_steps))
    generator = torch.Generator().manual_seed(int(cfg.seed))
    critic = ValueCritic(policy.cond_dim, **algo.critic).to(policy.device)
    trainable = [p for p in policy.parameters() if p.requires_grad]
    for module in extra_modules.values():
        trainable += list(module.parameters())
    ppo = OmegaConf.to_object(algo.ppo)  # a ChainPPOConfig (robopolicy/config/chain_ppo.py)
    return ChainPPOLearner(
        actor=actor,
        pretrained=pretrained,
        critic=critic,
        actor_optimizer=torch.optim.AdamW(
            trainable, lr=algo.actor_lr, weight_decay=algo.actor_weight_decay
        ),
        critic_optimizer=torch.optim.AdamW(
            critic.parameters(), lr=algo.critic_lr, weight_decay=algo.critic_weight_decay
        ),
        scaler=RunningRewardScaler(int(algo.n_envs), ppo.gamma),
        generator=generator,
        window=window,
        ppo=ppo,
    )


def _run_state(
    cfg: DictConfig,
    learner: ChainPPOLearner,
    extra_modules: dict[str, nn.Module],
    counters: Counters,
) -> RunState:
    optimizers = {"actor": learner.actor_optimizer, "critic": learner.critic_optimizer}
    return RunState(
        parts={
            "policy": policy_state(learner.actor.policy),
            "critic": learner.critic,
            "extra_modules": StateOf(
                lambda: {name: m.state_dict() for name, m in extra_modules.items()},
                lambda saved: [m.load_state_dict(saved[name]) for name, m in extra_modules.items()],
            ),
            "optimizer": StateOf(
                lambda: {name: o.state_dict() for name, o in optimizers.items()},
                lambda saved: [o.load_state_dict(saved[name]) for name, o in optimizers.items()],
            ),
            "reward_scaler": learner.scaler,
            "generator": StateOf(learner.generator.get_state, learner.generator.set_state),
            "counters": counters,
        },
        facts={**run_facts(cfg), "base_checkpoint": str(cfg.checkpoint)},
    )


def _training_env_kwargs(cfg: DictConfig) -> dict:
    """The task's env kwargs with the training reward (``algo.reward_type``) where one is set."""
    env_kwargs = OmegaConf.to_container(cfg.task.env_kwargs, resolve=True)
    if cfg.algo.reward_type is not None:
        env_kwargs["reward_type"] = cfg.algo.reward_type
    return env_kwargs


def _iteration(learner: ChainPPOLearner, envs, cfg: DictConfig, counters: Counters) -> dict:
    """One rollout and one PPO update; advances the counters; returns the iteration's metrics."""
    algo = cfg.algo
    started = time.perf_counter()
    iteration = counters["iteration"]
    rollout, stats = collect_rollout(learner, envs, cfg, iteration)
    update_started = time.perf_counter()
    warmup = iteration < algo.n_critic_warmup_itr
    for group in learner.actor_optimizer.param_groups:
        group["lr"] = actor_learning_rate(algo, iteration)
    metrics = ppo_update(
        learner.actor,
        learner.critic,
        rollout,
        learner.window,
        learner.ppo,
        learner.actor_optimizer,
        learner.critic_optimizer,
        learner.generator,
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
            "train/actor_lr": learner.actor_optimizer.param_groups[0]["lr"],
        }
    )
    return metrics


def _evaluate(policy: BasePolicy, cfg: DictConfig, counters: Counters) -> dict:
    """A periodic evaluation's metrics; its time counts in the run's wall clock."""
    started = time.perf_counter()
    metrics = success_metrics(evaluate_policy(policy, cfg, cfg.eval.n_episodes_during_training))
    metrics["time/eval_s"] = time.perf_counter() - started
    counters["wall_s"] += metrics["time/eval_s"]
    metrics["time/wall_s"] = counters["wall_s"]
    return metrics


def collect_rollout(
    learner: ChainPPOLearner, envs, cfg: DictConfig, iteration: int
) -> tuple[ChainRollout, dict[str, float]]:
    """``algo.n_steps`` chunk steps of every env from a seeded reset; GAE applied."""
    algo = cfg.algo
    n_envs = int(algo.n_envs)
    obs, _ = envs.reset(seed=training_reset_seeds(cfg.seed, iteration, n_envs))
    columns: dict[str, list[torch.Tensor]] = {
        k: [] for k in ("cond", "chain", "log_prob", "value", "next_value", "reward", "bc_chain")
    }
    columns["terminated"], columns["ended"] = [], []
    stats = {"env_steps": 0, "episodes": 0, "successes": 0, "rollout_s": 0.0, "inference_s": 0.0}
    for _ in range(int(algo.n_steps)):
        obs = _rollout_step(learner, envs, obs, float(algo.step_reward), columns, stats)
    rollout = _to_rollout(learner, columns)
    episodes = stats["episodes"]
    metrics = {
        "env_steps": stats["env_steps"],
        "rollout/episodes": episodes,
        "rollout/value_mean": float(rollout.values.mean()),
        "time/rollout_s": stats["rollout_s"],
        "time/inference_s": stats["inference_s"],
    }
    if episodes:  # no rate (rather than NaN) when no episode ended in this rollout
        metrics["rollout/success_rate"] = stats["successes"] / episodes
    return rollout, metrics


def _rollout_step(
    learner: ChainPPOLearner, envs, obs: dict, step_reward: float, columns: dict, stats: dict
) -> dict:
    """Sample and execute one chunk in every env; append its row to ``columns``; returns the
    next observations."""
    policy, critic, n_envs = learner.actor.policy, learner.critic, envs.num_envs
    chains = (learner.window, learner.ppo, learner.generator)
    keys = policy.shape_meta["obs"]
    tick = time.perf_counter()
    with torch.no_grad():
        cond = policy.encode_obs(observation_tensors(obs, keys))
        sample = sample_chain(learner.actor, cond, *chains)
        columns["value"].append(critic(cond))
        if learner.pretrained is not None:
            bc = sample_chain(
                learner.pretrained, cond, learner.window, learner.ppo, learner.generator
            )
            columns["bc_chain"].append(bc.chain)
    action = sample.action.float().cpu().numpy()
    tock = time.perf_counter()
    obs, reward, terminated, truncated, info = envs.step(action)
    stats["rollout_s"] += time.perf_counter() - tock
    stats["inference_s"] += tock - tick
    ended = terminated | truncated
    tick = time.perf_counter()
    with torch.no_grad():
        reached = observation_tensors(final_observations(obs, info, ended), keys)
        columns["next_value"].append(critic(policy.encode_obs(reached)))
    stats["inference_s"] += time.perf_counter() - tick
    columns["cond"].append(cond)
    columns["chain"].append(sample.chain)
    columns["log_prob"].append(sample.log_prob)
    executed = step_values(info, "env_steps", n_envs, 0, ended).astype(np.float64)
    reward = reward + step_reward * executed
    columns["reward"].append(torch.as_tensor(learner.scaler(reward, ended), dtype=torch.float32))
    columns["terminated"].append(torch.as_tensor(terminated))
    columns["ended"].append(torch.as_tensor(ended))
    stats["env_steps"] += int(executed.sum())
    stats["episodes"] += int(ended.sum())
    stats["successes"] += int(step_values(info, "is_success", n_envs, False, ended)[ended].sum())
    return obs


def _to_rollout(learner: ChainPPOLearner, columns: dict) -> ChainRollout:
    """Stack the rollout's rows (env step major) and attach GAE advantages and returns."""
    device = learner.actor.policy.device
    stacked = {k: torch.stack(v).to(device) for k, v in columns.items() if v}
    advantages, returns = compute_gae(
        stacked["reward"],
        stacked["value"],
        stacked["next_value"],
        stacked["terminated"],
        stacked["ended"],
        learner.ppo.gamma,
        learner.ppo.gae_lambda,
    )
    return ChainRollout(
        cond=stacked["cond"].flatten(0, 1),
        chain=stacked["chain"].flatten(0, 1),
        log_prob=stacked["log_prob"].flatten(0, 1),
        advantages=advantages.flatten(),
        returns=returns.flatten(),
        values=stacked["value"].flatten(),
        bc_chain=stacked["bc_chain"].flatten(0, 1) if "bc_chain" in stacked else None,
    )


def _summary(counters: dict, metrics: dict) -> str:
    parts = [f"iteration {counters['iteration']}", f"env_steps {counters['env_steps']}"]
    for key in ("rollout/success_rate", "eval/success_rate", "ppo/approx_kl", "ppo/clip_fraction"):
        if key in metrics:
            parts.append(f"{key} {metrics[key]:.3g}")
    return ", ".join(parts)
