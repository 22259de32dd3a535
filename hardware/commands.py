"""Strict checks of the commands entering and leaving the safety layer.

``ArmCommand`` and ``GripperCommand`` convert and type-check what they are given on construction
(``hardware.interfaces.real_number`` / ``real_vector``), but a command can still reach
``hardware.safety.SafetyLayer`` holding anything: a subclass, a command built around
``__post_init__``, arrays changed by another thread after construction. So the layer trusts none
of it and rebuilds every command from scratch with ``check_arm_command`` before limiting it, and
checks the result with ``outgoing_problem`` before forwarding it (the last line of defence
against a clamp's bug):

* a value must be a real number or an array of real numbers (integer or floating dtypes, object
  arrays only if they hold such numbers): no bools, complex numbers, strings, None or ragged
  lists;
* vectors must have exactly the arm's length (joints) or 3 / 4 entries (pose), scalars are not
  broadcast, and every entry must be finite (``float16`` or ``longdouble`` values too, after the
  conversion to float64);
* a quaternion must have a direction (``hardware.limits.unit_quaternion``: not zero or near
  zero, whatever its magnitude).

Each returns the reason a command cannot be used (or None), for the layer's log.
"""

from __future__ import annotations

import math

import numpy as np

from hardware.interfaces import ArmCommand, GripperCommand, real_number, real_vector
from hardware.limits import SafetyLimits, unit_quaternion

UNIT_TOLERANCE = 1e-9  # how far from 1 the norm of a forwarded quaternion may be


def finite_number(name: str, value: object) -> tuple[float | None, str | None]:
    """``(float(value), None)`` for a finite real number (``hardware.interfaces.real_number``),
    else ``(None, why)``."""
    try:
        number = real_number(name, value)
    except ValueError as error:
        return None, str(error)
    if not math.isfinite(number):
        return None, f"{name} is {number}"
    return number, None


def finite_vector(name: str, value: object, size: int) -> tuple[np.ndarray | None, str | None]:
    """A fresh finite float64 array of shape ``(size,)`` from ``value`` (the rules of
    ``hardware.interfaces.real_vector``), else ``(None, why)``."""
    try:
        array = real_vector(name, value, size)
    except ValueError as error:
        return None, str(error)
    if not np.isfinite(array).all():
        return None, f"{'NaN' if np.isnan(array).any() else 'inf'} in {name}"
    return array, None


def check_arm_command(command: object, n_joints: int) -> tuple[ArmCommand | None, str | None]:
    """A new ``ArmCommand`` holding checked copies of ``command``'s values, or (None, why)."""
    if not isinstance(command, ArmCommand):
        return None, f"not an ArmCommand but a {type(command).__name__}"
    target_time, problem = finite_number("target time", command.target_time)
    if problem:
        return None, problem
    joints, position, quat = command.joint_positions, command.ee_position, command.ee_quat
    has_pose = (position is not None, quat is not None)
    if (joints is not None) == any(has_pose) or any(has_pose) != all(has_pose):
        return None, "needs either joint positions or both ee position and ee quaternion"
    if joints is not None:
        joints, problem = finite_vector("joint positions", joints, n_joints)
        return (None, problem) if problem else (ArmCommand.joints(joints, target_time), None)
    position, problem = finite_vector("ee position", position, 3)
    if problem:
        return None, problem
    quat, problem = finite_vector("ee quaternion", quat, 4)
    if problem:
        return None, problem
    unit, norm = unit_quaternion(quat)
    if unit is None:
        return None, f"ee quaternion has no direction (norm {norm:.3g})"
    return ArmCommand.pose(position, quat, target_time), None


def outgoing_problem(
    command: ArmCommand, limits: SafetyLimits, now: float, forward_kinematics=None
) -> str | None:
    """Why a limited command must still not be forwarded (None: it may): the last check, after
    every clamp, that it is finite, within the joint limits (and its hand, where the kinematics
    are known) or the workspace box, has a unit quaternion and a target time no further ahead
    than ``max_target_lead``."""
    lead = command.target_time - now
    if not (math.isfinite(command.target_time) and lead <= limits.max_target_lead):
        return f"target time {lead:.3g} s ahead"
    if command.is_joint:
        joints = command.joint_positions
        if not np.isfinite(joints).all():
            return "non-finite joint target"
        if (joints < limits.joint_low).any() or (joints > limits.joint_high).any():
            return "joint target outside the joint limits"
        if forward_kinematics is not None:
            hand = forward_kinematics(joints)
            inside = (hand >= limits.workspace_low) & (hand <= limits.workspace_high)
            if not inside.all():  # NaN compares False: outside too
                return "the joint target's hand outside the workspace box"
        return None
    position, quat = command.ee_position, command.ee_quat
    if not (np.isfinite(position).all() and np.isfinite(quat).all()):
        return "non-finite pose target"
    if (position < limits.workspace_low).any() or (position > limits.workspace_high).any():
        return "ee target outside the workspace box"
    if abs(math.sqrt(float(quat @ quat)) - 1.0) > UNIT_TOLERANCE:
        return f"ee quaternion of norm {math.sqrt(float(quat @ quat)):.12g}, not 1"
    return None


def limit_gripper(command: object) -> tuple[GripperCommand | None, list[str]]:
    """The gripper command to forward: its opening clamped into [0, 1], or None (with why) when
    the opening or the target time is not a finite real number."""
    if not isinstance(command, GripperCommand):
        return None, [f"not a GripperCommand but a {type(command).__name__}"]
    opening, problem = finite_number("gripper opening", command.opening)
    target_time, time_problem = finite_number("target time", command.target_time)
    if problem or time_problem:
        return None, [problem or time_problem]
    safe = min(max(opening, 0.0), 1.0)
    reasons = [] if safe == opening else [f"clamped gripper opening {opening:.3g} -> {safe:g}"]
    return GripperCommand(safe, target_time), reasons
