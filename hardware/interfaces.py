"""The small interfaces every robot backend implements: arms, grippers, cameras, and a robot.

A robot is named arms + grippers + cameras, plus optional low-dimensional sensors (e.g. a sim's
privileged object state, a force-torque sensor) and, where episodes can be reset by software (the
sim), a task control. A deploy loop only ever reads states and frames and
sends commands; everything else (connections, control modes, drivers) lives behind these classes,
so the MuJoCo sim arm and a real arm are interchangeable by config.

Time. Every timestamp is in seconds on the host's ``time.monotonic`` clock (drivers map device
clocks onto it), so observations and commands from different devices can be compared:

* observations carry the time they were *captured* (an arm state: when it was measured; a camera
  frame: the sensor's capture time, plus when it reached the host), so a runtime can compensate
  for latency;
* commands carry the time by which they should be *reached* (``target_time``), so a runtime can
  schedule a chunk of actions and a safety layer can drop commands that arrive too late.

Conventions. Arrays are float64 numpy arrays (images uint8); positions in metres, angles in
radians, orientations as unit quaternions ``(w, x, y, z)`` in the robot's base/world frame, as in
the sim (``eef_quat``). Joint vectors are ordered base to tip.

An arm's ``send_command`` is meant to be reached only through a ``hardware.safety.SafetyLayer``;
the interfaces themselves check shapes, not limits.
"""

from __future__ import annotations

import abc
import numbers
from dataclasses import dataclass, field

import numpy as np


def real_number(name: str, value: object) -> float:
    """``value`` as a float if it is a real number (not a bool, string or array), else
    ValueError. NaN and inf pass, as in ``real_vector``."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} is a {type(value).__name__}, not a real number")
    try:
        return float(value)
    except (OverflowError, ValueError, TypeError):
        raise ValueError(f"{name} does not fit a float64") from None


def real_vector(name: str, value: object, size: int | None = None) -> np.ndarray:
    """A float64 copy of ``value`` as a vector of ``size`` entries (None: any), else ValueError.

    Real numbers only: integer or floating dtypes (an object array only if it holds such
    numbers), not bools, complex numbers (whose imaginary part a cast would drop), strings or
    None. NaN and inf pass: a measured state may hold them (the safety layer rejects commands
    that do)."""
    try:
        array = np.asarray(value)
        if array.dtype.kind == "O":  # numbers held as Python objects: look at what they are
            array = np.asarray(array.tolist())
    except Exception as error:  # ragged lists, objects whose __array__ fails: not numbers
        raise ValueError(f"{name} is not an array of numbers ({type(error).__name__})") from None
    if array.dtype.kind not in "iuf":
        raise ValueError(f"{name} has dtype {array.dtype}, not real numbers")
    if array.ndim != 1 or (size is not None and array.shape[0] != size):
        raise ValueError(f"{name} has shape {array.shape}; expected ({size or 'n'},)")
    with np.errstate(over="ignore"):  # a float128 beyond float64's range becomes inf
        return array.astype(np.float64)


@dataclass(frozen=True)
class ArmState:
    """One measurement of an arm.

    ``joint_positions`` and ``joint_velocities`` (n,) in rad and rad/s; ``ee_position`` (3,) and
    ``ee_quat`` (4, wxyz) the end effector's (grip site's) pose; ``timestamp`` the capture time
    (monotonic seconds).
    """

    joint_positions: np.ndarray
    joint_velocities: np.ndarray
    ee_position: np.ndarray
    ee_quat: np.ndarray
    timestamp: float

    def __post_init__(self) -> None:
        positions = real_vector("joint_positions", self.joint_positions)
        object.__setattr__(self, "joint_positions", positions)
        object.__setattr__(
            self,
            "joint_velocities",
            real_vector("joint_velocities", self.joint_velocities, positions.shape[0]),
        )
        object.__setattr__(self, "ee_position", real_vector("ee_position", self.ee_position, 3))
        object.__setattr__(self, "ee_quat", real_vector("ee_quat", self.ee_quat, 4))


@dataclass(frozen=True)
class ArmCommand:
    """A target for an arm: joint positions *or* an end-effector pose, to be reached at
    ``target_time`` (monotonic seconds). Build one with ``ArmCommand.joints`` or
    ``ArmCommand.pose``. Values are copied, so a policy may reuse its buffers."""

    target_time: float
    joint_positions: np.ndarray | None = None
    ee_position: np.ndarray | None = None
    ee_quat: np.ndarray | None = None

    def __post_init__(self) -> None:
        has_joints = self.joint_positions is not None
        has_pose = (self.ee_position is not None, self.ee_quat is not None)
        if has_joints == any(has_pose) or (any(has_pose) and not all(has_pose)):
            raise ValueError(
                "an ArmCommand needs either joint_positions or both ee_position and ee_quat"
            )
        object.__setattr__(self, "target_time", real_number("target_time", self.target_time))
        if has_joints:
            joints = real_vector("joint_positions", self.joint_positions)
            object.__setattr__(self, "joint_positions", joints)
        else:
            object.__setattr__(self, "ee_position", real_vector("ee_position", self.ee_position, 3))
            object.__setattr__(self, "ee_quat", real_vector("ee_quat", self.ee_quat, 4))

    @classmethod
    def joints(cls, positions: np.ndarray, target_time: float) -> ArmCommand:
        """Joint-position target (rad, base to tip)."""
        return cls(target_time, joint_positions=positions)

    @classmethod
    def pose(cls, position: np.ndarray, quat: np.ndarray, target_time: float) -> ArmCommand:
        """End-effector pose target: position (m) and orientation quaternion (wxyz)."""
        return cls(target_time, ee_position=position, ee_quat=quat)

    @property
    def is_joint(self) -> bool:
        return self.joint_positions is not None


@dataclass(frozen=True)
class GripperState:
    """A gripper measurement: ``opening`` in [0, 1] (0 closed, 1 fully open), ``width`` the
    finger gap in metres where the hardware reports one, ``timestamp`` the capture time, and
    ``joint_positions`` the finger joints (the sim's ``gripper_pos``) where they are measured."""

    opening: float
    timestamp: float
    width: float | None = None
    joint_positions: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.joint_positions is not None:
            joints = real_vector("joint_positions", self.joint_positions)
            object.__setattr__(self, "joint_positions", joints)


@dataclass(frozen=True)
class GripperCommand:
    """A gripper target: ``opening`` in [0, 1] (0 closed, 1 fully open) by ``target_time``.

    The sim's action convention (-1 open, +1 closed) maps to ``opening = (1 - action) / 2``.
    """

    opening: float
    target_time: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "opening", real_number("opening", self.opening))
        object.__setattr__(self, "target_time", real_number("target_time", self.target_time))


