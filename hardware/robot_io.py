"""The bridge between a ``Robot`` and a policy's dataset format (its ``shape_meta``).

A policy was trained on dataset frames (``observation key -> array`` with the dataset's shapes
and dtypes) and emits dataset actions (``ee_delta``, ``ee_pose`` or ``joint_pos``, the last entry
the gripper, as the sim's controller defines them). ``RobotIO`` turns a robot's measurements into
such frames and such actions into robot commands, so a deploy runtime and a teleop recorder see
the robot exactly as the dataset did::

    io = RobotIO(robot, shape_meta, action_space="ee_delta")
    obs, capture_times = io.observe()   # {key: one frame, dataset dtype/shape}, {key: time}
    io.act(action, target_time)         # action (Da,), target_time on time.monotonic

Where each observation key comes from (first match wins):

* a key named like one of ``robot.sensors`` -> that sensor's values (e.g. ``object_state``);
* ``joint_pos``, ``eef_pos``, ``eef_quat`` -> the arm's state (quaternion wxyz, with the sign
  nearer ``home_quat`` where that is known, as the sim's ``eef_quat``);
* ``gripper_pos`` -> the gripper's measured finger joints (``GripperState.joint_positions``);
* ``<camera>_rgb`` / ``<camera>_depth`` -> that camera's color image / depth as (H, W, 1);

each with the capture time of its measurement (``capture_times``). Low-dim values and depth are
float32, images uint8, as the dataset stores them (``robopolicy.data.shape_meta``).

Actions (``act`` returns a ``SentAction``: the commands it made and those that reached the
robot, which the arm's safety layer may have clamped, or not forwarded at all):

* ``ee_delta`` ``[dx, dy, dz, drx, dry, drz, g]`` in [-1, 1]: as ``sim``'s ``ArmController``:
  ``max_delta_pos * d`` added to the hand position *measured now*, ``max_delta_rot * dr`` a
  world-frame rotation vector applied to the measured orientation;
* ``ee_pose`` ``[x, y, z, rx, ry, rz, g]``: a hand position and a world-frame rotation vector
  relative to ``home_quat``;
* ``joint_pos`` ``[q_1 .. q_n, g]``: joint angles;

hand positions clipped into the workspace box where one is known (as the sim's controller does;
the arm's safety layer enforces its own limits regardless); ``g`` in [-1, 1] (-1 open, +1
closed) becomes ``GripperCommand(opening=(1 - g) / 2)``. Each command carries ``target_time``.

Defaults for ``home_quat``, the workspace box and the delta scales come from ``robot.info``
(the sim robot fills it in), else the sim controller's scales (5 cm, 0.25 rad). Everything is
checked at construction by reading each device once: a key the robot cannot provide, a shape
that differs from ``shape_meta``, an action size that does not fit the action space, or a missing
``home_quat`` for ``ee_pose`` raises one ``ValueError`` naming it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from hardware.interfaces import ArmCommand, GripperCommand, Robot
from robopolicy.data.shape_meta import validate_shape_meta
from sim.controllers.arm_controller import compose

ACTION_SPACES = ("ee_delta", "ee_pose", "joint_pos")
ARM_KEYS = {"joint_pos": "joint_positions", "eef_pos": "ee_position", "eef_quat": "ee_quat"}
DTYPES = {"rgb": np.uint8, "depth": np.float32, "low_dim": np.float32}
DEFAULT_MAX_DELTA_POS = 0.05  # m, sim.controllers.ArmController's default
DEFAULT_MAX_DELTA_ROT = 0.25  # rad, likewise

# a reading: (device group, device name) -> (measurement, capture time)
Readings = dict[tuple[str, str], tuple[object, float]]


@dataclass(frozen=True)
class SentAction:
    """One action as ``RobotIO.act`` commanded it (``requested``) and as it reached the robot:
    ``arm``, the command the arm's safety layer forwarded (None: it forwarded none, having
    rejected, dropped or replaced it), and ``gripper``, the command the gripper got (None: none)."""

    requested: ArmCommand
    arm: ArmCommand | None
    gripper: GripperCommand | None

    def vector(self) -> np.ndarray:
        """``[arm target, gripper opening]`` of what was sent (float64): joint positions, or the
        hand position and ``wxyz`` quaternion, as ``requested`` has them; zeros where nothing was
        sent (``arm_forwarded`` tells them apart)."""

        def values(command: ArmCommand) -> np.ndarray:
            if command.is_joint:
                return command.joint_positions
            return np.concatenate([command.ee_position, command.ee_quat])

        arm = values(self.arm) if self.arm is not None else np.zeros_like(values(self.requested))
        opening = 0.0 if self.gripper is None else float(self.gripper.opening)
        return np.concatenate([arm, [opening]])

    @property
    def arm_forwarded(self) -> bool:
        return self.arm is not None


def _only(devices: dict, name: str | None, what: str):
    """The device called ``name``, or the only one when ``name`` is None."""
    if name is None:
        if len(devices) != 1:
            raise ValueError(f"the robot has {len(devices)} {what}s {list(devices)}; name one")
        name = next(iter(devices))
    if name not in devices:
        raise ValueError(f"the robot has no {what} {name!r}; it has {list(devices)}")
    return name, devices[name]


class RobotIO:
    """See the module doc. ``arm`` / ``gripper`` name the devices when the robot has several."""

    def __init__(
        self,
        robot: Robot,
        shape_meta: dict,
        action_space: str,
        arm: str | None = None,
        gripper: str | None = None,
        home_quat: np.ndarray | None = None,
        workspace_low: np.ndarray | None = None,
        workspace_high: np.ndarray | None = None,
        max_delta_pos: float | None = None,
        max_delta_rot: float | None = None,
    ) -> None:
        if action_space not in ACTION_SPACES:
            raise ValueError(f"action_space={action_space!r}; expected one of {ACTION_SPACES}")
        self.robot = robot
        self.shape_meta = validate_shape_meta(shape_meta)
        self.action_space = action_space
        info = robot.info
        self.arm_name, self.arm = _only(robot.arms, arm, "arm")
        self.gripper_name, self.gripper = _only(robot.grippers, gripper, "gripper")
        self.home_quat = _optional(home_quat, info.get("home_quat"))
        self.workspace_low = _optional(workspace_low, info.get("workspace_low"))
        self.workspace_high = _optional(workspace_high, info.get("workspace_high"))
        self.max_delta_pos = float(
            max_delta_pos or info.get("max_delta_pos", DEFAULT_MAX_DELTA_POS)
        )
        self.max_delta_rot = float(
            max_delta_rot or info.get("max_delta_rot", DEFAULT_MAX_DELTA_ROT)
        )
        self._sources = {
            key: self._source(key, spec["type"]) for key, spec in self.shape_meta["obs"].items()
        }
        self._check_observation()
        self._check_action()

    # ---- observations -----------------------------------------------------------------------

    def observe(self) -> tuple[dict[str, np.ndarray], dict[str, float]]:
        """One frame per dataset observation key (dataset dtype and shape) and the capture time
        of each; every device is read once."""
        readings: Readings = {}
        obs, times = {}, {}
        for key, (device, extract, dtype) in self._sources.items():
            if device not in readings:
                readings[device] = self._read(device)
            measurement, stamp = readings[device]
            obs[key] = np.asarray(extract(measurement), dtype=dtype)
            times[key] = stamp
        return obs, times

    def _source(self, key: str, obs_type: str) -> tuple[tuple[str, str], Callable, type]:
        """(device, extractor, dtype) for one observation key; ValueError if none fits."""
        dtype = DTYPES[obs_type]
        robot = self.robot
        if key in robot.sensors:
            return ("sensors", key), lambda reading: reading.values, dtype
        if key == "eef_quat" and self.home_quat is not None:
            return ("arms", self.arm_name), self._quat_near_home, dtype
        if key in ARM_KEYS:
            field = ARM_KEYS[key]
            return ("arms", self.arm_name), lambda state: getattr(state, field), dtype
        if key == "gripper_pos":
            return ("grippers", self.gripper_name), lambda state: state.joint_positions, dtype
        camera, _, kind = key.rpartition("_")
        if camera in robot.cameras and kind == "rgb":
            return ("cameras", camera), lambda frame: frame.color, dtype
        if camera in robot.cameras and kind == "depth":
            return ("cameras", camera), lambda frame: frame.depth[..., None], dtype
        raise ValueError(
            f"the robot cannot provide observation key {key!r}: it has sensors "
            f"{list(robot.sensors)}, cameras {list(robot.cameras)} (keys <camera>_rgb, "
            f"<camera>_depth), arm keys {list(ARM_KEYS)} and gripper_pos"
        )

    def _quat_near_home(self, state) -> np.ndarray:
        """The hand quaternion with the sign (q and -q are one rotation) nearer ``home_quat``,
        as the sim's ``eef_quat``, so it does not jump while the hand points down."""
        quat = state.ee_quat
        return -quat if quat @ self.home_quat < 0 else quat

    def _read(self, device: tuple[str, str]) -> tuple[object, float]:
        group, name = device
        owner = getattr(self.robot, group)[name]
        if group == "cameras":
            frame = owner.read()
            return frame, frame.capture_time
        reading = owner.read() if group == "sensors" else owner.read_state()
        return reading, reading.timestamp

    def _check_observation(self) -> None:
        readings: Readings = {}
        for key, (device, extract, _) in self._sources.items():
            if device not in readings:
                readings[device] = self._read(device)
            value = extract(readings[device][0])
            shape = tuple(self.shape_meta["obs"][key]["shape"])
            if value is None:
                raise ValueError(
                    f"the robot's {device[0][:-1]} {device[1]!r} does not measure what "
                    f"observation key {key!r} needs"
                )
            if np.shape(value) != shape:
                raise ValueError(
                    f"observation key {key!r}: the robot gives shape {np.shape(value)}, "
                    f"the policy's shape_meta expects {shape}"
                )

    # ---- actions ----------------------------------------------------------------------------

    def act(self, action: np.ndarray, target_time: float) -> SentAction:
        """Send one dataset action, to be reached at ``target_time``; returns what was sent."""
        action = np.asarray(action, dtype=np.float64)
        if action.shape != (self.action_dim,):
            raise ValueError(f"action has shape {action.shape}; expected ({self.action_dim},)")
        if not np.isfinite(action).all():
            raise ValueError(f"action has a NaN or inf: {action}")
        motion = action[:-1]
        if self.action_space == "joint_pos":
            arm_command = ArmCommand.joints(motion, target_time)
        else:
            if self.action_space == "ee_delta":
                delta = np.clip(motion, -1.0, 1.0)
                state = self.arm.read_state()
                position = state.ee_position + self.max_delta_pos * delta[:3]
                quat = compose(self.max_delta_rot * delta[3:], state.ee_quat)
            else:
                position, quat = motion[:3], compose(motion[3:], self.home_quat)
            if self.workspace_low is not None and self.workspace_high is not None:
                position = np.clip(position, self.workspace_low, self.workspace_high)
            arm_command = ArmCommand.pose(position, quat, target_time)
        opening = (1.0 - float(np.clip(action[-1], -1.0, 1.0))) / 2.0
        gripper_command = GripperCommand(opening, float(target_time))
        sent_arm = self.arm.send_command(arm_command)
        sent_gripper = self.gripper.send_command(gripper_command)
        return SentAction(arm_command, sent_arm, sent_gripper)

    @property
    def action_dim(self) -> int:
        return self.shape_meta["action"]["shape"][0]

    def _check_action(self) -> None:
        shape = self.shape_meta["action"]["shape"]
        joints = len(self.arm.read_state().joint_positions)
        expected = joints + 1 if self.action_space == "joint_pos" else 7
        if len(shape) != 1 or shape[0] != expected:
            raise ValueError(
                f"shape_meta action shape {shape} does not fit action_space="
                f"{self.action_space!r} on this robot: expected [{expected}]"
            )
        if self.action_space == "ee_pose" and self.home_quat is None:
            raise ValueError(
                "action_space='ee_pose' needs home_quat (the orientation its rotation vectors "
                "are relative to): pass it, or use a robot whose info has 'home_quat'"
            )


def _optional(value: object, default: object) -> np.ndarray | None:
    chosen = default if value is None else value
    return None if chosen is None else np.asarray(chosen, dtype=np.float64)
