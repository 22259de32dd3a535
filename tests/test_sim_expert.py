"""The PushCube scripted expert: succeeds, in every action space, with and without teleop style."""

import os

os.environ.setdefault("MUJOCO_GL", "egl")

import gymnasium as gym  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

import sim  # noqa: E402
from sim.experts import TeleopNoise, TeleopStyle, make_expert  # noqa: E402
from sim.rollout import record_expert_episode  # noqa: E402


def success_rate(seeds, style=None, **env_kwargs) -> float:
    env = gym.make(sim.PUSH_CUBE_ID, obs_mode="state", **env_kwargs)
    expert = make_expert(env, style)
    results = [record_expert_episode(env, expert, seed).success for seed in seeds]
    return float(np.mean(results))


def test_expert_succeeds_on_a_few_seeds():
    assert success_rate(range(5)) == 1.0


@pytest.mark.parametrize("action_space", ["ee_pose", "joint_pos"])
def test_expert_works_in_other_action_spaces(action_space):
    assert success_rate(range(2), action_space=action_space) == 1.0


def test_expert_drives_the_ur5e_too():
    assert success_rate(range(2), robot="ur5e") == 1.0


def test_eef_quat_stays_in_the_home_hemisphere_during_a_demo():
    env = gym.make(sim.PUSH_CUBE_ID, obs_mode="state")
    episode = record_expert_episode(env, make_expert(env), seed=1)
    quats = episode.steps["eef_quat"]
    assert np.all(quats @ env.unwrapped.home_quat > 0.5)
    assert np.abs(np.diff(quats, axis=0)).max() < 0.3  # no sign flips


def test_expert_with_teleop_noise_and_pauses_still_succeeds():
    style = TeleopStyle(action_noise_std=0.1, pause_prob=0.1)
    assert success_rate(range(3), style) == 1.0


def test_unknown_env_id_has_no_expert():
    env = gym.make("CartPole-v1")
    with pytest.raises(KeyError, match="no scripted expert registered for env id 'CartPole-v1'"):
        make_expert(env)


def test_recorded_episode_is_time_aligned():
    env = gym.make(sim.PUSH_CUBE_ID, obs_mode="state")
    episode = record_expert_episode(env, make_expert(env), seed=0)
    steps = episode.steps
    length = len(steps["action"])
    assert all(len(values) == length for values in steps.values())
    assert steps["action"].dtype == np.float32 and steps["sim_state"].dtype == np.float64
    assert steps["done"][-1] and not steps["done"][:-1].any()
    assert episode.success and steps["reward"][-1] == 1.0
    # the first stored state is the reset state: restoring it gives the first observation
    env.unwrapped.set_sim_state(steps["sim_state"][0])
    np.testing.assert_array_equal(env.unwrapped.observation()["eef_pos"], steps["eef_pos"][0])


def test_teleop_noise_pauses_hold_and_noise_spares_the_gripper():
    space = gym.spaces.Box(-1.0, 1.0, (3,), dtype=np.float32)
    always_pause = TeleopNoise(TeleopStyle(pause_prob=1.0, pause_steps=(2, 2)), space)
    always_pause.reset(np.random.default_rng(0))
    hold = np.array([0.0, 0.0, 1.0], dtype=np.float32)
    assert np.array_equal(always_pause(np.ones(3), hold), hold)

    noisy = TeleopNoise(TeleopStyle(action_noise_std=0.5), space)
    noisy.reset(np.random.default_rng(0))
    actions = np.stack([noisy(np.array([0.0, 0.0, 1.0]), hold) for _ in range(50)])
    assert actions[:, 0].std() > 0.1 and np.all(actions[:, 2] == 1.0)
    assert np.all(np.abs(actions) <= 1.0)


@pytest.mark.slow
def test_expert_success_rate_over_100_seeds():
    """The acceptance bar for the default task: >= 95% over 100 seeded episodes."""
    assert success_rate(range(100)) >= 0.95


@pytest.mark.slow
def test_expert_success_rate_with_teleop_style():
    style = TeleopStyle(action_noise_std=0.1, pause_prob=0.05)
    assert success_rate(range(30), style) >= 0.9
