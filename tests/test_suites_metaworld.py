"""Meta-World tasks behind our gymnasium interface: API, determinism, state, experts, cameras."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from sim.experts import TeleopStyle, make_expert

# The tasks with a config of their own (conf/task/mw_*.yaml); all 50 by name:
# tests/test_metaworld_by_name.py.
TASKS = ("reach-v3", "push-v3", "pick-place-v3", "drawer-open-v3", "button-press-topdown-v3")
IDS = [f"metaworld/{task}" for task in TASKS]


def _run_expert(env, seed, style=None):
    expert = make_expert(env, style)
    obs, _ = env.reset(seed=seed)
    expert.reset(np.random.default_rng(seed))
    while True:
        obs, _, terminated, truncated, info = env.step(expert.act(obs))
        if terminated or truncated:
            return terminated, info["is_success"]


@pytest.mark.parametrize("env_id", IDS)
def test_check_env(env_id):
    env = gym.make(env_id)
    check_env(env.unwrapped, skip_render_check=True)
    obs, _ = env.reset(seed=0)
    assert obs["state"].shape == (39,) and obs["state"].dtype == np.float32
    np.testing.assert_array_equal(obs["agent_pos"], obs["state"][:4])  # hand xyz, gripper
    assert env.action_space.shape == (4,)
    env.close()


def test_seeded_reset_is_deterministic_and_seeds_differ():
    env = gym.make("metaworld/push-v3")
    first, _ = env.reset(seed=5)
    env.step(env.action_space.sample())
    again, _ = env.reset(seed=5)
    other, _ = env.reset(seed=6)
    np.testing.assert_array_equal(first["state"], again["state"])
    assert not np.allclose(first["state"][-3:], other["state"][-3:])  # a different goal
    env.close()


def test_sim_state_round_trip():
    env = gym.make("metaworld/pick-place-v3")
    env.reset(seed=1)
    for _ in range(5):
        env.step(np.array([0.5, 0.5, -0.5, 1.0], np.float32))
    state = env.unwrapped.get_sim_state()
    obs, *_ = env.step(np.zeros(4, np.float32))
    for _ in range(10):
        env.step(np.array([-1.0, 0.0, 1.0, -1.0], np.float32))
    restored = env.unwrapped.set_sim_state(state)
    replayed, *_ = env.step(np.zeros(4, np.float32))
    np.testing.assert_allclose(replayed["state"], obs["state"], atol=1e-6)
    assert restored["state"].shape == (39,)
    env.close()


@pytest.mark.parametrize("env_id", IDS)
def test_expert_solves_the_task(env_id):
    env = gym.make(env_id)
    results = [_run_expert(env, seed) for seed in range(3)]
    env.close()
    assert sum(success for _, success in results) >= 2, results
    assert all(terminated == success for terminated, success in results)


def test_noisy_expert_still_succeeds():
    env = gym.make("metaworld/reach-v3")
    style = TeleopStyle(action_noise_std=0.1, pause_prob=0.05)
    assert _run_expert(env, seed=0, style=style) == (True, True)
    env.close()


def test_truncates_at_the_horizon_without_success():
    env = gym.make("metaworld/drawer-open-v3", max_episode_steps=4)
    env.reset(seed=0)
    for _ in range(4):
        _, _, terminated, truncated, info = env.step(np.zeros(4, np.float32))
    assert truncated and not terminated and not info["is_success"]
    env.close()


def test_camera_images_are_not_blank():
    env = gym.make(
        "metaworld/reach-v3",
        cameras=("corner2", "gripperPOV"),
        image_size=48,
        render_mode="rgb_array",
    )
    obs, _ = env.reset(seed=0)
    for key in ("corner2_image", "gripperPOV_image"):
        image = obs[key]
        assert image.shape == (48, 48, 3) and image.dtype == np.uint8
        assert image.std() > 10, key
    assert env.render().shape == (256, 256, 3)
    assert env.observation_space.contains(obs)
    env.close()


def test_horizon_can_exceed_metaworlds_own_limit():
    env = gym.make("metaworld/reach-v3", max_episode_steps=502, terminate_on_success=False)
    env.reset(seed=0)
    for _ in range(502):
        _, _, terminated, truncated, _ = env.step(np.zeros(4, np.float32))
    assert truncated and not terminated
    env.close()