@dataclass(frozen=True)
class CameraFrame:
    """One camera frame: ``color`` (H, W, 3) uint8 RGB; ``depth`` (H, W) float32 metres or None;
    ``capture_time`` the sensor's capture time mapped onto the monotonic clock, ``receive_time``
    when the frame reached the host (their difference is the transport latency)."""

    color: np.ndarray
    capture_time: float
    receive_time: float
    depth: np.ndarray | None = None

    def __post_init__(self) -> None:
        color = self.color
        if color.dtype != np.uint8 or color.ndim != 3 or color.shape[2] != 3:
            raise ValueError(f"color must be (H, W, 3) uint8; got {color.shape} {color.dtype}")
        depth = self.depth
        if depth is not None and (depth.dtype != np.float32 or depth.shape != color.shape[:2]):
            raise ValueError(
                f"depth must be (H, W) float32 matching color {color.shape[:2]}; "
                f"got {depth.shape} {depth.dtype}"
            )


class Device(abc.ABC):
    """Anything holding a connection: ``close()`` releases it; usable as a context manager."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release the device. An arm stops its motion first. Safe to call twice."""

    def __enter__(self):
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class Arm(Device):
    """A position-controlled arm.

    ``hold`` and ``stop`` are the safe fallbacks a safety layer uses; they must work at any time,
    also from another thread than the one sending commands. Both are idempotent: repeated calls
    keep the state the first one entered, until the next ``send_command`` leaves it.
    """

    @abc.abstractmethod
    def read_state(self) -> ArmState:
        """The latest measured state."""

    @abc.abstractmethod
    def send_command(self, command: ArmCommand) -> ArmCommand | None:
        """Start moving towards ``command``'s target so as to arrive at its ``target_time``
        (interpolating from the current state, not sooner: the safety layer's velocity limits
        assume it). Returns at once; the newest command replaces any earlier one. A
        ``SafetyLayer`` (and a served arm's proxy) returns the command it actually forwarded,
        None when it forwarded none; a driver, which forwards what it gets, returns None."""

    @abc.abstractmethod
    def hold(self) -> None:
        """Actively hold the pose measured now (a controlled stop: brake to rest there)."""

    @abc.abstractmethod
    def stop(self) -> None:
        """Stop the arm as the hardware's protective stop does (brakes, or power off the
        motion); a later ``send_command`` resumes only where the hardware allows it."""


