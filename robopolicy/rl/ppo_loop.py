"""The on-policy PPO loop, shared by DPPO (robopolicy/algos/dppo.py), ReinFlow
(robopolicy/algos/reinflow.py) and FPO (robopolicy/algos/fpo.py).

What differs between them is a ``PPOStrategy``: how a chunk is sampled and what is stored with it
for the update, and the update itself. ``run_ppo`` takes one, with any extra trainable modules.
``run_chain_ppo`` is the chain PPO of DPPO and ReinFlow: a ``ChainActor`` (the policy's sampling
chain as a chain of Gaussians) and, for the behaviour-cloning term, a frozen copy, made into a
``ChainStrategy`` (the update is robopolicy/rl/chain_ppo.py). One iteration:

1. reset the ``n_envs`` chunked envs (robopolicy/rl/chunk_env.py) with the run's training seeds
   for that iteration (robopolicy/utils/seeds.py), as DPPO does, so a resumed run continues
   exactly;
2. ``n_steps`` times: encode the observation histories, sample chunks (the strategy's
   ``sample``; chain PPO: ``sample_chain``), value them, execute ``act_steps`` actions of each
   chunk, add ``step_reward`` per executed env step (a time cost), scale the rewards (running
   scaling), and value the observation each env ended its step in (the final one where an
   episode ended);
3. GAE over env steps, then the strategy's ``update`` (chain PPO: ``ppo_update``; the actor
   is held still for the first ``n_critic_warmup_itr`` iterations while the critic warms up;
   its rate then follows ``actor_learning_rate``, constant or cosine-decayed to
   ``actor_lr_final``);
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
from robopolicy.rl.chain_ppo import ChainActor, action_window, compute_gae
from robopolicy.rl.chunk_env import (
    final_observations,
    make_chunked_vector_env,
    observation_tensors,
)
from robopolicy.rl.critic import ValueCritic
from robopolicy.rl.ppo_strategy import ChainStrategy, PPOStrategy, Rollout
from robopolicy.rl.reward_scaling import RunningRewardScaler
from robopolicy.training.distributed import SINGLE_PROCESS, Distributed
from robopolicy.training.rng import seed_everything
from robopolicy.training.run_logger import RunLogger
from robopolicy.training.run_state import Counters, RunState, StateOf, run_facts
from robopolicy.utils.seeds import training_reset_seeds

log = logging.getLogger("train.rl")  # under train.py's logger: its terminal and train.log


@dataclass
class PPOLearner:
    """What one iteration works with: the strategy, the critic, the optimizers, the reward
    scaler and the sampling generator."""

    strategy: PPOStrategy
    critic: ValueCritic
    actor_optimizer: torch.optim.Optimizer
    critic_optimizer: torch.optim.Optimizer
    scaler: RunningRewardScaler
    generator: torch.Generator


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
    window = action_window(actor.policy, int(cfg.algo.act_steps))
    ppo = OmegaConf.to_object(cfg.algo.ppo)  # a ChainPPOConfig (robopolicy/config/chain_ppo.py)
    strategy = ChainStrategy(actor, pretrained, window, ppo)
    return run_ppo(cfg, run_dir, strategy, extra_modules, ranks)


def run_ppo(
    cfg: DictConfig,
    run_dir: Path,
    strategy: PPOStrategy,
    extra_modules: dict[str, nn.Module],
    ranks: Distributed = SINGLE_PROCESS,
) -> dict[str, Any]:
    """Fine-tune ``strategy.policy`` (its trainable parameters, and those of ``extra_modules``,
    saved under their names) by the on-policy loop of the module docstring."""
    if ranks.enabled:
        raise ValueError("RL fine-tuning runs in one process; launch it without torchrun")
    algo = cfg.algo
    seed_everything(cfg.seed)
    learner = _build_learner(cfg, strategy, extra_modules)
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
        n_obs_steps=strategy.policy.n_obs_steps,
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
                metrics.update(_evaluate(strategy.policy, cfg, counters))
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


def load_base_policy(
    cfg: DictConfig, device, expected: type[BasePolicy] | tuple[type[BasePolicy], ...]
) -> BasePolicy:
    """The pretrained policy in ``cfg.checkpoint`` (EMA weights), checked to be ``expected``
    (a class or a tuple of them)."""
    if not cfg.checkpoint:
        raise ValueError(
            f"algo={cfg.algo.name} fine-tunes a pretrained policy: set checkpoint=PATH "
            "(e.g. a BC run's checkpoints/latest.safetensors)"
        )
    policy, _ = load_policy(cfg.checkpoint, device=device)
    if not isinstance(policy, expected):
        kinds = expected if isinstance(expected, tuple) else (expected,)
        raise ValueError(
            f"checkpoint={cfg.checkpoint} holds a {type(policy).__name__}; algo={cfg.algo.name} "
            f"fine-tunes a {' or a '.join(kind.__name__ for kind in kinds)}"
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
    cfg: DictConfig, strategy: PPOStrategy, extra_modules: dict[str, nn.Module]
) -> PPOLearner:
    algo = cfg.algo
    policy = strategy.policy.eval()
    generator = torch.Generator().manual_seed(int(cfg.seed))
    critic = ValueCritic(policy.cond_dim, **algo.critic).to(policy.device)
    trainable = [p for p in policy.parameters() if p.requires_grad]
    for module in extra_modules.values():
        trainable += list(module.parameters())
    return PPOLearner(
        strategy=strategy,
        critic=critic,
        actor_optimizer=torch.optim.AdamW(
            trainable, lr=algo.actor_lr, weight_decay=algo.actor_weight_decay
        ),
        critic_optimizer=torch.optim.AdamW(
            critic.parameters(), lr=algo.critic_lr, weight_decay=algo.critic_weight_decay
        ),
        scaler=RunningRewardScaler(int(algo.n_envs), strategy.ppo.gamma),
        generator=generator,
    )


def _run_state(
    cfg: DictConfig,
    learner: PPOLearner,
    extra_modules: dict[str, nn.Module],
    counters: Counters,
) -> RunState:
    optimizers = {"actor": learner.actor_optimizer, "critic": learner.critic_optimizer}
    return RunState(
        parts={
            "policy": policy_state(learner.strategy.policy),
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


def _iteration(learner: PPOLearner, envs, cfg: DictConfig, counters: Counters) -> dict:
    """One rollout and one PPO update; advances the counters; returns the iteration's metrics."""
    algo = cfg.algo
    started = time.perf_counter()
    iteration = counters["iteration"]
    rollout, stats = collect_rollout(learner, envs, cfg, iteration)
    update_started = time.perf_counter()
    warmup = iteration < algo.n_critic_warmup_itr
    for group in learner.actor_optimizer.param_groups:
        group["lr"] = actor_learning_rate(algo, iteration)
    metrics = learner.strategy.update(
        learner.critic,
        rollout,
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
    learner: PPOLearner, envs, cfg: DictConfig, iteration: int
) -> tuple[Rollout, dict[str, float]]:
    """``algo.n_steps`` chunk steps of every env from a seeded reset; GAE applied."""
    algo = cfg.algo
    n_envs = int(algo.n_envs)
    obs, _ = envs.reset(seed=training_reset_seeds(cfg.seed, iteration, n_envs))
    columns: dict[str, list[torch.Tensor]] = {
        k: [] for k in ("cond", "value", "next_value", "reward", "terminated", "ended")
    }
    samples: dict[str, list[torch.Tensor]] = {}
    stats = {"env_steps": 0, "episodes": 0, "successes": 0, "rollout_s": 0.0, "inference_s": 0.0}
    for _ in range(int(algo.n_steps)):
        obs = _rollout_step(learner, envs, obs, float(algo.step_reward), columns, samples, stats)
    rollout = _to_rollout(learner, columns, samples)
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
    learner: PPOLearner,
    envs,
    obs: dict,
    step_reward: float,
    columns: dict,
    samples: dict,
    stats: dict,
) -> dict:
    """Sample and execute one chunk in every env; append its row to ``columns`` (the loop's) and
    ``samples`` (the strategy's); returns the next observations."""
    policy, critic, n_envs = learner.strategy.policy, learner.critic, envs.num_envs
    keys = policy.shape_meta["obs"]
    tick = time.perf_counter()
    with torch.no_grad():
        cond = policy.encode_obs(observation_tensors(obs, keys))
        action, sampled = learner.strategy.sample(cond, learner.generator)
        columns["value"].append(critic(cond))
    for key, value in sampled.items():
        samples.setdefault(key, []).append(value)
    action = action.float().cpu().numpy()
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
    executed = step_values(info, "env_steps", n_envs, 0, ended).astype(np.float64)
    reward = reward + step_reward * executed
    columns["reward"].append(torch.as_tensor(learner.scaler(reward, ended), dtype=torch.float32))
    columns["terminated"].append(torch.as_tensor(terminated))
    columns["ended"].append(torch.as_tensor(ended))
    stats["env_steps"] += int(executed.sum())
    stats["episodes"] += int(ended.sum())
    stats["successes"] += int(step_values(info, "is_success", n_envs, False, ended)[ended].sum())
    return obs


def _to_rollout(learner: PPOLearner, columns: dict, samples: dict) -> Rollout:
    """Stack the rollout's rows (env step major) and attach GAE advantages and returns."""
    device = learner.strategy.policy.device
    stacked = {k: torch.stack(v).to(device) for k, v in columns.items()}
    advantages, returns = compute_gae(
        stacked["reward"],
        stacked["value"],
        stacked["next_value"],
        stacked["terminated"],
        stacked["ended"],
        learner.strategy.ppo.gamma,
        learner.strategy.ppo.gae_lambda,
    )
    return Rollout(
        cond=stacked["cond"].flatten(0, 1),
        advantages=advantages.flatten(),
        returns=returns.flatten(),
        values=stacked["value"].flatten(),
        samples={k: torch.stack(v).to(device).flatten(0, 1) for k, v in samples.items()},
    )


def _summary(counters: dict, metrics: dict) -> str:
    parts = [f"iteration {counters['iteration']}", f"env_steps {counters['env_steps']}"]
    for key in ("rollout/success_rate", "eval/success_rate", "ppo/approx_kl", "ppo/clip_fraction"):
        if key in metrics:
            parts.append(f"{key} {metrics[key]:.3g}")
    return ", ".join(parts)
