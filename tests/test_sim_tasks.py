"""The PushT, PickLift, Stack and AroundObstacle tasks: API conformance, determinism, success
checks, and their scripted experts (sim/envs/register_tasks.py)."""

import subprocess
import sys

import gymnasium as gym
import mujoco
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import sim  # noqa: F401
import sim.envs.register_tasks  # noqa: F401
from sim.envs import multimodal, push_t, stack
from sim.envs.task_helpers import set_planar_pose
from sim.experts import TeleopStyle, make_expert

TASK_IDS = list(sim.envs.register_tasks.TASKS)
TELEOP = TeleopStyle(action_noise_std=0.05, pause_prob=0.02)
# check_env warns about the unbounded low-dimensional observation boxes, which are intended.
UNBOUNDED_OBS = "ignore:.*Box observation space (minimum|maximum) value:UserWarning"


def run_expert(env: gym.Env, seed: int, style: TeleopStyle = TELEOP) -> tuple[dict, object]:
    """One expert episode; returns the last info and the expert."""
    expert = make_expert(env, style)
    obs, info = env.reset(seed=seed)
    expert.reset(np.random.default_rng(seed))
    done = False
    while not done:
        obs, _, terminated, truncated, info = env.step(expert.act(obs))
        done = terminated or truncated
    return info, expert


def test_registering_imports_no_mujoco():
    code = "import sys, sim.envs.register_tasks; sys.exit('mujoco' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


@pytest.mark.filterwarnings(UNBOUNDED_OBS)
@pytest.mark.parametrize("env_id", TASK_IDS)
def test_check_env_state(env_id):
    env = gym.make(env_id, obs_mode="state")
    check_env(env.unwrapped, skip_render_check=True)
    assert env.spec.max_episode_steps > 0
    env.close()


@pytest.mark.filterwarnings(UNBOUNDED_OBS)
def test_rgb_observations_are_images():
    env = gym.make("robopolicy/PushT-v0", obs_mode="rgb", image_size=64)
    check_env(env.unwrapped, skip_render_check=True)
    obs, _ = env.reset(seed=3)
    for camera in ("scene", "wrist"):
        image = obs[f"{camera}_rgb"]
        assert image.shape == (64, 64, 3) and image.dtype == np.uint8
        assert image.std() > 10.0  # not blank
    env.close()


@pytest.mark.parametrize("env_id", TASK_IDS)
def test_same_seed_same_actions_same_observations(env_id):
    def rollout():
        env = gym.make(env_id, obs_mode="state")
        obs, _ = env.reset(seed=7)
        env.action_space.seed(11)
        trajectory = [obs]
        for _ in range(10):
            trajectory.append(env.step(env.action_space.sample())[0])
        env.close()
        return trajectory

    for first, second in zip(rollout(), rollout(), strict=True):
        for key in first:
            np.testing.assert_array_equal(first[key], second[key])


@pytest.mark.parametrize("env_id", TASK_IDS)
def test_different_seeds_place_objects_differently(env_id):
    env = gym.make(env_id, obs_mode="state")
    states = [env.reset(seed=seed)[0]["object_state"] for seed in (0, 1)]
    assert not np.allclose(states[0], states[1])
    env.close()


@pytest.mark.parametrize("env_id", TASK_IDS)
def test_sparse_reward_is_zero_before_success(env_id):
    env = gym.make(env_id, obs_mode="state", reward_type="sparse")
    env.reset(seed=0)
    _, reward, terminated, _, info = env.step(np.zeros(env.action_space.shape, np.float32))
    assert reward == 0.0 and not terminated and not info["is_success"]
    env.close()


def test_push_t_success_needs_position_and_yaw():
    env = push_t.PushTEnv(obs_mode="state")
    env.reset(seed=0)
    x, y, yaw = push_t.TARGET_POSE
    for offset, success in [((0, 0, 0), True), ((0.03, 0, 0), False), ((0, 0, 0.3), False)]:
        pose = np.array([x, y, yaw]) + offset
        set_planar_pose(env.model, env.data, "tblock_joint", [*pose[:2], 0.015], pose[2])
        mujoco.mj_forward(env.model, env.data)
        assert env.is_success() == success
    env.close()


def test_push_t_coverage_is_full_on_target():
    env = push_t.PushTEnv(obs_mode="state")
    env.reset(seed=0)
    x, y, yaw = push_t.TARGET_POSE
    set_planar_pose(env.model, env.data, "tblock_joint", [x, y, 0.015], yaw)
    mujoco.mj_forward(env.model, env.data)
    assert env.coverage() == pytest.approx(1.0)
    set_planar_pose(env.model, env.data, "tblock_joint", [x + 0.2, y, 0.015], yaw)
    mujoco.mj_forward(env.model, env.data)
    assert env.coverage() == 0.0
    env.close()


