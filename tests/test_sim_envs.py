"""The tabletop envs: gymnasium API, determinism, raw state, rendering, action spaces, errors."""

import os

os.environ.setdefault("MUJOCO_GL", "egl")

import gymnasium as gym  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from gymnasium.utils.env_checker import check_env  # noqa: E402

import sim  # noqa: E402

OUR_ENV_IDS = [sim.PUSH_CUBE_ID]
# Low-dimensional observations are unbounded Boxes on purpose; check_env warns about it.
UNBOUNDED_OK = pytest.mark.filterwarnings("ignore:.*Box observation space m.*:UserWarning")


def rollout(env: gym.Env, seed: int, n_steps: int) -> tuple[list[dict], list[np.ndarray]]:
    """Observations and sim states under actions drawn from a seeded action space."""
    obs, _ = env.reset(seed=seed)
    env.action_space.seed(seed)
    observations, states = [obs], [env.unwrapped.get_sim_state()]
    for _ in range(n_steps):
        obs, *_ = env.step(env.action_space.sample())
        observations.append(obs)
        states.append(env.unwrapped.get_sim_state())
    return observations, states


@UNBOUNDED_OK
@pytest.mark.parametrize("env_id", OUR_ENV_IDS)
def test_check_env_passes_state_only(env_id):
    env = gym.make(env_id, obs_mode="state")
    check_env(env.unwrapped, skip_render_check=True)


@UNBOUNDED_OK
@pytest.mark.parametrize("env_id", OUR_ENV_IDS)
def test_check_env_passes_with_images(env_id):
    env = gym.make(env_id, obs_mode="rgbd", image_size=32, render_mode="rgb_array")
    check_env(env.unwrapped)


def test_observation_keys_shapes_and_dtypes():
    env = gym.make(sim.PUSH_CUBE_ID, obs_mode="rgb", image_size=(48, 64))
    obs, info = env.reset(seed=0)
    assert set(obs) == {
        "joint_pos",
        "eef_pos",
        "eef_quat",
        "gripper_pos",
        "object_state",
        "object_pos",
        "eef_to_object",
        "object_to_goal",
        "scene_rgb",
        "wrist_rgb",
    }
    assert obs["joint_pos"].shape == (7,) and obs["joint_pos"].dtype == np.float32
    assert obs["eef_pos"].shape == (3,)
    assert obs["eef_quat"].shape == (4,)
    assert np.isclose(np.linalg.norm(obs["eef_quat"]), 1.0, atol=1e-5)
    assert obs["gripper_pos"].shape == (2,)
    assert obs["object_state"].shape == (9,) and obs["object_state"].dtype == np.float32
    # Positions without the cube's orientation: cube xyz, target xy; and cube minus hand.
    state = obs["object_state"]
    np.testing.assert_array_equal(obs["object_pos"], np.concatenate([state[:3], state[7:]]))
    np.testing.assert_allclose(obs["eef_to_object"], state[:3] - obs["eef_pos"], atol=1e-7)
    np.testing.assert_allclose(obs["object_to_goal"], state[7:] - state[:2], atol=1e-7)
    assert obs["scene_rgb"].shape == (48, 64, 3) and obs["scene_rgb"].dtype == np.uint8
    assert info["is_success"] is False
    assert env.observation_space.contains(obs)


def test_state_only_env_never_renders():
    env = gym.make(sim.PUSH_CUBE_ID, obs_mode="state", cameras=["scene", "wrist"])
    obs, _ = env.reset(seed=0)
    env.step(env.action_space.sample())
    assert not any(key.endswith("_rgb") for key in obs)
    assert env.unwrapped._camera_renderer._renderer is None


def test_same_seed_same_trajectory_and_images():
    first = rollout(gym.make(sim.PUSH_CUBE_ID, image_size=32), seed=7, n_steps=5)
    second = rollout(gym.make(sim.PUSH_CUBE_ID, image_size=32), seed=7, n_steps=5)
    for obs_a, obs_b in zip(first[0], second[0], strict=True):
        for key in obs_a:
            np.testing.assert_array_equal(obs_a[key], obs_b[key], err_msg=key)
    np.testing.assert_array_equal(np.stack(first[1]), np.stack(second[1]))


def test_different_seeds_place_objects_differently():
    env = gym.make(sim.PUSH_CUBE_ID, obs_mode="state")
    a = env.reset(seed=0)[0]["object_state"]
    b = env.reset(seed=1)[0]["object_state"]
    assert not np.allclose(a, b)


def test_sim_state_roundtrip_reproduces_steps_and_images():
    env = gym.make(sim.PUSH_CUBE_ID, image_size=32)
    env.reset(seed=3)
    for _ in range(3):
        env.step(env.action_space.sample())
    task = env.unwrapped
    state = task.get_sim_state()
    assert state.dtype == np.float64 and state.ndim == 1
    frame = task.observation()
    action = env.action_space.sample()
    after = env.step(action)[0]

    env.reset(seed=99)  # somewhere else entirely
    task.set_sim_state(state)
    restored = task.observation()
    for key in frame:
        np.testing.assert_array_equal(frame[key], restored[key], err_msg=key)
    replayed = env.step(action)[0]
    for key in after:
        np.testing.assert_array_equal(after[key], replayed[key], err_msg=key)


