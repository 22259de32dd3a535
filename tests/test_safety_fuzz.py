"""Acceptance: random and adversarial commands of every type (joint, pose, gripper), values and
dtypes through the safety layer of every arm (the sim Panda, the UR5e and the Franka limits, each
with its forward kinematics); none outside a limit, non-finite or with a non-unit quaternion
reaches the arm or gripper. Then a sample on the real-time sim arm itself, and the inputs that
used to slip through (a ``1e300`` quaternion) or that no random draw is sure to hit, one by one.

The generator, the recording arm and the checks are bench/safety_fuzz.py's (its module doc lists
them); that program runs 1,000,000 commands once and writes bench/results/safety_fuzz.json. Here
the edit-test loop (``make test-fast``) runs a small sample per arm (1,000 commands) and the slow
suite ~200,000 (70,000 per arm) and 1,500 on the real-time sim arm. What a command costs is
measured by bench/bench_safety.py.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

from safety_fuzz import (  # noqa: E402
    ARM_NAMES,
    KINDS,
    FuzzArm,
    build,
    check_arm,
    draw,
    fuzz_arm,
    make_arms,
)
from test_safety import DOWN, HOME, FakeArm, FakeClock, make_limits  # noqa: E402

import sim  # noqa: E402
from hardware.interfaces import Arm, ArmCommand, ArmState, GripperCommand  # noqa: E402
from hardware.limits import rotation_angle  # noqa: E402
from hardware.safety import SafetyLayer  # noqa: E402
from hardware.sim_robot import make_sim_robot  # noqa: E402

SLOW_PER_ARM = 70_000


@pytest.fixture(scope="module")
def arms():
    return make_arms()


@pytest.mark.parametrize(
    "total",
    [
        pytest.param(1_000, id="1k"),  # the edit-test loop's sample
        pytest.param(SLOW_PER_ARM, id="70k", marks=pytest.mark.slow),
    ],
)
@pytest.mark.parametrize("name", ARM_NAMES)
def test_no_command_of_any_type_leaves_the_limits(arms, name, total, monkeypatch):
    # every intervention is still recorded and counted; formatting the log lines is not what
    # is tested here (test_safety.py checks the log)
    monkeypatch.setattr(logging.getLogger("hardware.safety"), "level", logging.ERROR)
    result = fuzz_arm(arms[name], total, seed=ARM_NAMES.index(name) + 1)
    by_type = result["by_type"]
    print(f"\n{name}, {total} commands: " + "; ".join(f"{k} {v}" for k, v in by_type.items()))
    assert {kind: counts["violations"] for kind, counts in by_type.items()} == dict.fromkeys(
        KINDS, {}
    )
    assert sum(counts["commands"] for counts in by_type.values()) == total
    share = total / 1_000  # every path exercised, in proportion to the sample
    gripper = by_type["gripper"]
    assert gripper["clamped"] > 50 * share and gripper["rejected"] > 20 * share
    for kind in ("joint", "pose"):
        counts = by_type[kind]
        assert counts["clamped"] > 20 * share and counts["rejected"] > 20 * share, kind
        assert counts["refused_by_constructor"] > 10 * share, kind
        if total >= 10_000:  # rarer paths: disturbances (1% of the steps), stale targets (5%)
            assert counts["held"] > 2 * share and counts["stale"] > 5 * share, kind
    if total >= 10_000:  # the policy goes quiet in 0.2% of the steps
        assert result["layer_counts"]["watchdog_hold"] > share


@pytest.mark.slow  # the fast suite's commands on the real-time sim arm: test_robot_server.py
def test_a_sample_of_adversarial_commands_on_the_real_time_sim_arm(monkeypatch, n_commands=1500):
    monkeypatch.setattr(logging.getLogger("hardware.safety"), "level", logging.ERROR)
    robot = make_sim_robot(sim.PUSH_CUBE_ID, {"obs_mode": "state"}, seed=0)
    layer = robot.arms["arm"]
    recorder = RecordingProxy(layer.arm)
    layer.arm = recorder  # record what reaches the sim arm (and the state it met), pass it on
    layer.clock = recorder.clock  # ... and the layer's "now" when it checked the command
    home = layer.read_state()
    arm = FuzzArm("sim", layer.limits, layer.forward_kinematics, home.joint_positions, home.ee_quat)
    rng = np.random.default_rng(2)
    failed: list[list[str]] = []
    try:
        for _ in range(n_commands):
            kind = ("joint", "pose")[rng.integers(2)]
            values, when = draw(rng, kind, layer.read_state(), time.monotonic(), arm)
            received = len(recorder.received)
            layer.send_command(build(kind, values, when, raw=rng.random() < 0.2)[0])
            if len(recorder.received) > received:
                cut = "cut joint step" in layer.interventions[-1].reason
                failed.append(check_arm(recorder.received[-1], arm, cut))
            time.sleep(0.002)
        final = layer.read_state()
    finally:
        robot.close()
    print(f"\nsim arm sample: forwarded {layer.forwarded}, {dict(layer.counts)}")
    assert [bad for bad in failed if bad] == []
    assert layer.forwarded > n_commands // 10
    assert np.isfinite(final.joint_positions).all() and np.isfinite(final.ee_quat).all()
    low, high = layer.limits.workspace_low, layer.limits.workspace_high
    assert np.all(final.ee_position > low - 0.02) and np.all(final.ee_position < high + 0.02)


class RecordingProxy(Arm):
    """Passes everything to ``arm``; records each command with the state the layer last read
    and the layer's clock reading when it checked it (the layer holds its lock throughout; the
    watchdog thread's readings are not the sender's)."""

    def __init__(self, arm: Arm) -> None:
        self.arm = arm
        self.received: list[tuple[ArmCommand, ArmState, float]] = []
        self._state: ArmState | None = None
        self._now = 0.0
        self._sender = threading.current_thread()

    def clock(self) -> float:
        now = time.monotonic()
        if threading.current_thread() is self._sender:
            self._now = now
        return now

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


# ---- inputs of any type, shape and magnitude, one by one ---------------------------------------


@pytest.fixture
def rig():
    clock = FakeClock()
    arm = FakeArm(clock)
    return clock, arm, SafetyLayer(arm, make_limits(), clock=clock)


def raw_command(**fields) -> ArmCommand:
    """An ArmCommand holding ``fields`` as given (the constructor's checks bypassed)."""
    command = object.__new__(ArmCommand)
    values = {"target_time": 0.0, "joint_positions": None, "ee_position": None, "ee_quat": None}
    for name, value in {**values, **fields}.items():
        object.__setattr__(command, name, value)
    return command


def test_huge_quaternion_is_normalised_safely_not_zeroed(rig):
    clock, arm, layer = rig
    position = arm.state.ee_position
    sent = layer.send_command(ArmCommand.pose(position, [1e300, 1e300, 0.0, 0.0], clock() + 0.1))
    assert sent is arm.received[-1][0]  # what the arm got
    assert abs(np.linalg.norm(sent.ee_quat) - 1) < 1e-12
    # slerped from DOWN (0, 1, 0, 0) towards (1, 1, 0, 0) / sqrt(2) by the 0.1 rad step
    assert rotation_angle(sent.ee_quat, DOWN) == pytest.approx(0.1, rel=1e-6)
    assert sent.ee_quat[0] > 0 and sent.ee_quat[1] > 0
    assert "normalized ee quaternion (norm 1.41e+300)" in layer.interventions[-1].reason
    for extreme in ([1.7976931348623157e308] * 4, [-1e308, 0, 0, 1e308], [2e-6, 0, 0, 0]):
        sent = layer.send_command(ArmCommand.pose(position, extreme, clock()))
        assert abs(np.linalg.norm(sent.ee_quat) - 1) < 1e-12, extreme


@pytest.mark.parametrize(
    ("quat", "reason"),
    [
        ([0.0, 0.0, 0.0, 0.0], "norm 0"),
        ([5e-324, 0.0, 0.0, 0.0], "norm 4.94e-324"),
        ([1e-200, 1e-200, 0.0, 0.0], "norm 1.41e-200"),
        ([9e-7, 0.0, 0.0, 0.0], "norm 9e-07"),
        ([np.nan, 1.0, 0.0, 0.0], "NaN in ee quaternion"),
        ([np.inf, 1.0, 0.0, 0.0], "inf in ee quaternion"),
    ],
)
def test_quaternion_without_a_direction_is_rejected_with_the_reason(rig, quat, reason):
    clock, arm, layer = rig
    assert layer.send_command(ArmCommand.pose(arm.state.ee_position, quat, clock())) is None
    assert not arm.received and layer.counts["rejected"] == 1
    assert reason in layer.interventions[-1].reason


BAD_FIELDS = [
    ({"joint_positions": HOME.astype(np.complex128)}, "dtype complex128"),
    ({"joint_positions": HOME > 0}, "dtype bool"),
    ({"joint_positions": HOME.astype(str)}, "dtype <U"),
    ({"joint_positions": np.array([*HOME[:6], 10**400], dtype=object)}, "dtype object"),
    ({"joint_positions": np.array([*HOME[:6], None], dtype=object)}, "dtype object"),
    ({"joint_positions": [list(HOME[:3]), list(HOME[3:])]}, "not an array of numbers"),
    ({"joint_positions": HOME[:6]}, "shape (6,)"),
    ({"joint_positions": 0.5}, "shape ()"),
    ({"joint_positions": HOME[None]}, "shape (1, 7)"),
    ({"joint_positions": np.zeros(0)}, "shape (0,)"),
    ({"joint_positions": np.full(7, np.inf, dtype=np.float16)}, "inf in joint positions"),
    ({"joint_positions": np.full(7, np.longdouble("1e4000"))}, "inf in joint positions"),
    ({"ee_position": [0.0, 0.0, 0.2]}, "needs either joint positions or both"),
    ({"joint_positions": HOME, "ee_position": [0, 0, 0.2], "ee_quat": DOWN}, "needs either"),
    ({"joint_positions": HOME, "target_time": "soon"}, "target time is a str"),
    ({"joint_positions": HOME, "target_time": True}, "target time is a bool"),
    ({"joint_positions": HOME, "target_time": 10**400}, "does not fit a float64"),
    ({"joint_positions": HOME, "target_time": np.array([100.0])}, "not a real number"),
    ({"joint_positions": HOME, "target_time": np.nan}, "target time is nan"),
]


@pytest.mark.parametrize(("fields", "reason"), BAD_FIELDS)
def test_commands_holding_anything_are_rejected_with_the_reason_never_raised(rig, fields, reason):
    clock, arm, layer = rig
    fields = {"target_time": clock() + 0.1, **fields}
    assert layer.send_command(raw_command(**fields)) is None
    assert not arm.received and layer.counts == {"rejected": 1}
    assert reason in layer.interventions[-1].reason
    assert layer.send_command("not a command") is None
    assert "not an ArmCommand but a str" in layer.interventions[-1].reason


def test_constructors_refuse_values_that_are_not_real_numbers():
    for bad in (HOME.astype(np.complex128), HOME > 0, HOME.astype(str), [*HOME[:6], None]):
        with pytest.raises(ValueError, match="joint_positions"):
            ArmCommand.joints(bad, 0.0)
    with pytest.raises(ValueError, match="target_time is a str"):
        ArmCommand.joints(HOME, "soon")
    with pytest.raises(ValueError, match="opening is a NoneType"):
        GripperCommand(None, 0.0)
    # ints, float16 and object arrays of numbers are numbers: converted to float64
    for fine in (HOME.astype(np.float16), np.round(HOME).astype(np.int64), HOME.astype(object)):
        assert ArmCommand.joints(fine, 0).joint_positions.dtype == np.float64


def test_other_inputs_of_odd_dtype_are_converted_then_limited(rig):
    clock, arm, layer = rig
    for joints in (HOME.astype(np.float32), HOME.astype(np.float16), HOME.astype(object).tolist()):
        sent = layer.send_command(raw_command(joint_positions=joints, target_time=clock() + 0.1))
        assert sent.joint_positions.dtype == np.float64 and sent.joint_positions.shape == (7,)
    assert len(arm.received) == 3
