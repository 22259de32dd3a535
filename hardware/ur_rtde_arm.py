"""A Universal Robots arm over RTDE (the ``ur_rtde`` package): servo control at the controller
rate, with each command interpolated over the time until its target time.

Connection. ``URArm(ip)`` first opens a plain TCP connection to the RTDE port (30004) with a
short timeout, so an unreachable arm fails at once with its address in the message (ur_rtde's own
connect can wait much longer); then it starts ``RTDEReceiveInterface`` (state at the controller
rate) and ``RTDEControlInterface`` (uploads the control script; the arm must be in remote
control mode). ``ur_rtde`` is imported only then, so this module imports without it.

Control. A thread runs at the controller rate (500 Hz on e-Series, 125 Hz on CB3), paced by
ur_rtde's ``initPeriod``/``waitPeriod``. Each ``send_command`` starts a *segment*: from the set
point commanded last (or the measured state, when the arm was idle or the command switches
between joint and pose targets) to the command's target, reached at its ``target_time``. Every
period the thread evaluates the segment at the current time (``interpolate_segment``: joints
linearly; a pose's position linearly and its orientation by slerp) and streams the result with
``servoJ`` or ``servoL``, whose ``lookahead_time`` and ``gain`` smooth the tracking. A target
time already past is a step to the target (the safety layer in front bounds its size).

``hold()`` ends servo mode with ``servoStop`` (the arm decelerates to rest where it is) and
``stop()`` also ends the control script (no motion is possible until the next command
re-uploads it). Neither triggers the protective stop, which would need the pendant to clear.

State. ``read_state`` returns RTDE's latest actual joints, joint velocities and TCP pose (the
rotation vector turned into a ``wxyz`` quaternion), stamped with the controller's own clock
(``getTimestamp``) mapped onto ``time.monotonic`` by ``DeviceClockMap`` (the smallest offset
seen lately), so that states are spaced exactly as the controller measured them.

Kinematics. ``forward_kinematics(joints)`` is the TCP position the arm would report at those
joints: the ``model``'s Denavit-Hartenberg kinematics (``hardware.kinematics``; the UR5e's)
with ``tcp_offset``, the translation of the TCP offset set on the controller (the flange when
none is set). ``hardware.factory`` gives it to the arm's safety layer, so joint commands stay in
the workspace box too, after checking it against the TCP the arm measures.
"""

from __future__ import annotations

import math
import socket
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from hardware.interfaces import Arm, ArmCommand, ArmState
from hardware.kinematics import ur5e_kinematics
from hardware.realsense import DeviceClockMap

RTDE_PORT = 30004
UR_RTDE_PIN = "ur_rtde==1.6.5"  # the release checked to install here (no other dependencies)
UR_KINEMATICS = {"ur5e": ur5e_kinematics}  # model -> tool-point kinematics for a TCP offset


def rotvec_to_quat(rotvec: np.ndarray) -> np.ndarray:
    """A rotation vector (axis * angle, UR's pose convention) as a unit quaternion ``wxyz``."""
    rotvec = np.asarray(rotvec, dtype=np.float64)
    angle = float(np.linalg.norm(rotvec))
    if angle < 1e-12:
        return np.array([1.0, *(rotvec / 2)]) / math.sqrt(1 + angle**2 / 4)
    return np.array([math.cos(angle / 2), *(math.sin(angle / 2) * rotvec / angle)])


def quat_to_rotvec(quat: np.ndarray) -> np.ndarray:
    """A quaternion ``wxyz`` (any norm, either sign) as a rotation vector of angle <= pi."""
    quat = np.asarray(quat, dtype=np.float64)
    quat = quat / np.linalg.norm(quat)
    if quat[0] < 0:
        quat = -quat
    sine = float(np.linalg.norm(quat[1:]))
    if sine < 1e-12:
        return 2 * quat[1:]
    return quat[1:] * (2 * math.atan2(sine, quat[0]) / sine)


