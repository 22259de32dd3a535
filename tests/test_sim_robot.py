"""The sim robot and RobotIO on a real MuJoCo world stepping in real time.

Timing tolerances allow for a loaded 2-core machine: the arm must reach a target around its
target time (not much sooner, not much later). How fast simulated time runs against wall time
is a benchmark (bench/bench_realtime.py); here it only must not run ahead, and must lag only
through the schedule restarts the world counts.
"""

from __future__ import annotations

import time

import gymnasium as gym
import numpy as np
import pytest

import sim
from hardware.interfaces import ArmCommand
from hardware.robot_io import RobotIO
from hardware.safety import GripperGuard, SafetyLayer
from hardware.sim_robot import MAX_LAG, make_sim_robot
from sim.controllers.arm_controller import compose

STATE_META = {
    "obs": {
        key: {"shape": [size], "type": "low_dim"}
        for key, size in [
            ("joint_pos", 7),
            ("eef_pos", 3),
            ("eef_quat", 4),
            ("gripper_pos", 2),
            ("object_state", 9),
        ]
    },
    "action": {"shape": [7]},
}


@pytest.fixture(scope="module")
def robot():
    robot = make_sim_robot(sim.PUSH_CUBE_ID, {"obs_mode": "state"}, seed=0)
    yield robot
    robot.close()


def follow(arm, command: ArmCommand, until: float) -> list[tuple[float, object]]:
    """Stream ``command`` every 50 ms until its target time (as a policy would), then sample the
    state until ``until``; returns (time, state) samples every ~10 ms."""
    samples, last_sent = [], -1.0
    while (now := time.monotonic()) < until:
        if now < command.target_time and now - last_sent >= 0.05:
            arm.send_command(command)
            last_sent = now
        samples.append((now, arm.read_state()))
        time.sleep(0.01)
    return samples


def progress_at(samples, moment: float, start, target, value) -> float:
    """Fraction of the way from ``start`` to ``target`` at the sample nearest ``moment``."""
    _, state = min(samples, key=lambda sample: abs(sample[0] - moment))
    return float(np.linalg.norm(value(state) - start) / np.linalg.norm(target - start))


def test_arm_is_always_behind_a_running_safety_layer(robot):
    layer = robot.arms["arm"]
    assert isinstance(layer, SafetyLayer) and layer.forward_kinematics is not None
    assert isinstance(robot.grippers["gripper"], GripperGuard)
    robot.reset_episode(0)
    layer.send_command(ArmCommand.joints(layer.read_state().joint_positions, time.monotonic()))
    deadline = time.monotonic() + 2.0  # nobody ticks: only the layer's own watchdog can hold
    while layer.mode == "active" and time.monotonic() < deadline:
        time.sleep(0.01)
    assert layer.mode == "holding"


def test_sim_arm_reaches_a_pose_target_at_its_target_time(robot):
    robot.reset_episode(1)
    arm = robot.arms["arm"]
    start = arm.read_state()
    target = start.ee_position + np.array([0.04, 0.02, -0.03])
    t0 = time.monotonic()
    command = ArmCommand.pose(target, start.ee_quat, t0 + 0.5)
    samples = follow(arm, command, t0 + 0.8)

    def hand(state):
        return state.ee_position

    assert progress_at(samples, t0 + 0.15, start.ee_position, target, hand) < 0.55
    assert 0.25 < progress_at(samples, t0 + 0.25, start.ee_position, target, hand) < 0.75
    assert progress_at(samples, t0 + 0.5, start.ee_position, target, hand) > 0.8
    final = samples[-1][1]
    assert np.linalg.norm(final.ee_position - target) < 0.005
    assert abs(final.ee_quat @ start.ee_quat) > 0.999


def test_sim_arm_reaches_a_joint_target_at_its_target_time(robot):
    robot.reset_episode(2)
    arm = robot.arms["arm"]
    start = arm.read_state().joint_positions
    target = start + np.array([0.2, 0.0, 0.0, -0.15, 0.0, 0.1, 0.0])
    t0 = time.monotonic()
    samples = follow(arm, ArmCommand.joints(target, t0 + 0.5), t0 + 0.8)

    def joints(state):
        return state.joint_positions

    assert progress_at(samples, t0 + 0.15, start, target, joints) < 0.55
    assert 0.25 < progress_at(samples, t0 + 0.25, start, target, joints) < 0.75
    assert progress_at(samples, t0 + 0.5, start, target, joints) > 0.8
    assert np.abs(samples[-1][1].joint_positions - target).max() < 0.01


