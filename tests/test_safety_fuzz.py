"""Acceptance: 100,000 random and adversarial commands through the safety layer of the sim arm;
none outside the limits reaches the arm, joint commands included (checked through the Panda's
real MuJoCo forward kinematics), then a sample on the real-time sim arm itself.

For speed the 100,000 go to a recording arm that jumps to each forwarded target (perfect
tracking) and is sometimes teleported (near or past its limits, fast, NaN), under a fake clock.
Every forwarded command is then checked against the limits and the state measured when it
arrived: finite; joints within the joint limits, the per-command step, the velocity limit over
the time to its target and (unless cut short to stay in the box) the acceleration limit; the
hand of every joint target (forward kinematics) and of every pose target inside the workspace
box; pose steps within the translation/rotation limits; none stale.

The edit-test loop (``make test-fast``) runs the same loops on smaller samples (10,000 commands,
500 on the sim arm); the full sizes are marked slow. What a command costs is measured by
bench/bench_safety.py.
"""

from __future__ import annotations

import logging
import time

import gymnasium as gym
import numpy as np
import pytest

import sim
from hardware.interfaces import Arm, ArmCommand, ArmState
from hardware.kinematics import sim_arm_kinematics
from hardware.limits import SafetyLimits, rotation_angle
from hardware.safety import SafetyLayer
from hardware.sim_robot import make_sim_robot

PERIOD = 0.01
TOTAL = 100_000


@pytest.fixture(scope="module")
def env():
    env = gym.make(sim.PUSH_CUBE_ID, obs_mode="state").unwrapped
    env.reset(seed=0)
    return env


def make_limits(env) -> SafetyLimits:
    controller = env.controller
    return SafetyLimits(
        workspace_low=env.workspace_low,
        workspace_high=env.workspace_high,
        joint_low=controller.joint_low,
        joint_high=controller.joint_high,
        max_joint_velocity=3.0,
        max_joint_acceleration=30.0,
        max_joint_step=0.3,
        max_translation_step=0.1,
        max_rotation_step=0.5,
        control_period=PERIOD,
        watchdog_timeout=0.1,
        stop_after=0.3,
        stale_tolerance=0.05,
    )


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class RecordingArm(Arm):
    """Records (command, measured state, time) for each forwarded command; jumps to it."""

    def __init__(self, clock: FakeClock, fk, home: np.ndarray, home_quat: np.ndarray) -> None:
        self.clock, self.fk = clock, fk
        self.state = ArmState(home, np.zeros(len(home)), fk(home), home_quat, clock())
        self.received: list[tuple[ArmCommand, ArmState, float]] = []

    def read_state(self) -> ArmState:
        return self.state

    def send_command(self, command: ArmCommand) -> None:
        self.received.append((command, self.state, self.clock()))
        old = self.state
        if command.is_joint:
            joints = command.joint_positions
            velocity = (joints - old.joint_positions) / PERIOD
            self.state = ArmState(joints, velocity, self.fk(joints), old.ee_quat, self.clock())
        else:
            self.state = ArmState(
                old.joint_positions,
                old.joint_velocities,
                command.ee_position,
                command.ee_quat,
                self.clock(),
            )

    def hold(self) -> None:
        pass

    def stop(self) -> None:
        pass

    def close(self) -> None:
        pass


OFFSETS = (0.0, PERIOD, 0.05, 0.2, 100.0, -0.01)  # target time minus now, seconds
SCALES = (0.01, 0.1, 0.3, 1.0, 1e3, 1e300)
BAD = (np.nan, np.inf, -np.inf)


def random_command(rng, state: ArmState, now: float, limits: SafetyLimits) -> ArmCommand:
    """Small to astronomical moves, stale or far-future target times, NaN/inf anywhere, targets
    out of the box, zero/flipped/unnormalised quaternions, and joint moves of the shoulder and
    elbow that drive the hand into the table or out of the box sideways."""
    draw = rng.random(8)
    target_time = now + OFFSETS[int(draw[0] * len(OFFSETS))]
    if draw[1] < 0.05:
        target_time = now - 0.06 - 5.0 * draw[2]  # stale
    scale = SCALES[int(draw[3] * len(SCALES))]
    quat = None
    if draw[4] < 0.25:
        values = state.joint_positions + scale * rng.normal(size=7)
    elif draw[4] < 0.5:  # out of the box through the kinematics: shoulder down, base swing
        values = state.joint_positions.copy()
        values[rng.choice([0, 1, 3])] += rng.choice([-1, 1]) * rng.uniform(0.05, 0.6)
    else:
        box = limits.workspace_high - limits.workspace_low
        if draw[5] < 0.3:  # anywhere in or around the box
            values = rng.uniform(limits.workspace_low - box, limits.workspace_high + box)
        else:
            values = state.ee_position + 0.05 * scale * rng.normal(size=3)
        quat = state.ee_quat + 0.1 * rng.normal(size=4)
        if draw[5] > 0.8:
            quat = rng.normal(size=4) * (1e-9, 0.5, 1e3)[rng.integers(3)]
    if not np.isfinite(values).all():
        values = state.joint_positions if quat is None else state.ee_position.copy()
        values = values.copy()
    if draw[6] < 0.05:
        target = values if quat is None or draw[6] < 0.025 else quat
        target[rng.integers(target.size)] = BAD[rng.integers(3)]
    elif draw[6] > 0.99:
        target_time = BAD[rng.integers(3)]
    if quat is None:
        return ArmCommand.joints(values, target_time)
    return ArmCommand.pose(values, quat, target_time)