def slerp(quat_a: np.ndarray, quat_b: np.ndarray, fraction: float) -> np.ndarray:
    """The unit quaternion ``fraction`` of the way from ``quat_a`` to ``quat_b`` (short way)."""
    quat_a = quat_a / np.linalg.norm(quat_a)
    quat_b = quat_b / np.linalg.norm(quat_b)
    cosine = float(quat_a @ quat_b)
    if cosine < 0:
        quat_b, cosine = -quat_b, -cosine
    if cosine > 1 - 1e-9:  # (nearly) the same rotation: the linear blend is exact enough
        blend = quat_a + fraction * (quat_b - quat_a)
        return blend / np.linalg.norm(blend)
    angle = math.acos(cosine)
    blend = math.sin((1 - fraction) * angle) * quat_a + math.sin(fraction * angle) * quat_b
    return blend / math.sin(angle)


@dataclass(frozen=True)
class Segment:
    """A move from ``start`` at ``start_time`` to ``goal`` at ``target_time`` (monotonic s).
    Joint segments hold joint vectors; pose segments ``(position (3,), quat wxyz (4,))``."""

    is_joint: bool
    start: tuple[np.ndarray, ...]
    goal: tuple[np.ndarray, ...]
    start_time: float
    target_time: float


def interpolate_segment(segment: Segment, now: float) -> tuple[np.ndarray, ...]:
    """The set point of ``segment`` at ``now``: the start before it begins, the goal from its
    target time on (also when that is not after its start), linear/slerp in between."""
    span = segment.target_time - segment.start_time
    fraction = 1.0 if span <= 0 else min(max((now - segment.start_time) / span, 0.0), 1.0)
    if segment.is_joint:
        (start,), (goal,) = segment.start, segment.goal
        return (start + fraction * (goal - start),)
    (start_pos, start_quat), (goal_pos, goal_quat) = segment.start, segment.goal
    return start_pos + fraction * (goal_pos - start_pos), slerp(start_quat, goal_quat, fraction)


def check_reachable(ip: str, port: int, timeout: float, what: str) -> None:
    """Open and close a TCP connection to ``ip:port``, or raise ConnectionError saying why."""
    try:
        with socket.create_connection((ip, port), timeout=timeout):
            pass
    except OSError as error:
        reason = "timed out" if isinstance(error, TimeoutError) else str(error)
        raise ConnectionError(
            f"{what} at {ip}:{port} is unreachable: {reason} (timeout {timeout} s); check the "
            "IP, the network cable and that the arm is powered on"
        ) from error


