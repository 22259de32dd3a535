"""Closed-loop rollouts of a chunking policy in a gymnasium vector env.

This is the single code path for every success rate robopolicy reports: ``eval.py``, the periodic
rollouts during training and the evaluation inside RL fine-tuning all call ``run_episodes``, so a
success rate seen during training is the one the standalone evaluation gives for the same
checkpoint, seeds and sampler settings.

The loop, for a batch of ``n_envs`` episodes with seeds ``seed + i``:

1. reset every env with its seed; fill each env's observation history with ``n_obs_steps``
   copies of the first observation (the dataset sampler pads episode starts the same way);
2. ask the policy for an action chunk from the stacked histories, one call for all envs, passing
   each env's episode seed so that the policy can draw its sampling noise from it (the same
   checkpoint and seeds then give the same episodes, run after run);
3. execute the chunk's actions one env step at a time, pushing each new observation into the
   history; an env whose episode ends stops counting (its later steps are ignored);
4. repeat until every env in the batch has ended (by termination, e.g. success, or by the time
   limit's truncation; both end the episode, and only ``info["is_success"]`` decides success).

Gymnasium 1.x vector envs reset a finished env on the step *after* the one that ended it; those
steps belong to no episode of ours and are ignored, so the autoreset mode does not matter here.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import gymnasium as gym
import numpy as np

from robopolicy.eval.vector_info import step_values

ActFn = Callable[..., np.ndarray]  # act(histories, episode_seeds=..., chunk_index=...) -> chunks
EpisodeEnd = Callable[[bool], None]  # on_episode_end(success), called as each episode ends


@dataclass
class RolloutResult:
    """Per-episode outcomes (arrays of length ``n_episodes``) and timing."""

    seeds: np.ndarray
    success: np.ndarray
    returns: np.ndarray
    lengths: np.ndarray
    modes: np.ndarray  # info["mode"] at the episode's end, -1 where the env reports none
    inference_seconds: list[float] = field(default_factory=list)  # one entry per policy call
    videos: list[np.ndarray] = field(
        default_factory=list
    )  # (T, H, W, 3) uint8 per recorded episode

    @property
    def success_rate(self) -> float:
        return float(self.success.mean()) if len(self.success) else 0.0


class ObservationHistory:
    """The last ``n_obs_steps`` observations of each env, stacked as (n_envs, n_obs_steps, ...)."""

    def __init__(self, n_obs_steps: int):
        self.n_obs_steps = n_obs_steps
        self.frames: dict[str, np.ndarray] = {}

    def reset(self, obs: dict[str, np.ndarray]) -> None:
        self.frames = {
            key: np.repeat(value[:, None], self.n_obs_steps, axis=1) for key, value in obs.items()
        }

    def push(self, obs: dict[str, np.ndarray]) -> None:
        for key, value in obs.items():
            history = self.frames[key]
            history[:, :-1] = history[:, 1:]
            history[:, -1] = value

    def stacked(self) -> dict[str, np.ndarray]:
        return {key: value.copy() for key, value in self.frames.items()}


def run_episodes(
    envs: gym.vector.VectorEnv,
    act: ActFn,
    n_episodes: int,
    n_obs_steps: int,
    seed: int = 0,
    record_videos: int = 0,
    max_steps: int = 10_000,
    on_episode_end: EpisodeEnd | None = None,
) -> RolloutResult:
    """Run ``n_episodes`` seeded episodes (seeds ``seed .. seed + n_episodes - 1``).

    ``act`` maps stacked observation histories ``{key: (n_envs, n_obs_steps, ...)}`` (and, as the
    keywords ``episode_seeds``, the ``(n_envs,)`` seed of each env's episode, and ``chunk_index``,
    how many chunks this batch of episodes has asked for before) to action chunks
    ``(n_envs, n_action_steps, action_dim)``. ``record_videos`` episodes (the first ones)
    are recorded with ``envs.render()``, which needs the envs made with ``render_mode="rgb_array"``.
    ``max_steps`` guards against envs without a time limit. ``on_episode_end(success)`` is
    called as each episode ends (a progress bar's update).
    """
    if n_episodes < 1:
        raise ValueError(f"n_episodes must be >= 1, got {n_episodes}")
    n_envs = envs.num_envs
    outcome = {
        "success": np.zeros(n_episodes, bool),
        "returns": np.zeros(n_episodes),
        "lengths": np.zeros(n_episodes, int),
        "modes": np.full(n_episodes, -1, int),
    }
    inference_seconds: list[float] = []
    videos: list[np.ndarray] = []
    history = ObservationHistory(n_obs_steps)

    for first in range(0, n_episodes, n_envs):
        episodes = np.arange(first, first + n_envs)  # slots past n_episodes run but are ignored
        counted = episodes < n_episodes
        obs, _ = envs.reset(seed=[int(seed + e) for e in episodes])
        history.reset(obs)
        active = counted.copy()
        recording = [j for j in range(n_envs) if counted[j] and episodes[j] < record_videos]
        frames: dict[int, list[np.ndarray]] = {j: [] for j in recording}
        _record(envs, frames)
        steps = 0
        chunk_index = 0
        while active.any():
            start = time.perf_counter()
            chunk = np.asarray(
                act(history.stacked(), episode_seeds=seed + episodes, chunk_index=chunk_index)
            )
            chunk_index += 1
            inference_seconds.append(time.perf_counter() - start)
            if chunk.ndim != 3 or chunk.shape[0] != n_envs:
                raise ValueError(
                    f"policy returned actions of shape {chunk.shape}; expected "
                    f"(n_envs={n_envs}, n_action_steps, action_dim)"
                )
            for action in chunk.transpose(1, 0, 2):
                obs, reward, terminated, truncated, info = envs.step(action)
                history.push(obs)
                _record(envs, {j: f for j, f in frames.items() if active[j]})
                steps += 1
                success = step_values(info, "is_success", n_envs, False)
                mode = step_values(info, "mode", n_envs, -1)
                for j in np.flatnonzero(active):
                    episode = episodes[j]
                    outcome["returns"][episode] += float(reward[j])
                    outcome["lengths"][episode] += 1
                    if success[j]:
                        outcome["success"][episode] = True
                    if terminated[j] or truncated[j]:
                        outcome["modes"][episode] = int(mode[j])
                        active[j] = False
                        if on_episode_end is not None:
                            on_episode_end(bool(outcome["success"][episode]))
                if not active.any():
                    break
            if steps >= max_steps and active.any():
                raise RuntimeError(
                    f"episodes still running after {max_steps} steps: does the env have a time "
                    "limit (max_episode_steps)?"
                )
        videos.extend(np.stack(frames[j]) for j in recording)

    return RolloutResult(
        seeds=np.arange(seed, seed + n_episodes),
        inference_seconds=inference_seconds,
        videos=videos,
        **outcome,
    )


def _record(envs: gym.vector.VectorEnv, frames: dict[int, list[np.ndarray]]) -> None:
    if not frames:
        return
    rendered = envs.render()
    for j, episode_frames in frames.items():
        episode_frames.append(np.asarray(rendered[j]))