def _ticks_and_sim_time(world) -> tuple[int, float]:
    """The world's tick count and simulated time, read between the same two ticks."""
    for _ in range(1000):
        ticks = world.timing()["ticks"]
        sim_time = world.task_info()["sim_time"]
        if world.timing()["ticks"] == ticks:
            return ticks, sim_time
    raise AssertionError("no two consecutive reads between the same ticks")


def test_simulated_time_is_one_control_period_per_tick_and_lags_only_by_counted_resets(robot):
    """How close to wall time the world runs on this machine is measured by
    bench/bench_realtime.py; here, what holds on any machine, loaded or not: the world ticks on
    its own; each tick is one control period of simulated time; it never runs ahead of the
    wall clock (in a window, it catches up at most the ``MAX_LAG`` it had at the start); and it
    falls more than ``MAX_LAG`` behind only through schedule restarts, which ``timing()``
    counts."""
    world, period = robot.task, robot.task.control_period
    resets_before = world.timing()["late_resets"]
    wall_a = time.monotonic()
    ticks_before, sim_before = _ticks_and_sim_time(world)
    wall_b = time.monotonic()
    time.sleep(0.5)
    wall_c = time.monotonic()
    ticks_after, sim_after = _ticks_and_sim_time(world)
    wall_d = time.monotonic()
    deadline = wall_d + 5.0  # let a thread starved at wall_d wake (and count its restart)
    while world.timing()["ticks"] < ticks_after + 2 and time.monotonic() < deadline:
        time.sleep(period)
    resets = world.timing()["late_resets"] - resets_before
    simulated, ticks = sim_after - sim_before, ticks_after - ticks_before
    assert ticks > 0, "nobody sent a command: the world must still tick"
    assert simulated == pytest.approx(ticks * period, rel=1e-9)
    # never ahead of the wall clock: within a window the world may only catch up a lag it had at
    # the window's start, at most MAX_LAG (a later tick restarts the schedule instead)
    assert simulated <= (wall_d - wall_a) + MAX_LAG + period, (simulated, wall_d - wall_a)
    if resets == 0:
        assert simulated >= (wall_c - wall_b) - MAX_LAG - 2 * period, (simulated, wall_c - wall_b)


def test_reset_episode_gives_the_env_reset_state(robot):
    env = gym.make(sim.PUSH_CUBE_ID, obs_mode="state")
    io = RobotIO(robot, STATE_META, "ee_delta")
    for seed in (3, 4):
        expected, _ = env.reset(seed=seed)
        robot.reset_episode(seed)
        obs, times = io.observe()
        for key in STATE_META["obs"]:  # the world has run a few ms since: the cube settles
            np.testing.assert_allclose(obs[key], expected[key], atol=1e-3, err_msg=key)
        assert all(time.monotonic() - 0.1 < stamp <= time.monotonic() for stamp in times.values())
    assert robot.task_info()["is_success"] is False and robot.task_info()["seed"] == 4


def test_robot_io_observation_matches_the_env_observation():
    kwargs = {"obs_mode": "rgb", "cameras": ["scene", "wrist"], "image_size": 64}
    env = gym.make(sim.PUSH_CUBE_ID, **kwargs)
    expected, _ = env.reset(seed=5)
    with make_sim_robot(sim.PUSH_CUBE_ID, kwargs, seed=5) as robot:
        meta = {
            "obs": {
                key: {"shape": list(value.shape), "type": "rgb" if value.ndim == 3 else "low_dim"}
                for key, value in expected.items()
            },
            "action": {"shape": [7]},
        }
        obs, times = RobotIO(robot, meta, "ee_delta").observe()
        frame = robot.cameras["wrist"].read()
    assert set(obs) == set(expected) == set(times)
    for key, value in expected.items():
        assert obs[key].shape == value.shape and obs[key].dtype == value.dtype, key
        difference = np.abs(obs[key].astype(np.float64) - value)
        limit = 1.0 if value.dtype == np.uint8 else 1e-3  # mean intensity; cube settling
        assert difference.mean() < limit, key
    assert frame.capture_time <= frame.receive_time <= time.monotonic()


