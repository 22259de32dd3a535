"""Per-arm safety limits and the pure functions that clamp one command to them.

``SafetyLimits`` validates an arm's limits once, at construction; ``limit_joints``,
``limit_joints_to_workspace``, ``limit_position`` and ``limit_rotation`` each take a target and
the *measured* state and return the nearest target within the limits (or None when none is) with
the reasons for any change. They hold no state: ``hardware.safety.SafetyLayer`` calls them on
every command, and the tests call them directly. The rules they apply are in
``hardware.safety``'s module docstring.

Quaternions are normalised by ``unit_quaternion``, which divides by the largest absolute
component before taking the norm: ``[1e300, 1e300, 0, 0]`` has a norm that overflows to inf
(dividing by it gave ``[0, 0, 0, 0]``) and ``[1e-200, 0, 0, 0]`` one that underflows to 0; scaled
first, the norm is in [1, 2] and the result is a unit quaternion or None (zero, near zero, or not
finite).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from hardware.interfaces import ArmState

ROUNDING_MARGIN = 1e-9  # relative shrink of step/velocity/acceleration radii (see hardware.safety)
MIN_QUAT_NORM = 1e-6  # a quaternion shorter than this is taken as zero: its direction is noise


def _limit_array(name: str, value: object, size: int | None, positive: bool = False) -> np.ndarray:
    """A read-only finite float64 vector of ``size`` entries (a scalar is broadcast)."""
    array = np.array(value, dtype=np.float64)
    if size is not None and array.ndim == 0:
        array = np.full(size, float(array))
    if array.ndim != 1 or (size is not None and array.shape[0] != size):
        raise ValueError(f"SafetyLimits.{name} must have {size or 'n'} entries; got {array.shape}")
    if not np.isfinite(array).all() or (positive and (array <= 0).any()):
        raise ValueError(f"SafetyLimits.{name} must be finite{' and > 0' * positive}; got {array}")
    array.flags.writeable = False
    return array


def _limit_scalar(name: str, value: object, low: float, strict: bool = True) -> float:
    """``value`` as a finite float above ``low`` (or at it, if not ``strict``)."""
    value = float(value)
    if not (math.isfinite(value) and (value > low if strict else value >= low)):
        bound = f"{'>' if strict else '>='} {low}"
        raise ValueError(f"SafetyLimits.{name} must be finite and {bound}; got {value}")
    return value


@dataclass(frozen=True)
class SafetyLimits:
    """Limits for one arm (metres, radians, seconds; joint entries base to tip).

    Per-joint fields accept one value for all joints. Times: ``control_period`` is how often
    commands are sent and the watchdog ticks; ``watchdog_timeout`` how long without a valid
    command before holding; ``stop_after`` how long to hold before stopping; ``stale_tolerance``
    how late a command's target time may be; ``max_target_lead`` how far ahead it may be (a
    later one is brought forward to it, and its step bounded accordingly).
    """

    workspace_low: np.ndarray  # (3,) end-effector box, base frame
    workspace_high: np.ndarray
    joint_low: np.ndarray  # (n,) rad
    joint_high: np.ndarray
    max_joint_velocity: np.ndarray | float  # rad/s
    max_joint_acceleration: np.ndarray | float  # rad/s^2
    max_joint_step: np.ndarray | float  # rad per command
    max_translation_step: float  # m per command (Euclidean)
    max_rotation_step: float  # rad per command (rotation angle)
    control_period: float = 0.01  # 100 Hz, the sim controller's rate
    watchdog_timeout: float = 0.25
    stop_after: float = 1.0
    stale_tolerance: float = 0.05
    max_target_lead: float = 10.0

    def __post_init__(self) -> None:
        def put(name: str, value: object) -> None:
            object.__setattr__(self, name, value)

        for low, high, size in (
            ("workspace_low", "workspace_high", 3),
            ("joint_low", "joint_high", None),
        ):
            lows = _limit_array(low, getattr(self, low), size)
            highs = _limit_array(high, getattr(self, high), lows.shape[0])
            if (lows > highs).any():
                i = int(np.argmax(lows > highs))
                raise ValueError(
                    f"SafetyLimits.{low} exceeds {high} at index {i}: {lows[i]} > {highs[i]}"
                )
            put(low, lows)
            put(high, highs)
        for name in ("max_joint_velocity", "max_joint_acceleration", "max_joint_step"):
            put(name, _limit_array(name, getattr(self, name), lows.shape[0], positive=True))
        for name in ("max_translation_step", "max_rotation_step", "control_period"):
            put(name, _limit_scalar(name, getattr(self, name), 0.0))
        put(
            "watchdog_timeout",
            _limit_scalar("watchdog_timeout", self.watchdog_timeout, self.control_period),
        )
        for name in ("stop_after", "stale_tolerance"):
            put(name, _limit_scalar(name, getattr(self, name), 0.0, strict=False))
        lead = _limit_scalar("max_target_lead", self.max_target_lead, self.control_period, False)
        put("max_target_lead", lead)


def limit_joints(
    target: np.ndarray, state: ArmState, dt: float, limits: SafetyLimits
) -> tuple[np.ndarray | None, list[str]]:
    """Clamp a joint target (see the module doc); returns (safe target or None, reasons)."""
    measured, velocity = state.joint_positions, state.joint_velocities
    velocity_bound = limits.max_joint_velocity * dt < limits.max_joint_step
    step = np.minimum(limits.max_joint_step, limits.max_joint_velocity * dt) * (1 - ROUNDING_MARGIN)
    low = np.maximum(limits.joint_low, measured - step)
    high = np.minimum(limits.joint_high, measured + step)
    if not (low <= high).all():
        j = int(np.argmin(low <= high))
        span = f"[{limits.joint_low[j]:.3g}, {limits.joint_high[j]:.3g}]"
        return None, [f"joint {j} measured at {measured[j]:.3g} rad, beyond one step of {span}"]
    accel = limits.max_joint_acceleration * dt * dt * (1 - ROUNDING_MARGIN)
    coast = measured + velocity * dt
    safe = np.clip(np.clip(target, coast - accel, coast + accel), low, high)
    reasons = []
    with np.errstate(over="ignore"):  # the figures of a 1e308 target may overflow
        for j in np.flatnonzero(safe != target):
            asked, moved = target[j] - measured[j], safe[j] - measured[j]
            if safe[j] in (limits.joint_low[j], limits.joint_high[j]):
                what, was, now, unit = "position", target[j], safe[j], "rad"
            elif safe[j] in (low[j], high[j]) and velocity_bound[j]:
                what, was, now, unit = "velocity", asked / dt, moved / dt, "rad/s"
            elif safe[j] in (low[j], high[j]):
                what, was, now, unit = "step", asked, moved, "rad"
            else:
                was, now = (asked / dt - velocity[j]) / dt, (moved / dt - velocity[j]) / dt
                what, unit = "acceleration", "rad/s^2"
            reasons.append(f"clamped joint {j} {what} {was:.3g} -> {now:.3g} {unit}")
    return safe, reasons


def limit_joints_to_workspace(
    target: np.ndarray,
    measured: np.ndarray,
    forward_kinematics: Callable[[np.ndarray], np.ndarray],
    limits: SafetyLimits,
) -> tuple[np.ndarray | None, list[str]]:
    """Keep the hand of a (joint-clamped) joint target inside the workspace box.

    The joint clamp moves from ``start``, the measured joints clipped into the joint limits,
    towards the target, inside a box of joint values; every point of that segment is in it. If
    the target's hand leaves the workspace box, the step is cut to the largest fraction of the
    way (bisection, 30 halvings) whose hand, evaluated at exactly the returned joints, is in the
    box. Cutting a step only brakes, so it may exceed the acceleration limit: staying in the box
    comes first. Infeasible (None) when ``start``'s hand is itself outside the box and the target
    does not bring it back in (pose commands can lead it back).
    """
    low, high = limits.workspace_low, limits.workspace_high

    def outside(joints: np.ndarray) -> np.ndarray:
        hand = forward_kinematics(joints)
        return (hand < low) | (hand > high) | ~np.isfinite(hand)

    target_outside = outside(target)
    if not target_outside.any():
        return target, []
    start = np.clip(measured, limits.joint_low, limits.joint_high)
    if outside(start).any():
        return None, ["hand measured outside the workspace box; the joint target stays out"]
    bound_low, bound_high = np.minimum(start, target), np.maximum(start, target)
    inside_fraction, outside_fraction, safe = 0.0, 1.0, start
    for _ in range(30):
        fraction = (inside_fraction + outside_fraction) / 2
        joints = np.clip(start + fraction * (target - start), bound_low, bound_high)
        if outside(joints).any():
            outside_fraction = fraction
        else:
            inside_fraction, safe = fraction, joints
    axes = ", ".join("xyz"[i] for i in np.flatnonzero(target_outside))
    reason = f"cut joint step to {inside_fraction:.3g} of the way: hand left the box ({axes})"
    return safe, [reason]


def limit_position(
    target: np.ndarray, measured: np.ndarray, limits: SafetyLimits
) -> tuple[np.ndarray | None, list[str]]:
    """Clamp a hand position into the workspace box and a ball of ``max_translation_step``
    around the measured position.

    Moves from ``b``, the box point nearest the measured position, towards the box-clamped
    target, as far as the ball allows: the segment lies in the (convex) box, so the result is in
    both. Inside the box ``b`` is the measured position itself; outside it, the arm is led back
    in. Infeasible (None) when the measured position is more than one step outside the box.
    """
    low, high = limits.workspace_low, limits.workspace_high
    radius = limits.max_translation_step * (1 - ROUNDING_MARGIN)
    start = np.clip(measured, low, high)
    offset = start - measured
    if offset @ offset > radius * radius:
        distance = float(np.linalg.norm(offset))
        return None, [f"ee measured {distance:.3g} m outside the workspace box, beyond one step"]
    boxed = np.clip(target, low, high)
    reasons = []
    if (boxed != target).any():
        axes = ", ".join("xyz"[i] for i in np.flatnonzero(boxed != target))
        reasons.append(f"clamped ee position into the workspace box ({axes})")
    path = boxed - start
    length2 = path @ path
    along = offset @ path
    # largest a in [0, 1] with |offset + a * path| <= radius
    reach = -along + math.sqrt(max(along * along - length2 * (offset @ offset - radius**2), 0.0))
    if length2 > 0 and reach < length2:
        safe = np.clip(start + (reach / length2) * path, low, high)
        was = float(np.linalg.norm(boxed - measured))
        reasons.append(
            f"clamped ee translation {was:.3g} -> {np.linalg.norm(safe - measured):.3g} m"
        )
        return safe, reasons
    return boxed, reasons


def rotation_angle(quat_a: np.ndarray, quat_b: np.ndarray) -> float:
    """The angle (rad, in [0, pi]) of the rotation between two unit quaternions (wxyz).

    ``2 atan2(|v|, |w|)`` of the relative quaternion, accurate also for tiny angles."""
    aw, ax, ay, az = quat_a.tolist()
    bw, bx, by, bz = quat_b.tolist()
    w = abs(aw * bw + ax * bx + ay * by + az * bz)
    # vector part of conj(a) * b: aw b_v - bw a_v - a_v x b_v
    vx = aw * bx - bw * ax - (ay * bz - az * by)
    vy = aw * by - bw * ay - (az * bx - ax * bz)
    vz = aw * bz - bw * az - (ax * by - ay * bx)
    return 2.0 * math.atan2(math.sqrt(vx * vx + vy * vy + vz * vz), w)


def unit_quaternion(quat: np.ndarray) -> tuple[np.ndarray | None, float]:
    """``(quat / |quat|, |quat|)`` for a finite float64 (4,) quaternion; ``(None, |quat|)`` when
    it is not finite or shorter than ``MIN_QUAT_NORM``. Scaled by its largest absolute component
    first (module doc), so no magnitude over- or underflows; the returned norm may be inf for a
    quaternion near the float64 maximum, the unit quaternion never is."""
    peak = float(np.max(np.abs(quat)))
    if not math.isfinite(peak):
        return None, math.nan
    if peak == 0.0:
        return None, 0.0
    scaled = quat / peak
    length = math.sqrt(float(scaled @ scaled))  # in [1, 2]
    with np.errstate(over="ignore"):
        norm = float(np.float64(peak) * length)
    if norm < MIN_QUAT_NORM:
        return None, norm
    return scaled / length, norm


def limit_rotation(
    target: np.ndarray, measured: np.ndarray, limits: SafetyLimits
) -> tuple[np.ndarray | None, list[str]]:
    """Normalize a target quaternion (``unit_quaternion``) and slerp it towards the measured
    orientation until the rotation between them is at most ``max_rotation_step``. None if either
    quaternion has no direction (zero, near zero or not finite)."""
    target_unit, norm = unit_quaternion(target)
    measured_unit, measured_norm = unit_quaternion(measured)
    if measured_unit is None:
        return None, [f"measured ee quaternion has no direction (norm {measured_norm:.3g})"]
    if target_unit is None:
        return None, [f"ee quaternion has no direction (norm {norm:.3g})"]
    reasons = [] if abs(norm - 1.0) < 1e-6 else [f"normalized ee quaternion (norm {norm:.3g})"]
    target, measured = target_unit, measured_unit
    if target @ measured < 0:  # q and -q are one rotation: take the short way
        target = -target
    angle = rotation_angle(target, measured)
    allowed = limits.max_rotation_step * (1 - ROUNDING_MARGIN)
    if angle <= allowed:
        return target, reasons
    half = angle / 2
    fraction = allowed / angle
    safe = math.sin((1 - fraction) * half) * measured + math.sin(fraction * half) * target
    safe /= np.linalg.norm(safe)
    reasons.append(f"clamped ee rotation {angle:.3g} -> {rotation_angle(safe, measured):.3g} rad")
    return safe, reasons
