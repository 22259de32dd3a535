"""The safety layer never lets a command outside the limits reach the arm; watchdog and e-stop.

The arm here is a test double that records everything reaching it and jumps to each forwarded
target (perfect tracking), plus random disturbances, so the layer sees a moving, sometimes
out-of-range or broken, measured state. Time comes from an injected fake clock.
"""

from __future__ import annotations

import logging
import os
import pty
import signal
import sys
import time

import numpy as np
import pytest

from hardware.estop import bind_estop_key, bind_estop_signal
from hardware.interfaces import Arm, ArmCommand, ArmState, GripperCommand, Robot
from hardware.limits import SafetyLimits, rotation_angle
from hardware.safety import GripperGuard, SafetyLayer

PERIOD = 0.01
HOME = np.array([0.0, 0.2, 0.0, -2.45, 0.0, 2.65, np.pi / 4])
DOWN = np.array([0.0, 1.0, 0.0, 0.0])  # hand pointing down


def make_limits(**overrides) -> SafetyLimits:
    values = dict(
        workspace_low=[-0.35, -0.35, 0.01],
        workspace_high=[0.2, 0.35, 0.35],
        joint_low=[-2.9, -1.76, -2.9, -3.07, -2.9, -0.02, -2.9],
        joint_high=[2.9, 1.76, 2.9, -0.07, 2.9, 3.75, 2.9],
        max_joint_velocity=[2.0, 2.0, 2.0, 2.0, 2.5, 2.5, 2.5],
        max_joint_acceleration=15.0,
        max_joint_step=0.05,
        max_translation_step=0.02,
        max_rotation_step=0.1,
        control_period=PERIOD,
        watchdog_timeout=0.1,
        stop_after=0.3,
        stale_tolerance=0.05,
    )
    return SafetyLimits(**{**values, **overrides})


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class FakeArm(Arm):
    """Records what reaches it; moves to each forwarded target within one control period."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.state = ArmState(HOME, np.zeros(7), [0.0, 0.0, 0.2], DOWN, clock())
        self.received: list[tuple[ArmCommand, ArmState, float]] = []
        self.events: list[tuple[str, float]] = []

    def read_state(self) -> ArmState:
        return self.state

    def send_command(self, command: ArmCommand) -> None:
        self.received.append((command, self.state, self.clock()))
        self.events.append(("command", self.clock()))
        old = self.state
        if command.is_joint:
            velocity = (command.joint_positions - old.joint_positions) / PERIOD
            self.state = ArmState(
                command.joint_positions, velocity, old.ee_position, old.ee_quat, self.clock()
            )
        else:
            self.state = ArmState(
                old.joint_positions,
                old.joint_velocities,
                command.ee_position,
                command.ee_quat,
                self.clock(),
            )

    def hold(self) -> None:
        self.events.append(("hold", self.clock()))

    def stop(self) -> None:
        self.events.append(("stop", self.clock()))

    def close(self) -> None:
        self.events.append(("close", self.clock()))


@pytest.fixture
def rig():
    clock = FakeClock()
    arm = FakeArm(clock)
    return clock, arm, SafetyLayer(arm, make_limits(), clock=clock, max_records=1_000_000)


TARGET_OFFSETS = (0.0, PERIOD, 0.05, 0.2, 100.0, -0.01)  # seconds from now
SCALES = (0.01, 0.1, 1.0, 10.0, 1e6, 1e300)
QUAT_SCALES = (1e-9, 0.5, 1.0, 1e3)  # 1e-9: a zero quaternion in effect
BAD_VALUES = (np.nan, np.inf, -np.inf)


def pick(options: tuple, draw: float):
    return options[int(draw * len(options))]


def random_command(rng: np.random.Generator, state: ArmState, now: float) -> ArmCommand:
    """One random or adversarial command: small to astronomically large moves, stale, NaN/inf
    anywhere, future target times, unnormalized/zero/flipped quaternions."""
    draw = rng.random(9)
    target_time = now + pick(TARGET_OFFSETS, draw[0])
    if draw[1] < 0.05:
        target_time = now - 0.06 - 5.0 * draw[2]  # stale
    scale = pick(SCALES, draw[3])
    if draw[4] < 0.5:
        values = state.joint_positions + scale * rng.normal(size=7)
        if not np.isfinite(values).all():
            values = rng.normal(size=7)
        quat = None
    else:
        values = state.ee_position + 0.1 * scale * rng.normal(size=3)
        if draw[5] < 0.4:
            quat = state.ee_quat + 0.05 * rng.normal(size=4)
        elif draw[5] < 0.8:
            quat = rng.normal(size=4) * pick(QUAT_SCALES, draw[6])
        else:
            quat = -state.ee_quat
    if draw[7] < 0.05:
        target = values if quat is None or draw[7] < 0.025 else quat
        target[int(draw[8] * target.size)] = pick(BAD_VALUES, draw[6])
    elif draw[7] > 0.99:
        target_time = pick(BAD_VALUES, draw[6])
    if quat is None:
        return ArmCommand.joints(values, target_time)
    return ArmCommand.pose(values, quat, target_time)


def disturb(rng: np.random.Generator, arm: FakeArm, limits: SafetyLimits) -> None:
    """Teleport the measured state: anywhere near the limits (sometimes outside), fast, or NaN."""
    pad = (0.0, 0.0, 0.03, 0.3)[rng.integers(4)]
    joints = rng.uniform(limits.joint_low - pad, limits.joint_high + pad)
    velocity = rng.uniform(-2, 2, 7) * limits.max_joint_velocity
    position = rng.uniform(limits.workspace_low - pad, limits.workspace_high + pad)
    quat = rng.normal(size=4)
    if rng.random() < 0.1:
        joints[rng.integers(7)] = np.nan
    arm.state = ArmState(joints, velocity, position, quat / np.linalg.norm(quat), arm.clock())


@pytest.mark.parametrize(
    "total",
    [
        pytest.param(10_000, id="10k"),  # the edit-test loop's sample
        pytest.param(100_000, id="100k", marks=pytest.mark.slow),
    ],
)
def test_random_and_adversarial_commands_never_exceed_the_limits(rig, total):
    clock, arm, layer = rig
    limits = layer.limits
    rng = np.random.default_rng(0)
    clean = 0
    latched_forwards = 0
    for i in range(total):
        clock.now += PERIOD
        if rng.random() < 0.002:
            run_ticks(clock, layer, 0.15)  # the policy goes quiet: the watchdog must act
        if rng.random() < 0.01:
            disturb(rng, arm, limits)
        if rng.random() < 0.001:
            layer.estop("test")
        elif layer.estopped and rng.random() < 0.05:
            layer.reset()
        command = random_command(rng, arm.state, clock.now)
        before_forwarded, before_clamped = layer.forwarded, layer.counts["clamped"]
        latched, received = layer.estopped, len(arm.received)
        layer.send_command(command)
        latched_forwards += latched and len(arm.received) > received
        if layer.forwarded > before_forwarded and layer.counts["clamped"] == before_clamped:
            clean += 1  # forwarded unchanged: the arm got exactly what was sent
            sent = arm.received[-1][0]
            if command.is_joint:
                assert np.array_equal(sent.joint_positions, command.joint_positions), i
            else:
                assert np.array_equal(sent.ee_position, command.ee_position), i
                unit = command.ee_quat / np.linalg.norm(command.ee_quat)
                assert abs(abs(sent.ee_quat @ unit) - 1) < 1e-9, i
        if i % 7 == 0:
            layer.tick()
    assert latched_forwards == 0

    counts = layer.counts
    per_command = ("clamped", "rejected", "stale", "estop_replaced")
    assert clean + sum(counts[kind] for kind in per_command) == total
    assert all(record.reason for record in layer.interventions)
    assert len(layer.interventions) == sum(counts.values())
    assert layer.forwarded == len(arm.received)

    excess = measure_excess(arm.received, limits)
    print(
        f"\n{total} commands: forwarded {layer.forwarded} ({clean} unchanged, "
        f"{counts['clamped']} clamped), rejected {counts['rejected']}, stale {counts['stale']}, "
        f"replaced by e-stop {counts['estop_replaced']}; watchdog holds "
        f"{counts['watchdog_hold']}, stops {counts['stop']}; largest excess at the arm: "
        + ", ".join(f"{name} {value:.3g}" for name, value in excess.items())
    )
    assert all(value <= 0 for value in excess.values()), excess
    quats = np.array([c.ee_quat for c, _, _ in arm.received if not c.is_joint])
    assert np.abs(np.linalg.norm(quats, axis=1) - 1).max() < 1e-12
    for kind in ("clamped", "rejected", "stale", "estop_replaced", "watchdog_hold", "stop"):
        assert counts[kind] > total // 1000, kind  # each path exercised often (> 100 in 100k)


def measure_excess(received: list, limits: SafetyLimits) -> dict[str, float]:
    """Largest amount by which any forwarded command passes each limit (<= 0: none does),
    checked vectorized against the measured state the arm had when the command arrived."""
    joint = [(c, s, t) for c, s, t in received if c.is_joint]
    pose = [(c, s, t) for c, s, t in received if not c.is_joint]
    target = np.array([c.joint_positions for c, _, _ in joint])
    measured = np.array([s.joint_positions for _, s, _ in joint])
    velocity = np.array([s.joint_velocities for _, s, _ in joint])
    now = np.array([t for _, _, t in joint])
    dt = np.maximum(np.array([c.target_time for c, _, _ in joint]) - now, PERIOD)[:, None]
    step = np.minimum(limits.max_joint_step, limits.max_joint_velocity * dt)
    low = np.maximum(limits.joint_low, measured - step)
    high = np.minimum(limits.joint_high, measured + step)
    accel = limits.max_joint_acceleration * dt * dt
    coast = measured + velocity * dt
    feasible = (coast - accel <= high) & (low <= coast + accel)  # acceleration yields otherwise
    position = np.array([c.ee_position for c, _, _ in pose])
    position_measured = np.array([s.ee_position for _, s, _ in pose])
    rotation = [rotation_angle(c.ee_quat, s.ee_quat) for c, s, _ in pose]
    times = np.array([c.target_time - t for c, _, t in received])
    return {
        "non-finite": float(
            sum(not np.isfinite(v).all() for v in (target, position, times) if v.size)
        ),
        "joint position": np.max([target - limits.joint_high, limits.joint_low - target]),
        "joint step/velocity": np.max(np.abs(target - measured) - step),
        "joint acceleration": np.max(np.where(feasible, np.abs(target - coast) - accel, -1)),
        "workspace box": np.max(
            [position - limits.workspace_high, limits.workspace_low - position]
        ),
        "translation step": np.max(
            np.linalg.norm(position - position_measured, axis=1) - limits.max_translation_step
        ),
        "rotation step": max(rotation) - limits.max_rotation_step,
        "staleness": -np.min(times) - limits.stale_tolerance,
    }


def valid_command(clock: FakeClock, arm: FakeArm) -> ArmCommand:
    return ArmCommand.joints(arm.state.joint_positions, clock() + PERIOD)


def run_ticks(clock: FakeClock, layer: SafetyLayer, seconds: float) -> None:
    for _ in range(round(seconds / PERIOD)):
        clock.now += PERIOD
        layer.tick()


def event_times(arm: FakeArm, kind: str) -> list[float]:
    return [t for name, t in arm.events if name == kind]


def test_watchdog_holds_then_stops_within_two_control_periods(rig, caplog):
    caplog.set_level(logging.INFO, logger="hardware.safety")
    clock, arm, layer = rig
    limits = layer.limits
    layer.send_command(valid_command(clock, arm))
    last = clock()
    for _ in range(20):  # commands that do not count as fresh
        clock.now += PERIOD
        layer.send_command(ArmCommand.joints(np.full(7, np.nan), clock()))
        layer.tick()
    run_ticks(clock, layer, 1.0)
    (hold,) = event_times(arm, "hold")
    (stop,) = event_times(arm, "stop")
    assert limits.watchdog_timeout < hold - last <= limits.watchdog_timeout + 2 * PERIOD
    assert limits.stop_after <= stop - hold <= limits.stop_after + 2 * PERIOD
    assert layer.mode == "stopped"
    reasons = [r.reason for r in layer.interventions if r.kind in ("watchdog_hold", "stop")]
    assert reasons[0].startswith("watchdog: no command for 0.1") and "holding" in reasons[0]
    assert "stopping" in reasons[1]
    logged = [r.getMessage() for r in caplog.records if r.name == "hardware.safety"]
    assert logged == [f"{r.kind}: {r.reason}" for r in layer.interventions]

    layer.send_command(valid_command(clock, arm))  # the watchdog does not latch
    assert layer.mode == "active" and layer.forwarded == 2


def test_estop_latches_until_reset(rig):
    clock, arm, layer = rig
    layer.estop("operator")
    assert event_times(arm, "hold") == [clock()]
    for _ in range(50):
        clock.now += PERIOD
        layer.send_command(valid_command(clock, arm))
        layer.tick()
    assert layer.forwarded == 0 and not arm.received
    assert layer.counts["estop_replaced"] == 50 and layer.counts["estop"] == 1
    assert event_times(arm, "stop")  # hold, then stop after stop_after
    layer.reset()
    layer.send_command(valid_command(clock, arm))
    assert layer.forwarded == 1 and layer.mode == "active"


def test_estop_from_a_real_signal(rig):
    clock, arm, layer = rig
    previous = bind_estop_signal(layer, signal.SIGUSR1)
    try:
        os.kill(os.getpid(), signal.SIGUSR1)
        deadline = time.monotonic() + 2.0
        while not layer.estopped and time.monotonic() < deadline:
            time.sleep(0.001)
    finally:
        signal.signal(signal.SIGUSR1, previous)
    assert layer.estopped and event_times(arm, "hold")
    assert "SIGUSR1" in layer.interventions[-1].reason
    layer.send_command(valid_command(clock, arm))
    assert not arm.received
    layer.reset()
    layer.send_command(valid_command(clock, arm))
    assert len(arm.received) == 1


def test_estop_from_a_key_on_a_terminal(rig):
    _, arm, layer = rig
    master, slave = pty.openpty()
    with os.fdopen(slave, "r") as terminal:
        unbind = bind_estop_key(layer, "e", stream=terminal)
        try:
            os.write(master, b"xe")
            deadline = time.monotonic() + 2.0
            while not layer.estopped and time.monotonic() < deadline:
                time.sleep(0.005)
        finally:
            unbind()
            os.close(master)
    assert layer.estopped and "key 'e'" in layer.interventions[-1].reason


def test_watchdog_thread_acts_when_nobody_ticks():
    arm = FakeArm(FakeClock())
    limits = make_limits(watchdog_timeout=0.03, stop_after=0.03)
    layer = SafetyLayer(arm, limits)
    layer.start()
    deadline = time.monotonic() + 2.0
    while layer.mode != "stopped" and time.monotonic() < deadline:
        time.sleep(0.005)
    layer.close()
    assert [name for name, _ in arm.events] == ["hold", "stop", "close"]


def test_each_clamp_names_the_limit():
    clock = FakeClock()
    arm = FakeArm(clock)
    layer = SafetyLayer(arm, make_limits(max_joint_acceleration=1e4), clock=clock)
    now = clock()
    fast = HOME.copy()
    fast[3] -= 0.04  # 0.04 rad in 0.01 s = 4 rad/s > 2 rad/s, under the 0.05 rad step
    layer.send_command(ArmCommand.joints(fast, now + PERIOD))
    far = arm.state.joint_positions.copy()
    far[1] += 1.0  # 1 rad by a target 10 s away: only the per-command step binds
    layer.send_command(ArmCommand.joints(far, now + 10))
    near_limit = arm.state.joint_positions.copy()
    near_limit[3] = -0.09  # 0.02 rad below joint 3's upper limit
    arm.state = ArmState(near_limit, np.zeros(7), [0.0, 0.0, 0.2], DOWN, now)
    outside = near_limit.copy()
    outside[3] = 0.5
    layer.send_command(ArmCommand.joints(outside, now + 10))
    layer.send_command(ArmCommand.pose([1.0, 0.0, 0.2], DOWN, now))
    reasons = [r.reason for r in layer.interventions]
    assert "clamped joint 3 velocity -4 -> -2 rad/s" in reasons[0]
    assert "clamped joint 1 step 1 -> 0.05 rad" in reasons[1]
    assert "clamped joint 3 position 0.5 -> -0.07 rad" in reasons[2]
    assert "workspace box (x)" in reasons[3] and "translation" in reasons[3]


def test_arm_far_outside_its_limits_is_held_not_moved(rig):
    clock, arm, layer = rig
    joints = HOME.copy()
    joints[3] = 0.5  # above joint 3's limit of -0.07 by more than one step
    arm.state = ArmState(joints, np.zeros(7), [0.0, 0.0, 0.2], DOWN, clock())
    layer.send_command(ArmCommand.joints(HOME, clock() + PERIOD))
    assert not arm.received and layer.mode == "holding"
    assert "beyond one step of" in layer.interventions[-1].reason


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"workspace_low": [0.0, 0.0, 0.5]}, "workspace_low"),
        ({"joint_high": [-3.5] * 7}, "joint_low"),
        ({"max_joint_velocity": -1.0}, "max_joint_velocity"),
        ({"max_joint_step": [0.1] * 6}, "max_joint_step"),
        ({"max_rotation_step": float("nan")}, "max_rotation_step"),
        ({"watchdog_timeout": 0.005}, "watchdog_timeout"),
        ({"stale_tolerance": -1}, "stale_tolerance"),
    ],
)
def test_bad_limits_name_the_field(overrides, field):
    with pytest.raises(ValueError, match=f"SafetyLimits.{field}"):
        make_limits(**overrides)


def test_commands_and_robot_close():
    with pytest.raises(ValueError, match="either joint_positions or both"):
        ArmCommand(0.0, joint_positions=HOME, ee_position=[0, 0, 0], ee_quat=DOWN)
    with pytest.raises(ValueError, match="ee_quat has shape"):
        ArmCommand.pose([0, 0, 0], [1, 0, 0], 0.0)

    class Broken(FakeArm):
        def close(self) -> None:
            raise RuntimeError("driver gone")

    clock = FakeClock()
    good = FakeArm(clock)
    robot = Robot(arms={"left": Broken(clock), "right": good})
    with pytest.raises(RuntimeError, match="driver gone"):
        robot.close()
    assert good.events == [("close", clock())]  # closed although the other arm failed


# ---- target times, joint counts, the last check, grippers, the watchdog thread -------------


def test_far_future_target_time_is_brought_forward(rig):
    clock, arm, layer = rig
    sent = layer.send_command(ArmCommand.joints(HOME + 0.01, clock() + 1e300))
    assert sent.target_time == clock() + layer.limits.max_target_lead
    assert "clamped target time 1e+300 -> 10 s ahead" in layer.interventions[-1].reason


def test_joint_count_the_limits_do_not_have_is_rejected(rig):
    clock, arm, layer = rig
    assert layer.send_command(ArmCommand.joints(np.zeros(6), clock())) is None
    assert "joint positions has shape (6,); expected (7,)" in layer.interventions[-1].reason
    arm.state = ArmState(np.zeros(6), np.zeros(6), [0.0, 0.0, 0.2], DOWN, clock())
    assert layer.send_command(ArmCommand.joints(HOME, clock())) is None
    assert "arm measures 6 joints" in layer.interventions[-1].reason and layer.mode == "holding"


def test_a_limited_command_that_fails_the_last_check_is_not_forwarded(rig, monkeypatch):
    clock, arm, layer = rig
    monkeypatch.setattr(  # a broken clamp returning a quaternion that is not unit
        "hardware.safety.limit_rotation", lambda target, measured, limits: (target * 2.0, [])
    )
    assert layer.send_command(ArmCommand.pose(arm.state.ee_position, DOWN, clock())) is None
    assert not arm.received and layer.mode == "holding"
    assert "failed the last check: ee quaternion of norm 2" in layer.interventions[-1].reason
    monkeypatch.setattr(  # ... and a broken box cut letting a joint target's hand out
        "hardware.safety.limit_joints_to_workspace", lambda target, *_: (target, [])
    )
    layer.forward_kinematics = lambda joints: np.array([0.0, 0.0, 0.2 + 10 * joints[0]])
    assert layer.send_command(ArmCommand.joints(HOME + 0.01, clock() + PERIOD)) is not None
    assert layer.send_command(ArmCommand.joints(HOME + 1.0, clock() + 10 * PERIOD)) is None
    assert "failed the last check: the joint target's hand outside the workspace box" in (
        layer.interventions[-1].reason
    )


def test_gripper_guard_clamps_rejects_and_returns_what_it_forwarded():
    class Gripper:
        def __init__(self):
            self.received = []

        def send_command(self, command):
            self.received.append(command)

    gripper = Gripper()
    guard = GripperGuard(gripper)
    assert guard.send_command(GripperCommand(7.0, 1.0)) == GripperCommand(1.0, 1.0)
    assert guard.send_command(GripperCommand(0.25, 1.0)) is gripper.received[-1]
    for bad in (GripperCommand(np.nan, 1.0), GripperCommand(0.5, np.inf), "open"):
        assert guard.send_command(bad) is None
    assert [c.opening for c in gripper.received] == [1.0, 0.25]
    assert guard.summary() == {"forwarded": 2, "clamped": 1, "rejected": 3}


def test_watchdog_thread_asks_for_a_real_time_priority_and_a_short_gil_interval(caplog):
    caplog.set_level(logging.INFO, logger="hardware.safety")
    previous = sys.getswitchinterval()
    layer = SafetyLayer(FakeArm(FakeClock()), make_limits())
    try:
        layer.start()
        assert sys.getswitchinterval() <= PERIOD / 10
        deadline = time.monotonic() + 2.0
        while not caplog.records and time.monotonic() < deadline:
            time.sleep(0.005)
    finally:
        layer.close()
        sys.setswitchinterval(previous)
    message = caplog.records[0].getMessage()
    assert message.startswith("watchdog thread runs at ")
    assert any(kind in message for kind in ("SCHED_FIFO", "nice -10", "ordinary priority"))