class URArm(Arm):
    """A UR arm at ``ip``; see the module doc. ``frequency``: the controller rate in Hz (500
    for e-Series, 125 for CB3). ``gain`` (100-2000) and ``lookahead_time`` (0.03-0.2 s): the
    servo tracking gain and smoothing. ``stop_deceleration``: m/s^2 (tool) for ``servoStop``.
    ``connect_timeout``: seconds to wait for the RTDE port. ``model`` (a key of
    ``UR_KINEMATICS``) and ``tcp_offset`` (m, flange frame): the kinematics of
    ``forward_kinematics``."""

    def __init__(
        self,
        ip: str,
        frequency: float = 500.0,
        gain: float = 300.0,
        lookahead_time: float = 0.1,
        stop_deceleration: float = 2.0,
        connect_timeout: float = 2.0,
        model: str = "ur5e",
        tcp_offset: Sequence[float] = (0.0, 0.0, 0.0),
    ) -> None:
        if model not in UR_KINEMATICS:
            known = list(UR_KINEMATICS)
            raise ValueError(f"URArm model {model!r} has no kinematics; known: {known}")
        self._kinematics = UR_KINEMATICS[model](tcp_offset)
        if not 100 <= gain <= 2000:
            raise ValueError(f"URArm gain must be in [100, 2000]; got {gain}")
        if not 0.03 <= lookahead_time <= 0.2:
            raise ValueError(f"URArm lookahead_time must be in [0.03, 0.2] s; got {lookahead_time}")
        if frequency <= 0:
            raise ValueError(f"URArm frequency must be > 0 Hz; got {frequency}")
        try:
            import rtde_control
            import rtde_receive
        except ImportError as error:
            raise ImportError(
                f"the UR arm driver needs the 'ur_rtde' package: pip install {UR_RTDE_PIN}"
            ) from error
        check_reachable(ip, RTDE_PORT, connect_timeout, "UR arm (RTDE)")
        self.ip = ip
        self.period = 1.0 / frequency
        self.gain = float(gain)
        self.lookahead_time = float(lookahead_time)
        self.stop_deceleration = float(stop_deceleration)
        try:
            self._receive = rtde_receive.RTDEReceiveInterface(ip, frequency)
            self._control = rtde_control.RTDEControlInterface(ip, frequency)
        except RuntimeError as error:
            raise ConnectionError(
                f"could not start RTDE on the UR arm at {ip} ({error}); is it in remote control "
                "mode, with no other RTDE client connected?"
            ) from error
        self._clock_map = DeviceClockMap()
        self._lock = threading.Lock()
        self._segment: Segment | None = None
        self._script_running = True
        self._closing = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"ur-{ip}", daemon=True)
        self._thread.start()

    # ---- state ------------------------------------------------------------------------------

    def read_state(self) -> ArmState:
        receive = self._receive
        pose = np.array(receive.getActualTCPPose())
        controller_time = receive.getTimestamp()
        timestamp = self._clock_map(controller_time, time.monotonic())
        return ArmState(
            joint_positions=np.array(receive.getActualQ()),
            joint_velocities=np.array(receive.getActualQd()),
            ee_position=pose[:3],
            ee_quat=rotvec_to_quat(pose[3:]),
            timestamp=timestamp,
        )

    def forward_kinematics(self, joints: np.ndarray) -> np.ndarray:
        """The TCP position (base frame) at ``joints`` (module doc)."""
        return self._kinematics(joints)

    # ---- commands ---------------------------------------------------------------------------

    def send_command(self, command: ArmCommand) -> None:
        """Start a segment towards ``command`` from the last set point (see the module doc)."""
        now = time.monotonic()
        if command.is_joint:
            goal = (command.joint_positions,)
        else:
            goal = (command.ee_position, command.ee_quat)
        with self._lock:
            if not self._script_running:
                self._control.reuploadScript()
                self._script_running = True
            last = self._segment
            if last is not None and last.is_joint == command.is_joint:
                start = interpolate_segment(last, now)
            else:
                start = self._measured(command.is_joint)
            self._segment = Segment(command.is_joint, start, goal, now, command.target_time)

    def _measured(self, is_joint: bool) -> tuple[np.ndarray, ...]:
        state = self.read_state()
        return (state.joint_positions,) if is_joint else (state.ee_position, state.ee_quat)

    def _run(self) -> None:
        """The servo loop: one set point per controller period while a segment is active."""
        while not self._closing.is_set():
            period_start = self._control.initPeriod()
            with self._lock:
                segment = self._segment
                if segment is not None:
                    self._servo(segment, time.monotonic())
            self._control.waitPeriod(period_start)

    def _servo(self, segment: Segment, now: float) -> None:
        point = interpolate_segment(segment, now)
        args = (0.0, 0.0, self.period, self.lookahead_time, self.gain)  # speed, acc: unused
        if segment.is_joint:
            self._control.servoJ(point[0].tolist(), *args)
        else:
            pose = [*point[0].tolist(), *quat_to_rotvec(point[1]).tolist()]
            self._control.servoL(pose, *args)

    def hold(self) -> None:
        """Leave servo mode and decelerate to rest where the arm is."""
        with self._lock:
            if self._segment is not None:
                self._segment = None
                self._control.servoStop(self.stop_deceleration)

    def stop(self) -> None:
        """Decelerate to rest and end the control script (re-uploaded by the next command)."""
        with self._lock:
            self._segment = None
            if self._script_running:
                self._control.servoStop(self.stop_deceleration)
                self._control.stopScript()
                self._script_running = False

    def close(self) -> None:
        """Stop the arm, end the servo loop and disconnect. Safe to call twice."""
        if self._closing.is_set():
            return
        self.stop()
        self._closing.set()
        self._thread.join()
        self._control.disconnect()
        self._receive.disconnect()
