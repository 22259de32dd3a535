"""Evaluate a policy closed-loop and summarise the outcome: the one path behind every reported
success rate (eval.py, periodic evaluation in training, evaluation inside RL fine-tuning)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np
from omegaconf import DictConfig, OmegaConf

from robopolicy.eval.envs import check_policy_fits_env, make_vector_env, policy_act_fn
from robopolicy.eval.rollout import EpisodeEnd, RolloutResult, run_episodes
from robopolicy.policies.base import BasePolicy
from robopolicy.utils.console import progress_bar
from robopolicy.utils.stats import wilson_interval

EVAL_RESULTS = "eval.json"  # the evaluation results of a run directory (eval.py, train.py)
NO_MODE = -1  # RolloutResult.modes where the env reports none


def evaluate(
    policy: BasePolicy,
    env_id: str,
    env_kwargs: dict,
    n_episodes: int,
    n_envs: int = 1,
    seed: int = 0,
    env_modules: Sequence[str] = (),
    video_episodes: int = 0,
    sampler_options: dict | None = None,
    max_episode_steps: int | None = None,
    progress: bool = False,
) -> RolloutResult:
    """Run ``n_episodes`` seeded episodes of ``policy`` (in eval mode) on ``env_id``; with
    ``progress``, a bar on stderr counts the finished episodes and their successes."""
    envs = make_vector_env(
        env_id,
        env_kwargs,
        n_envs,
        env_modules=env_modules,
        render=video_episodes > 0,
        max_episode_steps=max_episode_steps,
    )
    bar = progress_bar(n_episodes, "eval", progress, unit="ep", leave=False)
    try:
        check_policy_fits_env(
            policy.shape_meta, envs.single_observation_space, envs.single_action_space
        )
        policy.eval()
        act = policy_act_fn(policy, **(sampler_options or {}))
        return run_episodes(
            envs,
            act,
            n_episodes,
            policy.n_obs_steps,
            seed=seed,
            record_videos=video_episodes,
            on_episode_end=_counting(bar),
        )
    finally:
        bar.close()
        envs.close()


def _counting(bar) -> EpisodeEnd:
    """An ``on_episode_end`` that advances ``bar`` and shows the successes so far."""
    successes = 0

    def episode_end(success: bool) -> None:
        nonlocal successes
        successes += success
        bar.set_postfix(success=f"{successes}/{bar.n + 1}", refresh=False)
        bar.update(1)

    return episode_end


def evaluate_policy(policy: BasePolicy, cfg: DictConfig, n_episodes: int) -> RolloutResult:
    """``evaluate`` on a run config's task with its eval settings (``cfg.eval``): the call of
    train.py's final evaluation and of every periodic evaluation during training or RL."""
    return evaluate(
        policy,
        cfg.task.env_id,
        OmegaConf.to_container(cfg.task.env_kwargs, resolve=True),
        n_episodes,
        n_envs=cfg.eval.n_envs,
        seed=cfg.eval.seed,
        env_modules=list(cfg.env_modules),
        video_episodes=cfg.eval.video_episodes,
        sampler_options=OmegaConf.to_container(cfg.eval.sampler, resolve=True),
        max_episode_steps=cfg.task.get("max_episode_steps"),
        progress=cfg.progress,
    )


def success_metrics(result: RolloutResult) -> dict[str, float]:
    """The ``eval/*`` metrics every training loop logs: success rate, its 95% Wilson interval,
    mean episode length (from ``summarize``)."""
    summary = summarize(result)
    low, high = summary["success_ci95"]
    return {
        "eval/success_rate": summary["success_rate"],
        "eval/success_low": low,
        "eval/success_high": high,
        "eval/mean_length": summary["length_mean"],
    }


def summarize(result: RolloutResult) -> dict[str, Any]:
    """Success rate with its 95% Wilson interval, returns, lengths, per-mode counts, latency, and
    every episode's seed and those of the failed ones (to replay one: ``eval.py seed=S
    n_episodes=1``). Modes only for tasks that have them.

    Latency is per policy call (one action chunk for every env at once); the first call is left
    out as warm-up when there are others.
    """
    n = len(result.success)
    successes = int(result.success.sum())
    low, high = wilson_interval(successes, n)
    latency = np.asarray(result.inference_seconds[1:] or result.inference_seconds) * 1e3
    summary = {
        "n_episodes": n,
        "successes": successes,
        "success_rate": successes / n,
        "success_ci95": [low, high],
        "return_mean": float(result.returns.mean()),
        "length_mean": float(result.lengths.mean()),
        **_mode_summary(result),
        "inference_ms_median": float(np.median(latency)) if latency.size else None,
        "inference_ms_p99": float(np.percentile(latency, 99)) if latency.size else None,
        "seeds": [int(seed) for seed in result.seeds],
        "failed_seeds": [int(seed) for seed in result.seeds[~result.success]],
    }
    return summary


def _mode_summary(result: RolloutResult) -> dict[str, dict[str, int]]:
    """Episodes and successes per mode, for tasks whose env reports one (``info["mode"]``);
    nothing for the others."""
    modes = Counter(int(m) for m in result.modes if m != NO_MODE)
    if not modes:
        return {}
    return {
        "mode_counts": {str(mode): count for mode, count in sorted(modes.items())},
        "success_by_mode": {
            str(mode): int(result.success[result.modes == mode].sum()) for mode in sorted(modes)
        },
    }
