"""robosuite tasks behind our gymnasium interface: API, robomimic keys, determinism, state,
scripted experts, cameras. State-only envs keep the fast tests fast (about 100 steps/s)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import robosuite
from gymnasium.utils.env_checker import check_env
from robosuite.controllers import load_composite_controller_config

from sim.experts import TeleopStyle, make_expert

STATE_KEYS = {"robot0_eef_pos": 3, "robot0_eef_quat": 4, "robot0_gripper_qpos": 2}
OBJECT_DIMS = {"Lift": 10, "PickPlaceCan": 14, "NutAssemblySquare": 14}


@pytest.fixture(scope="module")
def lift():
    env = gym.make("robosuite/Lift-v0")
    yield env
    env.close()


def _run_expert(env, seed, style=None):
    expert = make_expert(env, style)
    obs, _ = env.reset(seed=seed)
    expert.reset(np.random.default_rng(seed))
    while True:
        obs, _, terminated, truncated, info = env.step(expert.act(obs))
        if terminated or truncated:
            return terminated, info["is_success"]


def test_check_env_lift(lift):
    check_env(lift.unwrapped, skip_render_check=True)


@pytest.mark.parametrize("task", ["PickPlaceCan", "NutAssemblySquare"])
def test_check_env_can_and_square(task):
    env = gym.make(f"robosuite/{task}-v0")
    check_env(env.unwrapped, skip_render_check=True)
    obs, _ = env.reset(seed=0)
    assert obs["object"].shape == (OBJECT_DIMS[task],)
    env.close()


def test_observation_keys_follow_robomimic(lift):
    obs, info = lift.reset(seed=0)
    assert info == {"is_success": False}
    assert set(obs) == {*STATE_KEYS, "object"}
    for key, dim in {**STATE_KEYS, "object": OBJECT_DIMS["Lift"]}.items():
        assert obs[key].shape == (dim,) and obs[key].dtype == np.float32, key
    assert lift.action_space.shape == (7,)
    assert lift.spec.max_episode_steps == 400


def test_seeded_reset_is_deterministic_and_seeds_differ(lift):
    first, _ = lift.reset(seed=3)
    lift.step(lift.action_space.sample())
    again, _ = lift.reset(seed=3)
    other, _ = lift.reset(seed=4)
    for key in first:
        np.testing.assert_array_equal(first[key], again[key])
    assert not np.allclose(first["object"][:3], other["object"][:3])  # cube placed elsewhere


def test_sim_state_round_trip(lift):
    """Restoring gives back the recorded observation exactly, and the arm replays to within a
    millimetre: the flat state omits the gripper's slew counter (see ``set_sim_state``) and
    MuJoCo's solver warm start."""
    lift.reset(seed=1)
    move = np.array([0.5, 0, -0.5, 0, 0, 0, -1], np.float32)
    for _ in range(3):
        obs, *_ = lift.step(move)
    state = lift.unwrapped.get_sim_state()
    next_obs, *_ = lift.step(move)
    for _ in range(5):
        lift.step(np.array([-1, 1, 1, 0, 0, 0, -1], np.float32))
    restored = lift.unwrapped.set_sim_state(state)
    for key in obs:
        np.testing.assert_array_equal(restored[key], obs[key], err_msg=key)
    replayed, *_ = lift.step(move)
    for key in ("robot0_eef_pos", "robot0_eef_quat", "object"):
        np.testing.assert_allclose(replayed[key], next_obs[key], atol=1e-3, err_msg=key)


def test_truncates_at_the_horizon_and_seeds_agree_across_instances(lift):
    env = gym.make("robosuite/Lift-v0", max_episode_steps=3)
    ours, _ = env.reset(seed=9)
    theirs, _ = lift.reset(seed=9)
    for key in ours:
        np.testing.assert_array_equal(ours[key], theirs[key], err_msg=key)
    env.reset(seed=0)
    for _ in range(3):
        _, _, terminated, truncated, info = env.step(np.zeros(7, np.float32))
    assert truncated and not terminated and not info["is_success"]
    env.close()


def test_lift_expert_succeeds_and_success_terminates(lift):
    for seed in range(2):
        assert _run_expert(lift, seed) == (True, True)
    style = TeleopStyle(action_noise_std=0.1, pause_prob=0.05)
    assert _run_expert(lift, 2, style) == (True, True)


@pytest.mark.slow
@pytest.mark.parametrize("task", ["PickPlaceCan", "NutAssemblySquare"])
def test_can_and_square_experts_succeed(task):
    env = gym.make(f"robosuite/{task}-v0")
    results = [_run_expert(env, seed) for seed in range(3)]
    results.append(_run_expert(env, 3, TeleopStyle(action_noise_std=0.05, pause_prob=0.02)))
    env.close()
    assert sum(success for _, success in results) >= 3, results


def test_camera_images_are_not_blank():
    cameras = ("agentview", "robot0_eye_in_hand")
    env = gym.make(
        "robosuite/Lift-v0",
        cameras=cameras,
        image_size=32,
        render_mode="rgb_array",
        render_size=64,
    )
    obs, _ = env.reset(seed=0)
    for cam in cameras:
        image = obs[f"{cam}_image"]
        assert image.shape == (32, 32, 3) and image.dtype == np.uint8
        assert image.std() > 10, cam
    assert env.render().shape == (64, 64, 3)
    assert env.observation_space.contains(obs)
    env.close()


def test_images_match_robosuite_renders_as_robomimic_stores_them():
    """With reflections on, our camera images equal robosuite's own offscreen renders flipped
    upright (what robomimic's env wrapper stores), pixel for pixel."""
    cameras = ("agentview", "robot0_eye_in_hand")
    theirs = robosuite.make(
        "Lift",
        robots="Panda",
        controller_configs=load_composite_controller_config(controller="BASIC", robot="Panda"),
        has_renderer=False,
        has_offscreen_renderer=True,
        use_camera_obs=True,
        camera_names=list(cameras),
        camera_heights=32,
        camera_widths=32,
        hard_reset=False,
        seed=0,
    )
    raw = theirs.reset()
    env = gym.make("robosuite/Lift-v0", cameras=cameras, image_size=32, reflections=True)
    obs = env.unwrapped.set_sim_state(theirs.sim.get_state().flatten())
    for cam in cameras:
        np.testing.assert_array_equal(obs[f"{cam}_image"], raw[f"{cam}_image"][::-1], err_msg=cam)
    env.close()
    theirs.close()