def disturb(rng, arm: RecordingArm, limits: SafetyLimits, home: np.ndarray) -> None:
    """Teleport the measured arm: near home, anywhere in (or a little past) the joint limits,
    moving fast, sometimes with a NaN."""
    pad = (0.0, 0.05, 0.3)[rng.integers(3)]
    draw = rng.random()
    if draw < 0.8:
        joints = home + rng.normal(scale=0.1 if draw < 0.4 else 0.3, size=7)
    else:
        joints = rng.uniform(limits.joint_low - pad, limits.joint_high + pad)
    velocity = rng.uniform(-1, 1, 7) * limits.max_joint_velocity
    hand = arm.fk(joints)
    if rng.random() < 0.05:
        joints[rng.integers(7)] = np.nan
    arm.state = ArmState(joints, velocity, hand, arm.state.ee_quat, arm.clock())


def excess(received, cut: set[int], limits: SafetyLimits, fk) -> dict[str, float]:
    """The largest amount by which any forwarded command passes each limit (<= 0: none)."""
    worst = dict.fromkeys(
        ["non-finite", "joint position", "joint step/velocity", "joint acceleration"]
        + ["box (joint fk)", "box (pose)", "translation step", "rotation step", "staleness"],
        -np.inf,
    )

    def note(name: str, value: float) -> None:
        worst[name] = max(worst[name], float(value))

    low, high = limits.workspace_low, limits.workspace_high
    for i, (command, state, now) in enumerate(received):
        note("staleness", now - command.target_time - limits.stale_tolerance)
        if command.is_joint:
            target, measured = command.joint_positions, state.joint_positions
            note("non-finite", float(not np.isfinite(target).all()))
            dt = max(command.target_time - now, PERIOD)
            step = np.minimum(limits.max_joint_step, limits.max_joint_velocity * dt)
            note("joint position", np.max([target - limits.joint_high, limits.joint_low - target]))
            note("joint step/velocity", np.max(np.abs(target - measured) - step))
            coast = measured + state.joint_velocities * dt
            accel = limits.max_joint_acceleration * dt * dt
            bound_low = np.maximum(limits.joint_low, measured - step)
            bound_high = np.minimum(limits.joint_high, measured + step)
            feasible = (coast - accel <= bound_high) & (bound_low <= coast + accel)
            if i not in cut:
                note(
                    "joint acceleration",
                    np.max(np.where(feasible, abs(target - coast) - accel, -1)),
                )
            hand = fk(target)
            note("box (joint fk)", np.max([hand - high, low - hand]))
        else:
            position = command.ee_position
            note("non-finite", float(not np.isfinite([*position, *command.ee_quat]).all()))
            note("box (pose)", np.max([position - high, low - position]))
            moved = np.linalg.norm(position - state.ee_position) - limits.max_translation_step
            note("translation step", moved)
            turned = rotation_angle(command.ee_quat, state.ee_quat) - limits.max_rotation_step
            note("rotation step", turned)
    return worst


def fuzz(env, total: int, seed: int = 1):
    """``total`` random and adversarial commands through a layer with the arm's forward
    kinematics, under a fake clock; returns (arm, layer, indices of commands cut to stay in the
    box). bench/bench_safety.py times this same loop."""
    limits = make_limits(env)
    fk = sim_arm_kinematics(env.model, "panda")
    home = np.asarray(env.arm.home_qpos)
    clock = FakeClock()
    arm = RecordingArm(clock, fk, home, env.home_quat)
    layer = SafetyLayer(arm, limits, clock=clock, max_records=10, forward_kinematics=fk)
    rng = np.random.default_rng(seed)
    cut: set[int] = set()
    for i in range(total):
        clock.now += PERIOD
        if rng.random() < 0.002:
            for _ in range(15):  # the policy goes quiet: the watchdog holds, then stops
                clock.now += PERIOD
                layer.tick()
        if rng.random() < 0.01:
            disturb(rng, arm, limits, home)
        if rng.random() < 0.001:
            layer.estop("fuzz")
        elif layer.estopped and rng.random() < 0.05:
            layer.reset()
        received = len(arm.received)
        layer.send_command(random_command(rng, arm.state, clock.now, limits))
        if len(arm.received) > received and "cut joint step" in layer.interventions[-1].reason:
            cut.add(received)
        if i % 7 == 0:
            layer.tick()
    return arm, layer, cut


