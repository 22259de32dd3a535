"""A Franka (Panda / FR3) arm through franky (``pip install franky-control``), a maintained
Python client over libfranka whose wheels install here.

Why franky. Of the Python clients probed, ``franky-control`` 2.0.0 installs from a wheel with
only ``websockets`` besides numpy 1.26; ``panda-python`` 1.1.1 pulls numpy 2, which this project
cannot take (robosuite pins numpy < 2). The FCI (Franka Control Interface) needs a real-time
kernel on the controlling PC; ``realtime`` chooses whether franky enforces one.

Commands. franky plans every motion on the robot's 1 kHz control loop with Ruckig (jerk-limited,
within the robot's velocity/acceleration/jerk limits scaled by ``dynamics_factor``) and a newly
sent asynchronous motion takes over from the running one seamlessly. Each ``ArmCommand`` becomes
a one-waypoint motion (``JointWaypointMotion`` or ``CartesianWaypointMotion``) whose
``minimum_time`` is the time left until its target time, so the arm arrives then and not sooner
(later only if the limits do not allow it), and holds the target afterwards.

``hold()`` sends the stop motion of the running control type (joint or Cartesian: franky cannot
switch types while moving), which decelerates to rest; ``stop()`` stops every motion
(``Robot.stop``). After a reflex (collision, limit violation) the robot is in an error state;
the next command first runs franky's automatic error recovery.

State. ``read_state`` returns franky's latest ``RobotState`` (measured ``q``, ``dq``, the
end-effector pose in the base frame ``O_T_EE``), stamped with the robot's own clock
(``state.time``, milliseconds since it started) mapped onto ``time.monotonic`` by
``DeviceClockMap``.

Kinematics. ``forward_kinematics(joints)`` is the end-effector position ``O_T_EE`` would report
at those joints: Franka's Denavit-Hartenberg kinematics (``hardware.kinematics``; Panda and FR3
share them) with ``ee_offset``, the translation of the flange-to-end-effector transform
``F_T_EE`` set in Desk (the Franka Hand's 0.1034 m by default). ``hardware.factory`` gives it to
the arm's safety layer, so joint commands stay in the workspace box too, after checking it
against the pose the arm measures.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

import numpy as np

from hardware.interfaces import Arm, ArmCommand, ArmState
from hardware.kinematics import FRANKA_HAND_OFFSET, franka_kinematics
from hardware.realsense import DeviceClockMap
from hardware.ur_rtde_arm import check_reachable

FCI_PORT = 1337  # libfranka's command port on the robot
FRANKY_PIN = "franky-control==2.0.0"  # the release checked to install here


def import_franky():
    """franky, imported on first use so that ``hardware`` imports without it."""
    try:
        import franky
    except ImportError as error:
        raise ImportError(
            f"the Franka arm driver needs the 'franky-control' package: pip install {FRANKY_PIN}"
        ) from error
    return franky


class FrankaArm(Arm):
    """A Franka arm at ``ip`` (the FCI address); see the module doc. ``dynamics_factor`` in
    (0, 1] scales the robot's velocity, acceleration and jerk limits; ``realtime``: enforce a
    real-time kernel (franky refuses to connect without one). ``connect_timeout``: seconds to
    wait for the FCI port. ``ee_offset``: m, the end effector in the flange frame (module
    doc)."""

    def __init__(
        self,
        ip: str,
        dynamics_factor: float = 0.2,
        realtime: bool = True,
        connect_timeout: float = 2.0,
        ee_offset: Sequence[float] = FRANKA_HAND_OFFSET,
    ) -> None:
        self._kinematics = franka_kinematics(ee_offset)
        if not 0 < dynamics_factor <= 1:
            raise ValueError(f"FrankaArm dynamics_factor must be in (0, 1]; got {dynamics_factor}")
        franky = self._franky = import_franky()
        check_reachable(ip, FCI_PORT, connect_timeout, "Franka arm (FCI)")
        self.ip = ip
        modes = franky.RealtimeConfig
        realtime_config = modes.Enforce if realtime else modes.Ignore
        try:
            self._robot = franky.Robot(
                ip,
                relative_dynamics_factor=franky.RelativeDynamicsFactor(dynamics_factor),
                realtime_config=realtime_config,
            )
        except franky.Exception as error:
            raise ConnectionError(
                f"could not connect to the Franka arm at {ip} ({error}); is FCI enabled in Desk, "
                "the brakes open and the user stop released?"
            ) from error
        self._clock_map = DeviceClockMap()
        self._lock = threading.Lock()
        self._moving_joint: bool | None = None  # control type of the running motion, if any
        self._closed = False

    def read_state(self) -> ArmState:
        state = self._robot.state
        pose = state.O_T_EE
        x, y, z, w = np.array(pose.quaternion)
        timestamp = self._clock_map(state.time.to_sec(), time.monotonic())
        return ArmState(
            joint_positions=np.array(state.q),
            joint_velocities=np.array(state.dq),
            ee_position=np.array(pose.translation),
            ee_quat=np.array([w, x, y, z]),
            timestamp=timestamp,
        )

    def forward_kinematics(self, joints: np.ndarray) -> np.ndarray:
        """The end-effector position (base frame) at ``joints`` (module doc)."""
        return self._kinematics(joints)

    def send_command(self, command: ArmCommand) -> None:
        """Start a motion reaching ``command``'s target at its target time (module doc)."""
        franky = self._franky
        left = max(command.target_time - time.monotonic(), 0.0)
        minimum_time = franky.Duration(round(left * 1000))
        with self._lock:
            if self._robot.has_errors:
                self._robot.recover_from_errors()
                self._moving_joint = None
            if self._moving_joint is not None and self._moving_joint != command.is_joint:
                self._robot.stop()  # franky cannot switch control types during a motion
            if command.is_joint:
                target = franky.JointState(command.joint_positions)
                waypoint = franky.JointWaypoint(target, minimum_time=minimum_time)
                motion = franky.JointWaypointMotion([waypoint], return_when_finished=False)
            else:
                w, x, y, z = command.ee_quat
                affine = franky.Affine(command.ee_position, np.array([x, y, z, w]))
                target = franky.CartesianState(franky.RobotPose(affine))
                waypoint = franky.CartesianWaypoint(target, minimum_time=minimum_time)
                motion = franky.CartesianWaypointMotion([waypoint], return_when_finished=False)
            self._robot.move(motion, asynchronous=True)
            self._moving_joint = command.is_joint

    def hold(self) -> None:
        """Decelerate the running motion to rest (a stop motion of its control type)."""
        franky = self._franky
        with self._lock:
            if self._moving_joint is None:
                return
            stop = franky.JointStopMotion() if self._moving_joint else franky.CartesianStopMotion()
            self._robot.move(stop, asynchronous=True)
            self._moving_joint = None

    def stop(self) -> None:
        """Stop every motion (``franky.Robot.stop``)."""
        with self._lock:
            self._robot.stop()
            self._moving_joint = None

    def close(self) -> None:
        """Stop the arm; franky disconnects when the robot object is released."""
        if self._closed:
            return
        self._closed = True
        self.stop()
        del self._robot
