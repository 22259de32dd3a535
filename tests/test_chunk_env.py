"""The chunked env of RL fine-tuning: histories, chunk rewards, termination vs truncation."""

import functools

import gymnasium as gym
import numpy as np
import pytest

import sim  # noqa: F401  (registers the robopolicy/* ids)
from robopolicy.eval.envs import make_env
from robopolicy.rl.chunk_env import ChunkedEnv, final_observations, make_chunked_vector_env


class CountingEnv(gym.Env):
    """obs = step count; reward = the action's first entry; success (terminated) at step
    ``succeed_at`` when given."""

    observation_space = gym.spaces.Dict({"count": gym.spaces.Box(0, 1000, (1,), np.float64)})
    action_space = gym.spaces.Box(-10, 10, (2,), np.float64)

    def __init__(self, succeed_at: int | None = None):
        self.succeed_at = succeed_at
        self.count = 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.count = 0
        return {"count": np.array([0.0])}, {}

    def step(self, action):
        self.count += 1
        success = self.succeed_at is not None and self.count >= self.succeed_at
        return (
            {"count": np.array([float(self.count)])},
            float(action[0]),
            success,
            False,
            {"is_success": success},
        )


def chunked(succeed_at=None, limit=None, n_obs_steps=2, act_steps=3):
    env = CountingEnv(succeed_at)
    if limit is not None:
        env = gym.wrappers.TimeLimit(env, limit)
    return ChunkedEnv(env, n_obs_steps=n_obs_steps, act_steps=act_steps)


def test_history_is_padded_at_reset_and_shifts_per_executed_step():
    env = chunked()
    obs, _ = env.reset(seed=0)
    np.testing.assert_array_equal(obs["count"], [[0.0], [0.0]])
    chunk = np.array([[1.0, 0], [2.0, 0], [3.0, 0]])
    obs, reward, terminated, truncated, info = env.step(chunk)
    np.testing.assert_array_equal(obs["count"], [[2.0], [3.0]])
    assert reward == 6.0 and not terminated and not truncated
    assert info == {"is_success": False, "env_steps": 3}
    assert env.observation_space["count"].shape == (2, 1)
    assert env.action_space.shape == (3, 2)


def test_termination_stops_the_chunk_and_is_not_a_truncation():
    env = chunked(succeed_at=5)
    env.reset(seed=0)
    env.step(np.ones((3, 2)))
    obs, reward, terminated, truncated, info = env.step(np.ones((3, 2)))
    assert (terminated, truncated) == (True, False)
    assert info["env_steps"] == 2 and info["is_success"] and reward == 2.0
    np.testing.assert_array_equal(obs["count"], [[4.0], [5.0]])


def test_time_limit_is_a_truncation_not_a_termination():
    env = chunked(limit=4)
    env.reset(seed=0)
    env.step(np.ones((3, 2)))
    _, reward, terminated, truncated, info = env.step(np.ones((3, 2)))
    assert (terminated, truncated) == (False, True)
    assert info["env_steps"] == 1 and reward == 1.0


def test_wrong_chunk_shape_is_one_clear_error():
    env = chunked()
    env.reset(seed=0)
    with pytest.raises(ValueError, match="act_steps=3"):
        env.step(np.ones((2, 2)))


def test_same_step_autoreset_returns_the_new_episode_and_keeps_the_final_observation():
    make = functools.partial(chunked, limit=4)
    envs = gym.vector.SyncVectorEnv([make, make], autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)
    envs.reset(seed=[0, 1])
    envs.step(np.ones((2, 3, 2)))
    obs, _, terminated, truncated, info = envs.step(np.ones((2, 3, 2)))
    assert truncated.all() and not terminated.any()
    np.testing.assert_array_equal(obs["count"][0], [[0.0], [0.0]])  # the next episode's start
    ended = terminated | truncated
    final = final_observations(obs, info, ended)
    np.testing.assert_array_equal(final["count"][0], [[3.0], [4.0]])  # where the episode ended
    np.testing.assert_array_equal(obs["count"][0], [[0.0], [0.0]])  # obs itself untouched


def test_chunked_pushcube_matches_stepping_the_plain_env():
    kwargs = {"obs_mode": "state"}
    plain = make_env("robopolicy/PushCube-v0", kwargs, max_episode_steps=100)
    envs = make_chunked_vector_env(
        "robopolicy/PushCube-v0",
        kwargs,
        2,
        n_obs_steps=2,
        act_steps=4,
        max_episode_steps=100,
        asynchronous=False,
    )
    try:
        obs, _ = envs.reset(seed=[7, 8])
        first, _ = plain.reset(seed=7)
        np.testing.assert_allclose(obs["eef_pos"][0, 0], first["eef_pos"])
        rng = np.random.default_rng(0)
        chunk = rng.uniform(-0.5, 0.5, size=(2, 4, plain.action_space.shape[0]))
        obs, reward, *_ = envs.step(chunk)
        expected_reward, history = 0.0, []
        for action in chunk[0]:
            step_obs, r, *_ = plain.step(action)
            expected_reward += r
            history.append(step_obs)
        assert reward[0] == pytest.approx(expected_reward)
        np.testing.assert_allclose(obs["object_state"][0, -1], history[-1]["object_state"])
        np.testing.assert_allclose(obs["object_state"][0, 0], history[-2]["object_state"])
    finally:
        envs.close()
        plain.close()


def test_worker_processes_step_pushcube_exactly_as_in_process():
    """The RL loops' envs for algo.n_envs > 1 run in worker processes (AsyncVectorEnv): from
    the same seeds and chunks, every transition is the in-process one's, autoresets included."""
    rng = np.random.default_rng(0)
    chunks = rng.uniform(-1, 1, size=(5, 2, 4, 7))
    transitions = {}
    for asynchronous in (False, True):
        envs = make_chunked_vector_env(
            "robopolicy/PushCube-v0",
            {"obs_mode": "state"},
            2,
            n_obs_steps=2,
            act_steps=4,
            env_modules=["sim"],  # imported in each worker process
            max_episode_steps=10,  # 3 chunks: an autoreset within the 5 steps
            asynchronous=asynchronous,
        )
        try:
            assert isinstance(envs, gym.vector.AsyncVectorEnv) == asynchronous
            steps = [envs.reset(seed=[3, 4])[0]]
            for chunk in chunks:
                obs, reward, terminated, truncated, info = envs.step(chunk)
                ended = terminated | truncated
                steps.append((obs, reward, ended, final_observations(obs, info, ended)))
            transitions[asynchronous] = steps
        finally:
            envs.close()
    in_process, workers = transitions[False], transitions[True]
    assert any(step[2].any() for step in in_process[1:])  # an episode ended and was reset
    np.testing.assert_array_equal(in_process[0]["object_state"], workers[0]["object_state"])
    for (obs, reward, ended, final), (obs_w, reward_w, ended_w, final_w) in zip(
        in_process[1:], workers[1:], strict=True
    ):
        np.testing.assert_array_equal(reward, reward_w)
        np.testing.assert_array_equal(ended, ended_w)
        for key in obs:
            np.testing.assert_array_equal(obs[key], obs_w[key])
            np.testing.assert_array_equal(final[key], final_w[key])