@pytest.mark.parametrize(
    "total",
    [
        pytest.param(10_000, id="10k"),  # the edit-test loop's sample
        pytest.param(TOTAL, id="100k", marks=pytest.mark.slow),
    ],
)
def test_commands_with_forward_kinematics_never_leave_the_limits(env, monkeypatch, total):
    # every intervention is still recorded and counted; formatting 100,000 log lines is not
    # what is tested here (test_safety.py checks the log). What the layer costs per command is
    # measured by bench/bench_safety.py, not asserted here.
    monkeypatch.setattr(logging.getLogger("hardware.safety"), "level", logging.ERROR)
    arm, layer, cut = fuzz(env, total)
    limits = layer.limits
    worst = excess(arm.received, cut, limits, layer.forward_kinematics)
    counts = layer.counts
    print(
        f"\n{total} commands: forwarded {layer.forwarded} "
        f"({sum(c.is_joint for c, _, _ in arm.received)} joint, {len(cut)} cut to stay in the "
        f"box), {dict(counts)}; largest excess: "
        + ", ".join(f"{name} {value:.3g}" for name, value in worst.items())
    )
    assert all(value <= 0 for value in worst.values()), worst
    per_100k = total / TOTAL  # every path exercised often, in proportion to the sample
    assert len(cut) > 500 * per_100k and counts["rejected"] > 1000 * per_100k
    assert counts["stale"] > 1000 * per_100k
    assert counts["estop_replaced"] > 100 * per_100k and counts["watchdog_hold"] > 50 * per_100k
    assert layer.forwarded > 20_000 * per_100k


@pytest.mark.parametrize(
    "n_commands",
    [pytest.param(500, id="500"), pytest.param(1500, id="1500", marks=pytest.mark.slow)],
)
def test_a_sample_of_adversarial_commands_on_the_real_time_sim_arm(n_commands):
    robot = make_sim_robot(sim.PUSH_CUBE_ID, {"obs_mode": "state"}, seed=0)
    layer = robot.arms["arm"]
    recorder = RecordingProxy(layer.arm)
    layer.arm = recorder  # record what reaches the sim arm (and the state it met), pass it on
    layer.clock = recorder.clock  # ... and the layer's "now" when it checked the command
    rng = np.random.default_rng(2)
    cut: set[int] = set()
    try:
        for _ in range(n_commands):
            state = layer.read_state()
            received = len(recorder.received)
            layer.send_command(random_command(rng, state, time.monotonic(), layer.limits))
            forwarded = len(recorder.received) > received
            if forwarded and "cut joint step" in layer.interventions[-1].reason:
                cut.add(received)
            time.sleep(0.002)
        final = layer.read_state()
    finally:
        robot.close()
    worst = excess(recorder.received, cut, layer.limits, layer.forward_kinematics)
    print(f"\nsim arm sample: forwarded {layer.forwarded}, {dict(layer.counts)}, worst {worst}")
    assert all(value <= 0 for value in worst.values()), worst
    assert layer.forwarded > n_commands * 2 // 15  # > 200 of 1500
    low, high = layer.limits.workspace_low, layer.limits.workspace_high
    assert np.all(final.ee_position > low - 0.02) and np.all(final.ee_position < high + 0.02)


class RecordingProxy(Arm):
    """Passes everything to ``arm``; records each command with the state the layer last read
    and the layer's clock reading when it checked it (the layer holds its lock throughout)."""

    def __init__(self, arm: Arm) -> None:
        self.arm = arm
        self.received: list[tuple[ArmCommand, ArmState, float]] = []
        self._state: ArmState | None = None
        self._now = 0.0

    def clock(self) -> float:
        self._now = time.monotonic()
        return self._now

    def read_state(self) -> ArmState:
        self._state = self.arm.read_state()
        return self._state

    def send_command(self, command: ArmCommand) -> None:
        self.received.append((command, self._state, self._now))
        self.arm.send_command(command)

    def hold(self) -> None:
        self.arm.hold()

    def stop(self) -> None:
        self.arm.stop()

    def close(self) -> None:
        self.arm.close()
