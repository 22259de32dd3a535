"""The environment as an RL fine-tuner sees it: one step = one executed action chunk.

A chunking policy observes a history of ``n_obs_steps`` observations and commits to
``act_steps`` actions at a time. ``ChunkedEnv`` wraps one gymnasium env so that its step does
exactly that, which makes the outer MDP of DPPO and the transitions of DSRL plain gymnasium
steps that any vector env can batch:

* observation: the last ``n_obs_steps`` observations stacked per key, ``(n_obs_steps, ...)``;
  at reset the history is filled with copies of the first observation, exactly as
  ``robopolicy/eval/rollout.py`` and the dataset sampler pad episode starts, so a policy sees
  the same inputs in RL as in behaviour cloning and evaluation;
* action: a chunk ``(act_steps, action_dim)``, executed one env step at a time;
* reward: the sum of the executed steps' rewards (undiscounted inside the chunk);
* the chunk stops early when the episode ends. ``terminated`` (the task ended it, e.g. success)
  and ``truncated`` (the time limit) are passed through unchanged: a learner must bootstrap
  from the value of the last observation after a truncation and must not after a termination;
* info: ``is_success`` (any executed step succeeded), ``env_steps`` (steps executed), and
  ``mode`` where the env reports one.

``make_chunked_vector_env`` batches the wrapped env in worker processes with gymnasium's
``SAME_STEP`` autoreset: an env that ends is reset within the same call, the returned
observation is the new episode's first one, and the ended episode's last observation is in
``info["final_obs"]`` (what the critic needs to bootstrap a truncated episode).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import gymnasium as gym
import numpy as np
import torch

from robopolicy.eval.envs import make_vector_env


class ChunkedEnv(gym.Wrapper):
    """Observation history in, action chunk out (see the module docstring)."""

    def __init__(self, env: gym.Env, n_obs_steps: int, act_steps: int):
        super().__init__(env)
        if n_obs_steps < 1 or act_steps < 1:
            raise ValueError(
                f"n_obs_steps and act_steps must be >= 1, got {n_obs_steps}, {act_steps}"
            )
        if not isinstance(env.observation_space, gym.spaces.Dict):
            raise ValueError("ChunkedEnv needs a Dict observation space (one entry per key)")
        self.n_obs_steps = n_obs_steps
        self.act_steps = act_steps
        self.observation_space = gym.spaces.Dict(
            {
                key: gym.spaces.Box(
                    np.repeat(space.low[None], n_obs_steps, axis=0),
                    np.repeat(space.high[None], n_obs_steps, axis=0),
                    dtype=space.dtype,
                )
                for key, space in env.observation_space.spaces.items()
            }
        )
        single = env.action_space
        self.action_space = gym.spaces.Box(
            np.repeat(single.low[None], act_steps, axis=0),
            np.repeat(single.high[None], act_steps, axis=0),
            dtype=single.dtype,
        )
        self._history: dict[str, np.ndarray] = {}

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        obs, info = self.env.reset(seed=seed, options=options)
        self._history = {
            key: np.repeat(np.asarray(value)[None], self.n_obs_steps, axis=0)
            for key, value in obs.items()
        }
        return self._stacked(), info

    def step(self, chunk):
        chunk = np.asarray(chunk)
        if chunk.shape != self.action_space.shape:
            raise ValueError(
                f"action chunk has shape {chunk.shape}; expected (act_steps={self.act_steps}, "
                f"action_dim={self.action_space.shape[1]})"
            )
        total_reward, success, executed = 0.0, False, 0
        terminated = truncated = False
        info: dict = {}
        for action in chunk:
            obs, reward, terminated, truncated, info = self.env.step(action)
            for key, value in obs.items():
                history = self._history[key]
                history[:-1] = history[1:]
                history[-1] = value
            total_reward += float(reward)
            success = success or bool(info.get("is_success", False))
            executed += 1
            if terminated or truncated:
                break
        out_info = {"is_success": success, "env_steps": executed}
        if "mode" in info:
            out_info["mode"] = int(info["mode"])
        return self._stacked(), total_reward, bool(terminated), bool(truncated), out_info

    def _stacked(self) -> dict[str, np.ndarray]:
        return {key: value.copy() for key, value in self._history.items()}


def make_chunked_vector_env(
    env_id: str,
    env_kwargs: dict,
    n_envs: int,
    n_obs_steps: int,
    act_steps: int,
    env_modules: Sequence[str] = (),
    max_episode_steps: int | None = None,
    asynchronous: bool | None = None,
) -> gym.vector.VectorEnv:
    """``n_envs`` chunked copies of ``env_id`` with same-step autoreset (module docstring)."""
    return make_vector_env(
        env_id,
        env_kwargs,
        n_envs,
        env_modules=env_modules,
        asynchronous=asynchronous,
        max_episode_steps=max_episode_steps,
        wrapper=functools.partial(ChunkedEnv, n_obs_steps=n_obs_steps, act_steps=act_steps),
        autoreset_mode=gym.vector.AutoresetMode.SAME_STEP,
    )


def final_observations(
    obs: dict[str, np.ndarray], info: dict, ended: np.ndarray
) -> dict[str, np.ndarray]:
    """The observation each env ended its step in: ``obs`` where the episode goes on, the ended
    episode's last observation (``info["final_obs"]``) where it ended (bootstrap targets)."""
    result = {key: value.copy() for key, value in obs.items()}
    if not ended.any():
        return result
    final = info["final_obs"]
    for j in np.flatnonzero(ended):
        for key in result:
            result[key][j] = final[j][key]
    return result


def observation_tensors(obs: dict[str, np.ndarray], keys) -> dict[str, torch.Tensor]:
    """The vector env's observations of ``keys`` as the policy takes them: floating-point values
    as float32 tensors, integer ones (uint8 images) unchanged."""
    tensors = {}
    for key in keys:
        value = torch.from_numpy(np.ascontiguousarray(obs[key]))
        tensors[key] = value.float() if value.is_floating_point() else value
    return tensors
