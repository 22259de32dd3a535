"""Run one scripted-expert episode and return it as time-major arrays, ready for a dataset.

Step ``t`` pairs the observation (and raw simulator state) *before* action ``t`` with that
action, the reward it earned, and whether the episode ended on it; the observation after the
last action is not kept (the diffusion_policy replay-buffer convention). Everything here is
deterministic given ``seed``: the env is reset with it and the expert draws from
``np.random.default_rng(seed)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import gymnasium as gym
import numpy as np

from sim.experts import Expert, TeleopStyle, make_expert


@dataclass
class ExpertEpisode:
    steps: dict[str, np.ndarray]  # obs keys, "action", "reward", "done" (+ "sim_state")
    success: bool
    seed: int
    mode: int | None  # the expert's behaviour mode, for multimodal tasks


def record_expert_episode(
    env: gym.Env, expert: Expert, seed: int, record_sim_state: bool = True
) -> ExpertEpisode:
    """Roll out ``expert`` in ``env`` from ``reset(seed=seed)`` until termination or truncation."""
    obs, info = env.reset(seed=seed)
    expert.reset(np.random.default_rng(seed))
    columns: dict[str, list] = {key: [] for key in obs}
    columns.update(action=[], reward=[], done=[])
    if record_sim_state:
        columns["sim_state"] = []
    success = bool(info.get("is_success", False))
    done = False
    while not done:
        if record_sim_state:
            columns["sim_state"].append(env.unwrapped.get_sim_state())
        for key, value in obs.items():
            columns[key].append(value)
        action = expert.act(obs)
        obs, reward, terminated, truncated, info = env.step(action)
        done = terminated or truncated
        success = bool(info.get("is_success", False))
        columns["action"].append(np.asarray(action, dtype=np.float32))
        columns["reward"].append(reward)
        columns["done"].append(done)
    steps = {key: np.stack(values) for key, values in columns.items()}
    steps["reward"] = steps["reward"].astype(np.float32)
    return ExpertEpisode(steps=steps, success=success, seed=seed, mode=expert.mode)


# ---- worker processes (e.g. a multiprocessing.Pool in datasets/collect.py) ----------------------
# A pool's initializer builds one env and expert per process; tasks then only send seeds. They
# live here, in an importable module, so that "spawn" workers can unpickle them.

_worker: dict = {}


def init_worker(
    env_id: str,
    env_kwargs: dict,
    max_episode_steps: int,
    style: TeleopStyle,
    record_sim_state: bool,
) -> None:
    """Pool initializer: build this process's env and expert."""
    import sim  # noqa: F401  (registers the env ids in a fresh process)

    env = gym.make(env_id, max_episode_steps=max_episode_steps, **env_kwargs)
    _worker.update(env=env, expert=make_expert(env, style), record_sim_state=record_sim_state)


def worker_episode(seed: int) -> ExpertEpisode:
    """Pool task: one episode with this process's env and expert."""
    return record_expert_episode(
        _worker["env"], _worker["expert"], seed, _worker["record_sim_state"]
    )