class Gripper(Device):
    """A gripper commanded by a normalized opening."""

    @abc.abstractmethod
    def read_state(self) -> GripperState:
        """The latest measured state."""

    @abc.abstractmethod
    def send_command(self, command: GripperCommand) -> GripperCommand | None:
        """Start moving towards ``command.opening``; returns at once. A
        ``hardware.safety.GripperGuard`` (and a served gripper's proxy) returns the command it
        forwarded (None: none); a driver returns None."""


class Camera(Device):
    """A camera streaming frames in the background."""

    @abc.abstractmethod
    def read(self) -> CameraFrame:
        """The newest frame (blocks until the first one has arrived)."""


@dataclass(frozen=True)
class SensorReading:
    """One reading of a low-dimensional sensor: ``values`` (k,) float64, ``timestamp`` the
    capture time (monotonic seconds)."""

    values: np.ndarray
    timestamp: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "values", real_vector("values", self.values))
        object.__setattr__(self, "timestamp", float(self.timestamp))


class Sensor(Device):
    """A low-dimensional sensor with a fixed number of values, e.g. a force-torque sensor or the
    sim's privileged ``object_state`` (which state-based policies are trained on)."""

    @abc.abstractmethod
    def read(self) -> SensorReading:
        """The newest reading."""


class TaskControl(Device):
    """Episode control where software can reset the world (the sim; a real cell with an
    automatic reset): a new episode per seed, and what the task knows about it."""

    @abc.abstractmethod
    def reset_episode(self, seed: int) -> None:
        """Start a new episode, deterministic for ``seed``; the arm holds its new pose."""

    @abc.abstractmethod
    def task_info(self) -> dict:
        """At least ``{"is_success": bool}`` for the current episode; JSON-serialisable."""


@dataclass
class Robot:
    """Named arms, grippers and cameras, e.g. ``arms={"right": ...}, cameras={"wrist": ...}``;
    named low-dimensional ``sensors``; an optional ``task`` control (episodes reset by software);
    ``info``, a JSON-serialisable static description (e.g. the sim's ``home_quat``,
    ``workspace_low``/``workspace_high``, ``control_hz``) that tools such as
    ``hardware.robot_io.RobotIO`` read their defaults from.

    Closing the robot closes arms first (they stop), then grippers, cameras, sensors, the task.
    """

    arms: dict[str, Arm] = field(default_factory=dict)
    grippers: dict[str, Gripper] = field(default_factory=dict)
    cameras: dict[str, Camera] = field(default_factory=dict)
    sensors: dict[str, Sensor] = field(default_factory=dict)
    task: TaskControl | None = None
    info: dict = field(default_factory=dict)

    def reset_episode(self, seed: int) -> None:
        """Start a new episode (see ``TaskControl``); a robot without a task control cannot."""
        self._task().reset_episode(seed)

    def task_info(self) -> dict:
        """The task's view of the current episode, at least ``{"is_success": bool}``."""
        return self._task().task_info()

    def _task(self) -> TaskControl:
        if self.task is None:
            raise RuntimeError(
                "this robot has no task control: its episodes cannot be reset or scored by "
                "software (a real cell is reset by a person)"
            )
        return self.task

    def close(self) -> None:
        """Close every device even if one fails, then re-raise the first failure."""
        errors: list[Exception] = []
        task = {} if self.task is None else {"task": self.task}
        for group in (self.arms, self.grippers, self.cameras, self.sensors, task):
            for device in group.values():
                try:
                    device.close()
                except Exception as error:  # the other devices must still close
                    errors.append(error)
        if errors:
            raise errors[0]

    def __enter__(self) -> Robot:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
