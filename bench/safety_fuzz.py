"""The safety property fuzz: random and adversarial commands of every type through the safety
layer of every arm; none outside a limit, non-finite or with a non-unit quaternion gets through.

    MUJOCO_GL=egl .venv/bin/python bench/safety_fuzz.py    # 1,000,000 commands, ~5 min here
    MUJOCO_GL=egl .venv/bin/python bench/safety_fuzz.py --commands 30000 --out /tmp/fuzz.json

Arms (``make_arms``, bench/safety_fuzz_arms.py), each with its limits, forward kinematics and a
home pose in its box:

* ``panda``: the sim arm, ``hardware.sim_robot.sim_safety_limits`` of PushCube (its workspace box,
  the Panda model's joint range), the grip site's MuJoCo kinematics;
* ``ur5e`` and ``franka``: the ``safety.arm`` limits of conf/hardware/ur5e.yaml and franka.yaml,
  the drivers' Denavit-Hartenberg kinematics (``hardware.kinematics``; Franka Hand offset).

Commands (``draw``), for each arm in turn, one of three types: ``joint`` (joint positions),
``pose`` (hand position and quaternion) and ``gripper`` (an opening, through a ``GripperGuard``).
Values are small to astronomical moves, targets out of the box and joint moves that take the hand
out of it, zero / tiny / ``1e300`` / subnormal / flipped quaternions; then, often, mutated:
extreme floats anywhere (NaN, inf, 1e308, the float64 maximum, subnormals, -0.0), other dtypes
(int64, float16, float32, longdouble, object arrays, bool, complex, strings, lists, nested lists),
other shapes (a scalar, too few or too many entries, 2-D, empty) or None. Target times are now to
``1e300`` s ahead, stale, NaN/inf, ints, strings, arrays. Each command is built with the public
constructor (``ArmCommand.joints`` / ``.pose``); where that refuses it (counted as
``refused_by_constructor``), or at random otherwise, it is built around the constructor's checks
(the raw values as given), so the layer sees everything. The measured arm is teleported now and
then (near its limits, fast, NaN, 1e300), the policy goes quiet (watchdog), the e-stop latches.

Checks (``check_arm``, ``check_gripper``), on every command that reaches the arm or gripper,
against the state measured when it arrived: an ``ArmCommand`` of float64 vectors of the right
length; finite; the joint limits, step, velocity (over the time to its target) and, unless cut
short to stay in the box or infeasible, acceleration; the hand of every joint target (forward
kinematics) and every pose target in the workspace box; the translation and rotation steps; a
unit quaternion; not stale, not beyond ``max_target_lead``; an opening in [0, 1].

Results (``--out``, default bench/results/safety_fuzz.json): per arm and command type the
outcomes (``forwarded`` unchanged, ``clamped``, ``rejected``, ``stale``, ``held``: no safe target,
or the e-stop, so the arm holds), constructor refusals, and the violations per check (all 0).
tests/test_safety_fuzz.py runs ``fuzz_arm`` on smaller samples.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
import time
from collections import Counter
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))  # safety_fuzz_arms, beside this file

import numpy as np  # noqa: E402
from safety_fuzz_arms import (  # noqa: E402
    ARM_NAMES,
    FakeClock,
    FuzzArm,
    RecordingArm,
    RecordingGripper,
    make_arms,
)

from hardware.interfaces import ArmCommand, ArmState, GripperCommand  # noqa: E402
from hardware.limits import rotation_angle  # noqa: E402
from hardware.safety import GripperGuard, SafetyLayer  # noqa: E402

RESULTS = REPO / "bench" / "results" / "safety_fuzz.json"
KINDS = ("joint", "pose", "gripper")
OUTCOMES = ("forwarded", "clamped", "rejected", "stale", "held")
EXTREMES = (np.nan, np.inf, -np.inf, 1e308, -1e308, sys.float_info.max, 1e300, -1e300)
EXTREMES += (5e-324, -5e-324, sys.float_info.min, 0.0, -0.0, 1e-300)
SCALES = (0.01, 0.1, 0.3, 1.0, 1e3, 1e300)
QUAT_SCALES = (1e-300, 1e-9, 0.5, 1.0, 1e3, 1e150, 1e300)
OFFSETS = (0.0, 0.01, 0.05, 0.2, 9.0, 100.0, 1e300, -0.01)  # target time minus now, s
ODD_TIMES = (math.nan, math.inf, -math.inf, "soon", None, True, 10**400, -1e300, 1j)
UNIT_TOLERANCE = 1e-9


# ---- drawing commands ---------------------------------------------------------------------


def mutate(rng: np.random.Generator, values: np.ndarray) -> object:
    """``values``, or (often) with extreme entries, another dtype or shape, or None."""
    draw = rng.random()
    if draw < 0.55:
        return values
    if draw < 0.75:  # extreme floats in one entry or all
        values = values.copy()
        where = slice(None) if rng.random() < 0.3 else int(rng.integers(values.size))
        values[where] = EXTREMES[rng.integers(len(EXTREMES))]
        return values
    if draw < 0.9:  # other dtypes
        with np.errstate(over="ignore", invalid="ignore"):
            return [
                lambda: np.clip(np.nan_to_num(values), -9e18, 9e18).astype(np.int64),
                lambda: values.astype(np.float16),
                lambda: values.astype(np.float32),
                lambda: values.astype(np.longdouble) * np.longdouble(10) ** rng.integers(0, 400),
                lambda: values.astype(object),
                lambda: np.array([*values.tolist()[:-1], 10**400], dtype=object),
                lambda: values > 0,
                lambda: values + 1j,
                lambda: values.astype(str),
                lambda: values.tolist(),
                lambda: [values.tolist()],
            ][rng.integers(11)]()
    return [  # other shapes, or nothing
        lambda: float(values[0]),
        lambda: values[:-1],
        lambda: np.append(values, 0.0),
        lambda: values[None],
        lambda: np.zeros(0),
        lambda: [values.tolist()[:-1], [1.0]],
        lambda: None,
    ][rng.integers(7)]()


def target_time(rng: np.random.Generator, now: float, stale: float) -> object:
    draw = rng.random()
    if draw < 0.05:
        return now - stale - 0.01 - 5.0 * rng.random()
    if draw < 0.08:
        return ODD_TIMES[rng.integers(len(ODD_TIMES))]
    if draw < 0.1:
        return [np.float16, np.float32, int, np.array][rng.integers(4)](now + 0.2)
    return now + OFFSETS[rng.integers(len(OFFSETS))]


def quaternion(rng: np.random.Generator, measured: np.ndarray) -> np.ndarray:
    draw = rng.random()
    if draw < 0.4:
        return measured + 0.1 * rng.normal(size=4)
    if draw < 0.6:
        return rng.normal(size=4) * QUAT_SCALES[rng.integers(len(QUAT_SCALES))]
    return np.array(
        [
            [1e300, 1e300, 0.0, 0.0],
            [0.0, 0.0, 0.0, 0.0],
            [5e-324, 0.0, 0.0, 0.0],
            [sys.float_info.max] * 4,
            [1e-200, 1e-200, 0.0, 0.0],
            -measured,
        ][rng.integers(6)]
    )


def draw(rng: np.random.Generator, kind: str, state: ArmState, now: float, arm: FuzzArm):
    """``(raw values, target time)`` of one command of ``kind`` (values: a dict of fields)."""
    limits = arm.limits
    when = target_time(rng, now, limits.stale_tolerance)
    if kind == "gripper":
        opening = rng.uniform(-0.5, 1.5)
        if rng.random() < 0.3:
            choices = (*EXTREMES, "0.5", None, True, 10**400, np.float16(0.3), 1, np.array([0.5]))
            opening = choices[rng.integers(len(choices))]
        return {"opening": opening}, when
    if kind == "joint":
        joints = state.joint_positions.copy()
        if rng.random() < 0.5:
            joints = joints + SCALES[rng.integers(len(SCALES))] * rng.normal(size=joints.size)
        else:  # shoulder / elbow / base moves that take the hand out of the box
            joints[rng.choice([0, 1, 3])] += rng.choice([-1, 1]) * rng.uniform(0.05, 0.6)
        return {"joint_positions": mutate(rng, joints)}, when
    box = limits.workspace_high - limits.workspace_low
    if rng.random() < 0.3:
        position = rng.uniform(limits.workspace_low - box, limits.workspace_high + box)
    else:
        position = state.ee_position + 0.05 * SCALES[rng.integers(len(SCALES))] * rng.normal(size=3)
    quat = quaternion(rng, state.ee_quat)
    return {"ee_position": mutate(rng, position), "ee_quat": mutate(rng, quat)}, when


def build(kind: str, values: dict, when: object, raw: bool) -> tuple[object, bool]:
    """``(command, refused)``: the command the constructor makes, or, when it refuses (refused
    True) or ``raw``, one holding the raw values (``__post_init__`` bypassed)."""
    cls = GripperCommand if kind == "gripper" else ArmCommand
    if not raw:
        try:
            if kind == "gripper":
                return GripperCommand(values["opening"], when), False
            return ArmCommand(when, **values), False
        except ValueError:  # the constructors' one error type: anything else is a finding
            pass
    command = object.__new__(cls)
    fields = {"target_time": when, **values}
    if kind != "gripper":
        fields = {"joint_positions": None, "ee_position": None, "ee_quat": None, **fields}
    for name, value in fields.items():
        object.__setattr__(command, name, value)
    return command, not raw


# ---- checking what arrives ----------------------------------------------------------------


def _vector_ok(value: object, size: int) -> bool:
    return isinstance(value, np.ndarray) and value.dtype == np.float64 and value.shape == (size,)


def check_arm(received: tuple, arm: FuzzArm, cut: bool) -> list[str]:
    """The checks (module doc) that a command reaching the arm fails; [] when none."""
    command, state, now = received
    limits = arm.limits
    if not isinstance(command, ArmCommand) or not isinstance(command.target_time, float):
        return ["type"]
    if command.is_joint:
        fields = [(command.joint_positions, len(limits.joint_low))]
    else:
        fields = [(command.ee_position, 3), (command.ee_quat, 4)]
    if not all(_vector_ok(value, size) for value, size in fields):
        return ["type"]
    if not all(np.isfinite(value).all() for value, _ in fields) or not math.isfinite(
        command.target_time
    ):
        return ["non-finite"]
    bad = []
    lead = command.target_time - now
    if -lead > limits.stale_tolerance:
        bad.append("stale")
    if lead > limits.max_target_lead:
        bad.append("target lead")
    dt = max(lead, limits.control_period)
    low, high = limits.workspace_low, limits.workspace_high
    if command.is_joint:
        target, measured = command.joint_positions, state.joint_positions
        step = np.minimum(limits.max_joint_step, limits.max_joint_velocity * dt)
        if (target < limits.joint_low).any() or (target > limits.joint_high).any():
            bad.append("joint position")
        if (np.abs(target - measured) > step).any():
            bad.append("joint step/velocity")
        with np.errstate(over="ignore", invalid="ignore"):
            coast = measured + state.joint_velocities * dt
            accel = limits.max_joint_acceleration * dt * dt
            bound_low = np.maximum(limits.joint_low, measured - step)
            bound_high = np.minimum(limits.joint_high, measured + step)
            feasible = (coast - accel <= bound_high) & (bound_low <= coast + accel)
            if not cut and (feasible & (np.abs(target - coast) > accel)).any():
                bad.append("joint acceleration")
        hand = arm.fk(target)
        if (hand < low).any() or (hand > high).any():
            bad.append("box (joint fk)")
        return bad
    position, quat = command.ee_position, command.ee_quat
    if (position < low).any() or (position > high).any():
        bad.append("box (pose)")
    if np.linalg.norm(position - state.ee_position) > limits.max_translation_step:
        bad.append("translation step")
    if abs(math.sqrt(float(quat @ quat)) - 1.0) > UNIT_TOLERANCE:
        bad.append("non-unit quaternion")
    elif rotation_angle(quat, state.ee_quat) > limits.max_rotation_step:
        bad.append("rotation step")
    return bad


def check_gripper(command: object) -> list[str]:
    if not isinstance(command, GripperCommand):
        return ["type"]
    opening, when = command.opening, command.target_time
    if not (isinstance(opening, float) and isinstance(when, float)):
        return ["type"]
    if not (math.isfinite(opening) and math.isfinite(when)):
        return ["non-finite"]
    return [] if 0.0 <= opening <= 1.0 else ["gripper opening"]


# ---- the loop -----------------------------------------------------------------------------


def disturb(rng: np.random.Generator, recording: RecordingArm, arm: FuzzArm, now: float) -> None:
    """Teleport the measured arm: near home, anywhere in (or past) its joint limits, fast, and
    sometimes with a NaN or a 1e300 in its state."""
    limits, n = arm.limits, len(arm.home)
    draw = rng.random()
    if draw < 0.8:
        joints = arm.home + rng.normal(scale=0.1 if draw < 0.4 else 0.3, size=n)
    else:
        pad = (0.0, 0.05, 0.3)[rng.integers(3)]
        joints = rng.uniform(limits.joint_low - pad, limits.joint_high + pad)
    velocity = rng.uniform(-1, 1, n) * limits.max_joint_velocity * (1e300 ** (rng.random() < 0.01))
    hand = arm.fk(joints)
    if rng.random() < 0.05:
        joints[rng.integers(n)] = (np.nan, 1e300)[rng.integers(2)]
    quat = rng.normal(size=4) if rng.random() < 0.2 else arm.home_quat
    recording.state = ArmState(joints, velocity, hand, quat / np.linalg.norm(quat), now)


class Tally:
    """Counts per command type: outcomes, constructor refusals, violations per check."""

    def __init__(self) -> None:
        self.by_kind = {
            kind: {"commands": 0, **dict.fromkeys(OUTCOMES, 0), "refused_by_constructor": 0}
            for kind in KINDS
        }
        self.violations = {kind: Counter() for kind in KINDS}

    def add(self, kind: str, outcome: str, refused: bool, bad: list[str]) -> None:
        counts = self.by_kind[kind]
        counts["commands"] += 1
        counts[outcome] += 1
        counts["refused_by_constructor"] += refused
        self.violations[kind].update(bad)

    def report(self) -> dict:
        return {
            kind: {**self.by_kind[kind], "violations": dict(self.violations[kind])}
            for kind in KINDS
        }


def send_arm(layer: SafetyLayer, recording: RecordingArm, command: object, arm: FuzzArm):
    """Send one arm command; ``(outcome, failed checks)``."""
    counts, kinds = layer.counts, ("clamped", "stale", "estop_replaced", "rejected")
    before = [counts[kind] for kind in kinds]
    recording.last = None
    sent = layer.send_command(command)
    clamped, stale, replaced, rejected = (counts[k] - n for k, n in zip(kinds, before, strict=True))
    if recording.last is not None:
        cut = bool(clamped) and "cut joint step" in layer.interventions[-1].reason
        bad = check_arm(recording.last, arm, cut)
        if sent is not recording.last[0]:
            bad.append("returned another command than it forwarded")
        return ("clamped" if clamped else "forwarded"), bad
    bad = [] if sent is None else ["returned a command it did not forward"]
    if stale:
        return "stale", bad
    held = replaced or (rejected and layer.interventions[-1].reason.endswith("holding"))
    return ("held" if held else "rejected"), bad


def send_gripper(guard: GripperGuard, recording: RecordingGripper, command: object):
    recording.last = None
    clamped = guard.counts["clamped"]
    sent = guard.send_command(command)
    if recording.last is None:
        return "rejected", [] if sent is None else ["returned a command it did not forward"]
    bad = check_gripper(recording.last)
    if sent is not recording.last:
        bad.append("returned another command than it forwarded")
    return ("clamped" if guard.counts["clamped"] > clamped else "forwarded"), bad


def fuzz_arm(arm: FuzzArm, total: int, seed: int = 1) -> dict:
    """``total`` commands (the three types in turn at random) through ``arm``'s layer and a
    gripper guard, under a fake clock; the tally's report plus the layer's own counts."""
    clock = FakeClock()
    recording = RecordingArm(clock, arm)
    layer = SafetyLayer(
        recording, arm.limits, clock=clock, max_records=10, forward_kinematics=arm.fk
    )
    gripper = RecordingGripper()
    guard = GripperGuard(gripper)
    rng = np.random.default_rng(seed)
    tally = Tally()
    period = arm.limits.control_period
    for i in range(total):
        clock.now += period
        if rng.random() < 0.002:  # the policy goes quiet: the watchdog holds, then stops
            for _ in range(round(1.5 * arm.limits.watchdog_timeout / period)):
                clock.now += period
                layer.tick()
        if rng.random() < 0.01:
            disturb(rng, recording, arm, clock.now)
        if rng.random() < 0.001:
            layer.estop("fuzz")
        elif layer.estopped and rng.random() < 0.05:
            layer.reset()
        kind = KINDS[rng.integers(len(KINDS))]
        values, when = draw(rng, kind, recording.state, clock.now, arm)
        command, refused = build(kind, values, when, raw=rng.random() < 0.2)
        if kind == "gripper":
            outcome, bad = send_gripper(guard, gripper, command)
        else:
            outcome, bad = send_arm(layer, recording, command, arm)
        tally.add(kind, outcome, refused, bad)
        if i % 7 == 0:
            layer.tick()
    report = tally.report()
    violations = sum(sum(counts["violations"].values()) for counts in report.values())
    return {"violations": violations, "by_type": report, "layer_counts": dict(layer.counts)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commands", type=int, default=1_000_000, help="in all, split by arm")
    parser.add_argument("--arms", nargs="+", choices=ARM_NAMES, default=list(ARM_NAMES))
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    logging.getLogger("hardware.safety").setLevel(logging.ERROR)  # 1e6 log lines are not tested
    started, load = time.perf_counter(), os.getloadavg()[0]
    arms = make_arms(args.arms)
    shares = [
        args.commands // len(arms) + (i < args.commands % len(arms)) for i in range(len(arms))
    ]
    results = {}
    for offset, (name, arm) in enumerate(arms.items()):
        arm_started = time.perf_counter()
        results[name] = fuzz_arm(arm, shares[offset], args.seed + offset)
        results[name]["seconds"] = round(time.perf_counter() - arm_started, 1)
        print(f"{name}: {shares[offset]} commands, {results[name]['violations']} violations")
        for kind, counts in results[name]["by_type"].items():
            print(f"  {kind:>8}: {counts}")
    total_violations = sum(result["violations"] for result in results.values())
    report = {
        "command": "python bench/safety_fuzz.py " + " ".join(sys.argv[1:]),
        "params": {
            "commands": args.commands,
            "per_arm": dict(zip(arms, shares, strict=True)),
            "seed": args.seed,
        },
        "machine": {
            "cpus": len(os.sched_getaffinity(0)),
            "load_average_1min_at_start": round(load, 2),
            "load_average_1min_at_end": round(os.getloadavg()[0], 2),
        },
        "violations": total_violations,
        "arms": results,
        "total_seconds": round(time.perf_counter() - started, 1),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    temporary = args.out.with_suffix(".json.tmp")
    temporary.write_text(json.dumps(report, indent=2) + "\n")
    temporary.replace(args.out)
    print(f"{total_violations} violations in {args.commands} commands; wrote {args.out}")


if __name__ == "__main__":
    main()