def test_ee_delta_actions_move_the_arm_as_the_env_does(robot):
    env = gym.make(sim.PUSH_CUBE_ID, obs_mode="state")
    env.reset(seed=6)
    actions = [
        np.array([1.0, 0.0, 0.0, 0.0, 0.0, 0.0, -1.0]),
        np.array([0.0, 1.0, -0.5, 0.0, 0.0, 0.5, -1.0]),
        np.array([-0.5, -0.5, 0.0, 0.3, 0.0, 0.0, 1.0]),
    ] * 2
    expected = [env.step(action)[0] for action in actions]
    robot.reset_episode(6)
    io = RobotIO(robot, STATE_META, "ee_delta")
    start = io.observe()[0]["eef_pos"]
    t0 = time.monotonic()
    reached = []
    for i, action in enumerate(actions):  # 10 Hz, each action due at the next tick
        io.act(action, t0 + 0.1 * (i + 1))
        time.sleep(max(0.0, t0 + 0.1 * (i + 1) - time.monotonic()))
        reached.append(io.observe()[0])
    for got, want in zip(reached, expected, strict=True):
        assert np.linalg.norm(got["eef_pos"] - want["eef_pos"]) < 0.03
        moved, env_moved = got["eef_pos"] - start, want["eef_pos"] - start
        assert moved @ env_moved / np.linalg.norm(moved) / np.linalg.norm(env_moved) > 0.9
        assert np.abs(got["gripper_pos"] - want["gripper_pos"]).max() < 0.01
    assert robot.arms["arm"].counts["rejected"] == 0
    sent = io.act(np.array([0.0, 0.0, 5.0, 0.0, 0.0, 0.0, 3.0]), time.monotonic() + 0.1)
    assert sent.arm_forwarded and sent.arm.ee_position[2] <= robot.info["workspace_high"][2]
    assert sent.gripper.opening == 0.0 and sent.vector()[-1] == 0.0  # +1 (clipped): closed
    np.testing.assert_array_equal(sent.vector()[:3], sent.arm.ee_position)


def test_ee_pose_and_joint_pos_actions_reach_their_targets(robot):
    robot.reset_episode(7)
    pose_io = RobotIO(robot, STATE_META, "ee_pose")
    start = pose_io.observe()[0]
    target = start["eef_pos"] + np.array([0.03, -0.02, 0.02])
    for io, action in (
        (pose_io, np.concatenate([target, [0.0, 0.0, 0.1], [-1.0]])),  # 0.1 rad about z
        (RobotIO(robot, {**STATE_META, "action": {"shape": [8]}}, "joint_pos"), None),
    ):
        if action is None:  # joint_pos: from where the pose move ended
            joints = io.observe()[0]["joint_pos"] + np.array([0.1, 0, 0, -0.1, 0, 0, 0.1])
            action = np.concatenate([joints, [-1.0]])
        t0 = time.monotonic()
        for i in range(5):
            io.act(action, t0 + 0.1 * (i + 1))
            time.sleep(max(0.0, t0 + 0.1 * (i + 1) - time.monotonic()))
        obs = io.observe()[0]
        if io.action_space == "ee_pose":
            assert np.linalg.norm(obs["eef_pos"] - target) < 0.005
            turned = compose(np.array([0.0, 0.0, 0.1]), robot.info["home_quat"])
            assert abs(obs["eef_quat"] @ turned) > 0.999
        else:
            assert np.abs(obs["joint_pos"] - action[:7]).max() < 0.01


def test_robot_io_names_what_the_robot_cannot_provide(robot):
    def meta(**obs) -> dict:
        return {"obs": obs, "action": {"shape": [7]}}

    with pytest.raises(ValueError, match="cannot provide observation key 'left_rgb'"):
        RobotIO(robot, meta(left_rgb={"shape": [96, 96, 3], "type": "rgb"}), "ee_delta")
    with pytest.raises(ValueError, match="'eef_pos'.*shape \\(3,\\).*expects \\(4,\\)"):
        RobotIO(robot, meta(eef_pos={"shape": [4]}), "ee_delta")
    bad_action = {**STATE_META, "action": {"shape": [7]}}
    with pytest.raises(ValueError, match="action_space='joint_pos'.*expected \\[8\\]"):
        RobotIO(robot, bad_action, "joint_pos")
    io = RobotIO(robot, STATE_META, "ee_pose")
    with pytest.raises(ValueError, match="action has shape \\(6,\\)"):
        io.act(np.zeros(6), time.monotonic() + 0.1)
    with pytest.raises(ValueError, match="NaN or inf"):
        io.act(np.full(7, np.nan), time.monotonic() + 0.1)