def test_both_cameras_render_non_blank_images():
    env = gym.make(sim.PUSH_CUBE_ID, obs_mode="rgbd", render_mode="rgb_array")
    obs, _ = env.reset(seed=0)
    for camera in ("scene", "wrist"):
        image = obs[f"{camera}_rgb"]
        assert image.std() > 10, f"{camera} image is flat"
        assert len(np.unique(image.reshape(-1, 3), axis=0)) > 50, f"{camera} image is blank"
        depth = obs[f"{camera}_depth"]
        assert depth.shape == (96, 96, 1) and np.all(np.isfinite(depth)) and depth.max() > 0
    frame = env.render()
    assert frame.shape == (256, 256, 3) and frame.std() > 10


def test_time_limit_truncates_and_success_terminates():
    env = gym.make(sim.PUSH_CUBE_ID, obs_mode="state", max_episode_steps=3)
    env.reset(seed=0)
    hold = np.zeros(7, dtype=np.float32)
    results = [env.step(hold) for _ in range(3)]
    assert [r[2] for r in results] == [False, False, False]  # never terminated
    assert [r[3] for r in results] == [False, False, True]  # truncated at the limit

    env.reset(seed=0)
    task = env.unwrapped
    task.data.mocap_pos[0, :2] = task.cube_pose()[0][:2]  # put the target under the cube
    _, reward, terminated, truncated, info = env.step(hold)
    assert terminated and not truncated and info["is_success"] and reward == 1.0


def test_sparse_reward_is_zero_until_success():
    env = gym.make(sim.PUSH_CUBE_ID, obs_mode="state", reward_type="sparse")
    env.reset(seed=0)
    assert env.step(env.action_space.sample())[1] == 0.0


@pytest.mark.parametrize("action_space", ["ee_delta", "ee_pose", "joint_pos"])
def test_action_spaces_move_the_hand_where_asked(action_space):
    env = gym.make(sim.PUSH_CUBE_ID, obs_mode="state", action_space=action_space)
    env.reset(seed=0)
    task = env.unwrapped
    start, _ = task.eef_pose()
    goal = start + np.array([0.05, -0.04, -0.05])
    for _ in range(15):
        env.step(task.action_for_pose(goal, task.home_quat, -1.0))
    reached, quat = task.eef_pose()
    assert np.linalg.norm(reached - goal) < 0.01
    assert abs(abs(float(quat @ task.home_quat)) - 1.0) < 1e-3  # still pointing down


def test_gripper_command_opens_and_closes():
    env = gym.make(sim.PUSH_CUBE_ID, obs_mode="state")
    env.reset(seed=0)
    hold_open = np.zeros(7, dtype=np.float32)
    hold_open[-1] = -1.0
    opened = env.step(hold_open)[0]["gripper_pos"]
    for _ in range(5):
        closed = env.step(-hold_open)[0]["gripper_pos"]
    assert np.abs(opened).sum() > 0.06 and np.abs(closed).sum() < 0.01


def test_ur5e_builds_and_holds_still():
    env = gym.make(sim.PUSH_CUBE_ID, obs_mode="state", robot="ur5e")
    obs, _ = env.reset(seed=0)
    assert obs["joint_pos"].shape == (6,)
    start = obs["eef_pos"]
    for _ in range(5):
        obs = env.step(np.zeros(7, dtype=np.float32))[0]
    assert np.linalg.norm(obs["eef_pos"] - start) < 0.01


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"cameras": ["scene", "overhead"]}, "cameras='overhead'"),
        ({"action_space": "ee_velocity"}, "action_space='ee_velocity'"),
        ({"robot": "kuka"}, "robot='kuka'"),
        ({"obs_mode": "pixels"}, "obs_mode='pixels'"),
        ({"control_hz": 30}, "control_hz=30"),
    ],
)
def test_bad_kwargs_give_one_clear_error(kwargs, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")) as error:
        gym.make(sim.PUSH_CUBE_ID, **kwargs)
    assert "expected" in str(error.value) or "must" in str(error.value)


def test_set_sim_state_rejects_wrong_size():
    env = gym.make(sim.PUSH_CUBE_ID, obs_mode="state")
    env.reset(seed=0)
    with pytest.raises(ValueError, match="sim state has shape"):
        env.unwrapped.set_sim_state(np.zeros(3))


@pytest.mark.slow
def test_async_vector_env_renders_in_workers():
    envs = gym.vector.AsyncVectorEnv(
        [lambda: gym.make(sim.PUSH_CUBE_ID, image_size=32) for _ in range(2)],
        context="spawn",
    )
    try:
        obs, _ = envs.reset(seed=[0, 1])
        assert obs["scene_rgb"].shape == (2, 32, 32, 3)
        assert obs["scene_rgb"].std() > 10
        assert not np.array_equal(obs["object_state"][0], obs["object_state"][1])
        obs, *_ = envs.step(envs.action_space.sample())
        assert obs["wrist_rgb"].shape == (2, 32, 32, 3)
    finally:
        envs.close()
