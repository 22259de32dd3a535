"""The closed-loop rollout loop, on a toy 1-D env whose outcome is known for every seed."""

from __future__ import annotations

import dataclasses

import gymnasium as gym
import numpy as np
import pytest

from robopolicy.eval.evaluate import summarize
from robopolicy.eval.rollout import ObservationHistory, run_episodes


class LineEnv(gym.Env):
    """A point starts at x0 in [-1, 1] (from the seed) and moves by the action each step.

    Success (terminating) when |x| < 0.05. ``info["mode"]`` reports which side it started on.
    """

    metadata = {"render_modes": ["rgb_array"]}

    def __init__(self, render_mode=None):
        self.observation_space = gym.spaces.Dict({"x": gym.spaces.Box(-10, 10, (1,), np.float32)})
        self.action_space = gym.spaces.Box(-1, 1, (1,), np.float32)
        self.render_mode = render_mode

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.x = float(self.np_random.uniform(-1, 1))
        self.start_side = int(self.x > 0)
        return self._obs(), {"is_success": False, "mode": -1}

    def step(self, action):
        self.x += float(action[0])
        success = abs(self.x) < 0.05
        return (
            self._obs(),
            float(success),
            success,
            False,
            {
                "is_success": success,
                "mode": self.start_side,
            },
        )

    def render(self):
        return np.full((4, 4, 3), 7, np.uint8)

    def _obs(self):
        return {"x": np.array([self.x], np.float32)}


def _envs(n_envs, max_steps=20, render_mode=None):
    return gym.vector.SyncVectorEnv(
        [
            lambda: gym.wrappers.TimeLimit(LineEnv(render_mode), max_episode_steps=max_steps)
            for _ in range(n_envs)
        ]
    )


def _start(seed):
    env = LineEnv()
    env.reset(seed=seed)
    return env.x


# a seed whose three episodes start away from the goal, so an idle policy never succeeds
FAR_SEED = next(s for s in range(100) if all(abs(_start(s + i)) > 0.05 for i in range(3)))


def homing_policy(obs, **_):
    """Steps 0.2 toward 0 (less when closer), from the latest observation; 2-step chunks."""
    x = obs["x"][:, -1, 0]
    step = -np.sign(x) * np.minimum(np.abs(x), 0.2)
    return np.repeat(step[:, None, None], 2, axis=1).astype(np.float32)


def idle_policy(obs, **_):
    return np.zeros((obs["x"].shape[0], 3, 1), np.float32)


@pytest.mark.parametrize("n_envs", [1, 3, 4])
def test_outcomes_do_not_depend_on_the_number_of_envs(n_envs):
    result = run_episodes(_envs(n_envs), homing_policy, n_episodes=7, n_obs_steps=2, seed=10)
    reference = run_episodes(_envs(1), homing_policy, n_episodes=7, n_obs_steps=2, seed=10)
    np.testing.assert_array_equal(result.seeds, np.arange(10, 17))
    np.testing.assert_array_equal(result.success, reference.success)
    np.testing.assert_array_equal(result.lengths, reference.lengths)
    assert result.success.all()
    expected_modes = [int(_start(s) > 0) for s in range(10, 17)]
    np.testing.assert_array_equal(result.modes, expected_modes)
    expected_lengths = [_reference_length(s) for s in range(10, 17)]
    np.testing.assert_array_equal(result.lengths, expected_lengths)


def _reference_length(seed, n_action_steps=2):
    """The same chunked control, simulated by hand on one env."""
    x, steps = _start(seed), 0
    while True:
        step = -np.sign(x) * min(abs(x), 0.2)
        for _ in range(n_action_steps):
            x = float(np.float32(x) + np.float32(step))
            steps += 1
            if abs(x) < 0.05:
                return steps


def test_truncated_episodes_fail_with_full_length():
    result = run_episodes(_envs(2, max_steps=5), idle_policy, 3, n_obs_steps=1, seed=FAR_SEED)
    assert not result.success.any()
    np.testing.assert_array_equal(result.lengths, [5, 5, 5])
    assert result.success_rate == 0.0
    assert len(result.inference_seconds) == 2 * 2  # two batches, ceil(5 / 3) policy calls each
    summary = summarize(result)
    assert summary["successes"] == 0 and summary["success_ci95"][0] == 0.0
    assert summary["failed_seeds"] == [FAR_SEED, FAR_SEED + 1, FAR_SEED + 2]


def test_videos_hold_one_frame_per_step_plus_the_first():
    result = run_episodes(
        _envs(2, max_steps=4, render_mode="rgb_array"), idle_policy, 3, 1, FAR_SEED, record_videos=2
    )
    assert len(result.videos) == 2
    assert all(video.shape == (5, 4, 4, 3) for video in result.videos)


def test_bad_policy_output_is_named():
    with pytest.raises(ValueError, match="expected \\(n_envs=2"):
        run_episodes(_envs(2), lambda obs, **_: np.zeros((2, 1)), 2, 1)


def test_observation_history_pads_with_the_first_frame():
    history = ObservationHistory(3)
    history.reset({"x": np.array([[1.0], [2.0]])})
    history.push({"x": np.array([[5.0], [6.0]])})
    stacked = history.stacked()["x"][..., 0]
    np.testing.assert_array_equal(stacked, [[1, 1, 5], [2, 2, 6]])


def test_each_episode_end_is_reported_once_with_its_outcome():
    ended = []
    result = run_episodes(_envs(2), homing_policy, 5, 1, seed=3, on_episode_end=ended.append)
    assert len(ended) == 5 and sum(ended) == int(result.success.sum())


def test_summary_lists_every_seed_and_modes_only_where_the_env_reports_them():
    with_modes = run_episodes(_envs(2), homing_policy, 3, 1, seed=5)
    summary = summarize(with_modes)
    assert summary["seeds"] == [5, 6, 7]
    assert sum(summary["mode_counts"].values()) == 3 and "-1" not in summary["mode_counts"]
    without = dataclasses.replace(with_modes, modes=np.full(3, -1))
    assert "mode_counts" not in summarize(without) and "success_by_mode" not in summarize(without)
