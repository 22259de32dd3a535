"""The safety layer: always between a policy and an arm, the sim arm included.

``SafetyLayer`` wraps any ``Arm`` and is itself one, so a deploy loop cannot tell it is there and
nothing reaches the wrapped arm except through it. What it guarantees:

1. **Nothing outside the limits is forwarded.** Every command is first rebuilt from checked
   copies of its values (``hardware.commands.check_arm_command``): one that is not an
   ``ArmCommand``, holds anything but finite real numbers of the right shape, or has a
   quaternion without a direction (zero, near zero) is rejected outright: none of its values can
   be trusted, so none is "clamped" into range. A command whose ``target_time`` is more than
   ``stale_tolerance`` in the past is dropped: it was meant for a moment that is gone; one more
   than ``max_target_lead`` ahead is brought forward to that. Every other command is clamped
   against the *measured* state read just before forwarding (never the last command, so a
   blocked arm cannot wind up):

   * joint targets into the joint limits, within ``max_joint_step`` and ``max_joint_velocity *
     dt`` of the measured joints (``dt``: time left until the target time, at least one control
     period) and, where those allow it, with the implied velocity change within
     ``max_joint_acceleration * dt``. Acceleration yields to the hard position/velocity limits:
     braking harder than it allows to get back under the velocity limit is the safe direction;
   * pose targets into the workspace box and within ``max_translation_step`` (a ball) and
     ``max_rotation_step`` (slerped) of the measured pose, the quaternion normalised safely
     (``hardware.limits.unit_quaternion``: a ``1e300`` component neither overflows nor zeroes it).

   The radii are shrunk by one part in 10^9, so rounding never puts a value past a limit. If no
   target meets the hard limits (the arm is measured more than one step outside them, or its
   state is not finite), the command is rejected and the arm holds; so it does if the limited
   command fails the last check before it leaves (``hardware.commands.outgoing_problem``: finite,
   inside the joint limits with its hand in the box, or a pose in the box with a unit
   quaternion), which no clamp above should allow. The
   box bounds joint commands too when the layer is given the arm's ``forward_kinematics``
   (joints -> hand position: ``hardware.kinematics``, the MuJoCo model for the sim arm and
   Denavit-Hartenberg parameters for a UR5e or a Franka): a clamped joint target whose hand
   leaves the box is cut short along its step (``limit_joints_to_workspace``).
   ``send_command`` returns the command it forwarded (None when it forwarded none).
2. **Watchdog.** ``tick()`` (every control period, from ``start()``'s thread or the caller) holds
   the arm at its measured pose once no command has been forwarded for ``watchdog_timeout``, and
   stops it after a further ``stop_after`` (acting first, logging after). Rejected and stale
   commands do not feed it. It does not latch: the next valid command resumes, one step at a
   time from where the arm is. ``start()``'s thread wakes just after each deadline (monotonic
   clock), at a real-time priority where the OS allows one and with the GIL switch interval
   lowered, so that a loaded machine delays the hold by well under a control period
   (bench/bench_watchdog.py; docs/hardware.md has the figures).
3. **E-stop.** ``estop()`` (or a bound POSIX signal, or a key) latches until ``reset()``: the arm
   holds, then stops after ``stop_after``; meanwhile every command is replaced by that hold/stop.
4. **Every intervention is recorded** with its reason: logged (logger ``hardware.safety``; clamps
   at INFO, the rest at WARNING), kept in ``interventions`` (the latest ``max_records``) and
   counted by kind in ``counts``, for a deploy run's report (``summary()``).

Threads. One lock serialises every call into the wrapped arm (commands, state reads, ticks,
e-stops), so a driver is never entered twice at once. A signal handler runs on the main thread,
maybe while it holds the lock, so it only *requests* the e-stop; the request is applied at once if
the lock is free, else by the lock's holder before it forwards anything.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from hardware.commands import check_arm_command, limit_gripper, outgoing_problem
from hardware.interfaces import Arm, ArmCommand, ArmState, Gripper, GripperCommand, GripperState
from hardware.limits import (
    SafetyLimits,
    limit_joints,
    limit_joints_to_workspace,
    limit_position,
    limit_rotation,
)

logger = logging.getLogger(__name__)

WATCHDOG_MARGIN = 1e-4  # s the watchdog thread wakes after a deadline (its test is strict)
WATCHDOG_RT_PRIORITY = 10  # the watchdog thread's SCHED_FIFO priority, where the OS allows one
ACTIVE, HOLDING, STOPPED = "active", "holding", "stopped"


@dataclass(frozen=True)
class Intervention:
    """One thing the layer did instead of forwarding a command as given."""

    time: float  # monotonic seconds
    kind: str  # clamped, rejected, stale, watchdog_hold, stop, estop, estop_replaced, estop_reset
    reason: str


def _prioritise_this_thread() -> str:
    """Let the calling thread (the watchdog) run before ordinary threads when it wakes: the
    real-time policy ``SCHED_FIFO`` where allowed (root, ``CAP_SYS_NICE`` or an rtprio limit),
    else nice -10, else nothing; says which. It sleeps but for a tick, so it cannot starve
    anyone."""
    thread = threading.get_native_id()
    try:
        os.sched_setscheduler(thread, os.SCHED_FIFO, os.sched_param(WATCHDOG_RT_PRIORITY))
        return f"SCHED_FIFO priority {WATCHDOG_RT_PRIORITY}"
    except (AttributeError, OSError):  # not Linux, or not allowed
        pass
    try:
        os.setpriority(os.PRIO_PROCESS, thread, -10)
        return "nice -10"
    except (AttributeError, OSError):
        return "ordinary priority (not allowed to raise it)"


class SafetyLayer(Arm):
    """Wraps ``arm``; see the module doc. ``clock`` (monotonic seconds) is injectable for tests;
    ``forward_kinematics`` (joints -> hand position, called under the layer's lock) makes joint
    commands respect the workspace box too."""

    def __init__(
        self,
        arm: Arm,
        limits: SafetyLimits,
        clock: Callable[[], float] = time.monotonic,
        max_records: int = 10_000,
        forward_kinematics: Callable[[np.ndarray], np.ndarray] | None = None,
    ) -> None:
        self.arm = arm
        self.limits = limits
        self.forward_kinematics = forward_kinematics
        self.clock = clock
        self.interventions: deque[Intervention] = deque(maxlen=max_records)
        self.counts: Counter[str] = Counter()
        self.forwarded = 0
        self._lock = threading.Lock()
        self._mode = ACTIVE
        self._last_forward = clock()
        self._hold_since = self._last_forward
        self._estopped = False
        self._estop_request: str | None = None
        self._closing = threading.Event()
        self._thread: threading.Thread | None = None

    # ---- commands ---------------------------------------------------------------------------

    def send_command(self, command: ArmCommand) -> ArmCommand | None:
        """Check ``command`` and forward a safe version of it, or record why not; returns the
        command forwarded to the arm (None: none was)."""
        with self._lock:
            now = self.clock()
            self._apply_estop_request(now)
            if self._estopped:
                self._replace_by_fallback(now)
                return None
            checked, problem = check_arm_command(command, len(self.limits.joint_low))
            if checked is None:
                self._record(now, "rejected", f"rejected command: {problem}")
                return None
            late, tolerance = now - checked.target_time, self.limits.stale_tolerance
            if late > tolerance:
                why = f"target time {late:.3f} s in the past (tolerance {tolerance:.3f} s)"
                self._record(now, "stale", "dropped stale command: " + why)
                return None
            state = self.arm.read_state()
            safe, reasons = self._limit(checked, state, now)
            limits, fk = self.limits, self.forward_kinematics
            if safe is not None and (problem := outgoing_problem(safe, limits, now, fk)):
                safe, reasons = None, [f"failed the last check: {problem}"]
            if safe is None:
                self._record(now, "rejected", "; ".join(reasons) + "; holding")
                self._enter_hold(now)
                return None
            self._apply_estop_request(now)  # a signal may have come in meanwhile
            if self._estopped:
                self._replace_by_fallback(now)
                return None
            if reasons:
                self._record(now, "clamped", "; ".join(reasons), logging.INFO)
            if self._mode != ACTIVE:
                logger.info("resuming from %s: fresh valid command", self._mode)
            self.arm.send_command(safe)
            self._mode = ACTIVE
            self._last_forward = now
            self.forwarded += 1
            return safe

    def _limit(
        self, command: ArmCommand, state: ArmState, now: float
    ) -> tuple[ArmCommand | None, list[str]]:
        """The clamped command (None if no safe one exists) and the reasons for each change."""
        measured = (state.joint_positions, state.joint_velocities, state.ee_position, state.ee_quat)
        if not all(np.isfinite(value).all() for value in measured):
            return None, ["measured arm state is not finite"]
        if len(measured[0]) != len(self.limits.joint_low):
            return None, [f"arm measures {len(measured[0])} joints; its limits have another number"]
        target_time, reasons = command.target_time, []
        lead = target_time - now
        if lead > self.limits.max_target_lead:
            target_time = now + self.limits.max_target_lead
            reasons.append(f"clamped target time {lead:.3g} -> {target_time - now:.3g} s ahead")
        if command.is_joint:
            dt = max(target_time - now, self.limits.control_period)
            safe, joint_reasons = limit_joints(command.joint_positions, state, dt, self.limits)
            reasons += joint_reasons
            if safe is not None and self.forward_kinematics is not None:
                safe, box_reasons = limit_joints_to_workspace(
                    safe, measured[0], self.forward_kinematics, self.limits
                )
                reasons = box_reasons if safe is None else reasons + box_reasons
            if safe is None:
                return None, reasons
            return ArmCommand.joints(safe, target_time), reasons
        pos, pos_reasons = limit_position(command.ee_position, state.ee_position, self.limits)
        quat, quat_reasons = limit_rotation(command.ee_quat, state.ee_quat, self.limits)
        if pos is None or quat is None:  # only the reason it cannot be made safe
            return None, pos_reasons if pos is None else quat_reasons
        return ArmCommand.pose(pos, quat, target_time), reasons + pos_reasons + quat_reasons

    # ---- watchdog ---------------------------------------------------------------------------

    def tick(self) -> None:
        """One watchdog check; call every control period (``start()`` does it on a thread)."""
        with self._lock:
            now = self.clock()
            self._apply_estop_request(now)
            idle = now - self._last_forward
            held = now - self._hold_since
            if self._mode == ACTIVE and idle > self.limits.watchdog_timeout:
                self._enter_hold(now)  # act first, then log: the log may be slow
                why = f"watchdog: no command for {idle:.2f} s, holding"
                self._record(now, "watchdog_hold", why)
            elif self._mode == HOLDING and held >= self.limits.stop_after:
                self.arm.stop()
                self._mode = STOPPED
                cause = "e-stop latched" if self._estopped else "no fresh command"
                self._record(now, "stop", f"{cause}: held for {held:.2f} s, stopping")

    def start(self) -> None:
        """Run ``tick()`` on a daemon thread until ``close()``, so the watchdog fires even when
        the loop sending commands hangs: every control period, and also just after the next
        deadline (hold or stop) when that comes sooner, so it acts on time, not up to a period
        late. The thread asks for a real-time priority (``_prioritise_this_thread``), and the
        interpreter's GIL switch interval is lowered to a tenth of a control period (from 5 ms),
        so a thread running Python keeps the waking watchdog waiting about that long (longer
        only while the OS keeps that thread itself off the CPU); bench/bench_watchdog.py
        measures both."""
        interval = min(sys.getswitchinterval(), self.limits.control_period / 10)
        sys.setswitchinterval(interval)
        if self._thread is None:
            self._thread = threading.Thread(target=self._watch, name="safety-watchdog", daemon=True)
            self._thread.start()

    def _watch(self) -> None:
        logger.info("watchdog thread runs at %s", _prioritise_this_thread())
        while not self._closing.wait(self._until_next_check()):
            try:
                self.tick()
            except Exception:  # a failing driver must not end the watchdog: keep trying
                logger.exception("watchdog tick failed")

    def _until_next_check(self) -> float:
        """Seconds to the next tick: the control period, or just past the pending deadline."""
        limits = self.limits
        if self._mode == ACTIVE:
            deadline = self._last_forward + limits.watchdog_timeout
        elif self._mode == HOLDING:
            deadline = self._hold_since + limits.stop_after
        else:
            return limits.control_period
        wait = deadline - self.clock() + WATCHDOG_MARGIN
        return min(max(wait, WATCHDOG_MARGIN), limits.control_period)

    # ---- e-stop -----------------------------------------------------------------------------

    def estop(self, reason: str = "requested", blocking: bool = True) -> None:
        """Latch the e-stop: hold now, stop after ``stop_after``, replace commands until
        ``reset()``. With ``blocking=False`` (signal handlers) the hold is deferred to the
        lock's holder when the lock is busy; the latch takes effect at once either way."""
        self._estop_request = reason
        if self._lock.acquire(blocking=blocking):
            try:
                self._apply_estop_request(self.clock())
            finally:
                self._lock.release()

    @property
    def estopped(self) -> bool:
        """True from the moment an e-stop is requested until ``reset()``."""
        return self._estopped or self._estop_request is not None

    def reset(self) -> None:
        """Release a latched e-stop. The arm stays held/stopped until the next valid command."""
        with self._lock:
            self._estop_request = None
            if self._estopped:
                self._estopped = False
                self._record(self.clock(), "estop_reset", "e-stop reset")

    def _apply_estop_request(self, now: float) -> None:
        reason = self._estop_request
        if reason is None:
            return
        self._estop_request = None
        if not self._estopped:
            self._estopped = True
            self._record(now, "estop", f"e-stop ({reason}): holding, latched until reset()")
        self._enter_hold(now)

    def _replace_by_fallback(self, now: float) -> None:
        fallback = self.arm.hold if self._mode == HOLDING else self.arm.stop
        why = f"e-stop latched: command replaced by {fallback.__name__}"
        self._record(now, "estop_replaced", why)
        fallback()

    # ---- the rest of the Arm interface ------------------------------------------------------

    def read_state(self) -> ArmState:
        with self._lock:
            return self.arm.read_state()

    def hold(self) -> None:
        """Hold now (no-op when already holding or stopped); the watchdog stops the arm after
        ``stop_after`` unless a command comes."""
        with self._lock:
            self._enter_hold(self.clock())

    def stop(self) -> None:
        """Stop now; the next valid command resumes (where the hardware allows it)."""
        with self._lock:
            self.arm.stop()
            self._mode = STOPPED

    def close(self) -> None:
        """Stop the watchdog thread, then close the wrapped arm (which stops it)."""
        self._closing.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        with self._lock:
            self.arm.close()

    # ---- bookkeeping ------------------------------------------------------------------------

    def _enter_hold(self, now: float) -> None:
        if self._mode == ACTIVE:
            self.arm.hold()
            self._mode = HOLDING
            self._hold_since = now

    def _record(self, now: float, kind: str, reason: str, level: int = logging.WARNING) -> None:
        self.interventions.append(Intervention(now, kind, reason))
        self.counts[kind] += 1
        logger.log(level, "%s: %s", kind, reason)

    @property
    def mode(self) -> str:
        """``active``, ``holding`` or ``stopped``."""
        return self._mode

    @property
    def last_forward_time(self) -> float:
        """When a command was last forwarded to the arm (the watchdog's reference; monotonic)."""
        return self._last_forward

    def summary(self) -> dict[str, int]:
        """Counts for a deploy report: commands forwarded and interventions by kind."""
        return {"forwarded": self.forwarded, **self.counts}


class GripperGuard(Gripper):
    """Wraps a gripper as ``SafetyLayer`` wraps an arm, for its one limit: every command passes
    ``hardware.commands.limit_gripper`` (opening clamped into [0, 1]; a NaN/inf or a value that
    is not a real number rejected), each intervention logged and counted. ``send_command``
    returns the command forwarded (None: none was)."""

    def __init__(self, gripper: Gripper) -> None:
        self.gripper = gripper
        self.counts: Counter[str] = Counter()
        self.forwarded = 0
        self._lock = threading.Lock()

    def read_state(self) -> GripperState:
        return self.gripper.read_state()

    def send_command(self, command: GripperCommand) -> GripperCommand | None:
        safe, reasons = limit_gripper(command)
        with self._lock:
            if safe is None:
                self.counts["rejected"] += 1
                logger.warning("gripper rejected: %s", reasons[0])
                return None
            if reasons:
                self.counts["clamped"] += 1
                logger.info("gripper clamped: %s", reasons[0])
            self.gripper.send_command(safe)
            self.forwarded += 1
        return safe

    def close(self) -> None:
        self.gripper.close()

    def summary(self) -> dict[str, int]:
        """Commands forwarded and interventions by kind."""
        return {"forwarded": self.forwarded, **self.counts}