def test_push_t_goal_offset_is_one_value_per_pose_and_turns_smoothly():
    """object_to_goal must not depend on the quaternion's sign (a T turned past half a turn is
    simulated as -q) and must not jump anywhere on a full turn, unlike object_state."""
    env = push_t.PushTEnv(obs_mode="state")
    env.reset(seed=0)
    x, y, target_yaw = push_t.TARGET_POSE
    joint = env.model.joint("tblock_joint").qposadr[0]
    offsets = []
    for yaw in np.linspace(-np.pi, np.pi, 73):
        set_planar_pose(env.model, env.data, "tblock_joint", [x + 0.05, y - 0.02, 0.015], yaw)
        mujoco.mj_forward(env.model, env.data)
        offset = env.goal_offset()
        env.data.qpos[joint + 3 : joint + 7] *= -1.0  # the same pose, the other sign
        mujoco.mj_forward(env.model, env.data)
        np.testing.assert_allclose(env.goal_offset(), offset, atol=1e-9)
        np.testing.assert_allclose(offset[:2], [-0.05, 0.02], atol=1e-9)
        turn = target_yaw - yaw
        np.testing.assert_allclose(offset[2:], [np.sin(turn), np.cos(turn)], atol=1e-9)
        offsets.append(offset)
    assert np.abs(np.diff(offsets, axis=0)).max() < 0.1  # 5-degree steps: no jump
    obs = env._observation()
    assert obs["object_pos"].shape == (3,) and obs["object_to_goal"].shape == (4,)
    env.close()


def test_stack_success_needs_a_resting_on_b():
    env = stack.StackEnv(obs_mode="state")
    env.reset(seed=0)
    b = env.cube_pos("cube_b")
    on_b = b[2] + stack.CUBE_B_HALF_SIZE + stack.CUBE_A_HALF_SIZE
    set_planar_pose(env.model, env.data, "cube_a_joint", [b[0], b[1], on_b], 0.3)
    mujoco.mj_forward(env.model, env.data)
    assert env.is_success()
    set_planar_pose(env.model, env.data, "cube_a_joint", [b[0] + 0.1, b[1], 0.02], 0.3)
    mujoco.mj_forward(env.model, env.data)
    assert not env.is_success()
    env.close()


def test_pick_lift_needs_a_grasp():
    env = gym.make("robopolicy/PickLift-v0", obs_mode="state").unwrapped
    env.reset(seed=0)
    set_planar_pose(env.model, env.data, "cube_joint", [0.0, 0.0, 0.2], 0.0)
    mujoco.mj_forward(env.model, env.data)
    assert not env.is_grasped() and not env.is_success()  # high, but not held
    env.close()


@pytest.mark.parametrize("env_id", ["robopolicy/PickLift-v0", "robopolicy/Stack-v0"])
def test_grasping_experts_succeed(env_id):
    env = gym.make(env_id, obs_mode="state")
    for seed in range(3):
        info, _ = run_expert(env, seed)
        assert info["is_success"], f"seed {seed}"
    env.close()


def test_push_t_expert_succeeds():
    env = gym.make("robopolicy/PushT-v0", obs_mode="state")
    for seed in range(3):
        info, _ = run_expert(env, seed)
        assert info["is_success"], f"seed {seed}"
    env.close()


@pytest.mark.slow
def test_around_obstacle_modes_are_both_used_and_detected():
    env = gym.make("robopolicy/AroundObstacle-v0", obs_mode="state")
    modes = []
    for seed in range(20):
        info, expert = run_expert(env, seed)
        assert info["is_success"], f"seed {seed}"
        assert info["mode"] == expert.mode, f"seed {seed}"
        modes.append(expert.mode)
    assert set(modes) == {multimodal.LEFT, multimodal.RIGHT}
    env.close()


def test_around_obstacle_mode_split_is_configurable():
    env = gym.make("robopolicy/AroundObstacle-v0", obs_mode="state", expert_left_prob=1.0)
    expert = make_expert(env)
    for seed in range(5):
        env.reset(seed=seed)
        expert.reset(np.random.default_rng(seed))
        assert expert.mode == multimodal.LEFT
    _, info = env.reset(seed=0)
    assert info["mode"] == multimodal.UNDECIDED
    env.close()


def test_a_required_side_makes_only_that_mode_succeed():
    """The expert going left succeeds when left is required; going right it carries the cube
    onto the target all the same, yet fails, and the dense reward is 0 from the wrong pass on."""
    for side, expected in (("left", True), ("right", False)):
        env = gym.make(
            "robopolicy/AroundObstacle-v0",
            obs_mode="state",
            expert_left_prob=1.0,
            required_side=side,
            max_episode_steps=80,
        )
        expert = make_expert(env)
        obs, info = env.reset(seed=3)
        expert.reset(np.random.default_rng(3))
        rewards_after_pass = []
        done = False
        while not done:
            obs, reward, terminated, truncated, info = env.step(expert.act(obs))
            done = terminated or truncated
            if info["mode"] != multimodal.UNDECIDED:
                rewards_after_pass.append(reward)
        assert info["mode"] == multimodal.LEFT
        assert info["is_success"] is expected and terminated is expected
        on_target = np.linalg.norm(env.unwrapped.goal_offset()) < multimodal.SUCCESS_RADIUS
        assert on_target  # the cube was delivered either way
        # the step of the pass itself is scored before the pass is detected
        assert (max(rewards_after_pass[1:]) == 0.0) is not expected
        env.close()
    with pytest.raises(ValueError, match="required_side='up'"):
        gym.make("robopolicy/AroundObstacle-v0", obs_mode="state", required_side="up")
