"""The policy side of the robot server: ``connect(address, token, timeout) -> Robot``.

The returned ``Robot`` holds proxies that implement the same interfaces as local devices
(``Arm``, ``Gripper``, ``Camera``, ``Sensor``, ``TaskControl``), so a deploy runtime or a teleop
recorder cannot tell a served robot from a local one. Each call is one request/reply over a
ZeroMQ REQ socket (``hardware.protocol``), serialised by a lock so that several threads may share
the robot. The arm proxy also offers the server-side safety layer's ``estop``, ``reset`` and
``safety()`` (mode, counts, recent interventions).

Clocks. Timestamps in replies are the server host's ``time.monotonic``. ``connect`` measures the
offset of that clock from this host's with a few pings (server time minus the midpoint of each
round trip; the one with the shortest round trip wins) and the proxies translate every
timestamp both ways, so on another machine capture and target times still mean this host's
monotonic clock (on loopback the offset is ~0). A camera frame's ``receive_time`` is when its
reply arrived here.

A server that does not answer within ``timeout`` seconds raises ``ConnectionError`` naming the
address; an error reply raises ``RemoteError`` with the server's reason.
"""

from __future__ import annotations

import contextlib
import threading
import time
from typing import Any

import numpy as np
import zmq

from hardware.interfaces import (
    Arm,
    ArmCommand,
    ArmState,
    Camera,
    CameraFrame,
    Gripper,
    GripperCommand,
    GripperState,
    Robot,
    Sensor,
    SensorReading,
    TaskControl,
)
from hardware.protocol import MAX_REPLY_BYTES, MAX_REPLY_ELEMENTS, decode, encode

CLOCK_PINGS = 5  # round trips used to estimate the server's clock offset


class RemoteError(RuntimeError):
    """The server answered with an error (the message is its reason)."""


class Connection:
    """One REQ socket to the server; ``call`` sends a request and returns its result."""

    def __init__(self, address: str, token: str | None, timeout: float) -> None:
        self.address = address
        self.token = token
        self.timeout = timeout
        self.offset = 0.0  # server clock minus this host's clock
        self._lock = threading.Lock()
        self._socket = zmq.Context.instance().socket(zmq.REQ)
        self._socket.setsockopt(zmq.LINGER, 0)
        self._socket.setsockopt(zmq.REQ_RELAXED, 1)  # may send again after a timed-out reply
        self._socket.setsockopt(zmq.REQ_CORRELATE, 1)  # ... and then ignores the late reply
        self._socket.connect(address)

    def call(self, op: str, device: str | None = None, **args: Any) -> Any:
        message: dict[str, Any] = {"op": op, "args": args}
        if device is not None:
            message["device"] = device
        if self.token is not None:
            message["token"] = self.token
        with self._lock:
            self._socket.send(encode(message))
            if not self._socket.poll(self.timeout * 1000):
                raise ConnectionError(
                    f"the robot server at {self.address} did not answer {op!r} "
                    f"within {self.timeout} s"
                )
            reply = decode(self._socket.recv(), MAX_REPLY_BYTES, MAX_REPLY_ELEMENTS)
        if not isinstance(reply, dict) or not reply.get("ok"):
            error = reply.get("error") if isinstance(reply, dict) else reply
            raise RemoteError(f"{self.address} {op}: {error}")
        return reply.get("result")

    def measure_offset(self) -> None:
        best = None
        for _ in range(CLOCK_PINGS):
            sent = time.monotonic()
            server = self.call("ping")["time"]
            received = time.monotonic()
            if best is None or received - sent < best[0]:
                best = (received - sent, server - (sent + received) / 2)
        self.offset = best[1]

    def local(self, server_time: float) -> float:
        return server_time - self.offset

    def remote(self, local_time: float) -> float:
        return local_time + self.offset

    def close(self) -> None:
        with self._lock:
            self._socket.close(0)


class RemoteArm(Arm):
    """The server's arm (a ``SafetyLayer`` there)."""

    def __init__(self, connection: Connection, name: str) -> None:
        self.connection, self.name = connection, name

    def read_state(self) -> ArmState:
        state = self.connection.call("arm.read_state", self.name)
        return ArmState(
            state["joint_positions"],
            state["joint_velocities"],
            state["ee_position"],
            state["ee_quat"],
            self.connection.local(state["timestamp"]),
        )

    def send_command(self, command: ArmCommand) -> ArmCommand | None:
        """Send ``command``; returns what the server's safety layer forwarded to the arm (its
        target time on this host's clock), None when it forwarded nothing."""
        target_time = self.connection.remote(command.target_time)
        if command.is_joint:
            fields = {"joint_positions": command.joint_positions}
        else:
            fields = {"ee_position": command.ee_position, "ee_quat": command.ee_quat}
        reply = self.connection.call(
            "arm.send_command", self.name, target_time=target_time, **fields
        )
        sent = reply["sent"]
        if sent is None:
            return None
        target_time = self.connection.local(sent["target_time"])
        if "joint_positions" in sent:
            return ArmCommand.joints(sent["joint_positions"], target_time)
        return ArmCommand.pose(sent["ee_position"], sent["ee_quat"], target_time)

    def hold(self) -> None:
        self.connection.call("arm.hold", self.name)

    def stop(self) -> None:
        self.connection.call("arm.stop", self.name)

    def estop(self, reason: str = "client request") -> None:
        """Latch the server-side e-stop (the arm holds, then stops) until ``reset``."""
        self.connection.call("arm.estop", self.name, reason=reason)

    def reset(self) -> None:
        """Release a latched e-stop; the arm moves again on the next valid command."""
        self.connection.call("arm.reset_estop", self.name)

    def safety(self, last: int = 20) -> dict:
        """The safety layer's mode, e-stop latch, counts, last forward time and the ``last``
        interventions as [time, kind, reason] (times on this host's clock)."""
        status = self.connection.call("arm.safety", self.name, last=last)
        status["last_forward_time"] = self.connection.local(status["last_forward_time"])
        for record in status["interventions"]:
            record[0] = self.connection.local(record[0])
        return status

    def close(self) -> None:
        """Ask the server's arm to hold (the watchdog would, a moment later); a server that is
        already gone is not an error."""
        with contextlib.suppress(ConnectionError, RemoteError, zmq.ZMQError):
            self.hold()


class RemoteGripper(Gripper):
    def __init__(self, connection: Connection, name: str) -> None:
        self.connection, self.name = connection, name

    def read_state(self) -> GripperState:
        state = self.connection.call("gripper.read_state", self.name)
        return GripperState(
            state["opening"],
            self.connection.local(state["timestamp"]),
            state["width"],
            state["joint_positions"],
        )

    def send_command(self, command: GripperCommand) -> GripperCommand | None:
        """Send ``command``; returns what reached the server's gripper (None: nothing)."""
        target_time = self.connection.remote(command.target_time)
        opening = float(command.opening)
        sent = self.connection.call(
            "gripper.send_command", self.name, opening=opening, target_time=target_time
        )["sent"]
        if sent is None:
            return None
        return GripperCommand(sent["opening"], self.connection.local(sent["target_time"]))

    def close(self) -> None:
        """Nothing to release here (the connection closes with the task proxy)."""


class RemoteCamera(Camera):
    def __init__(self, connection: Connection, name: str) -> None:
        self.connection, self.name = connection, name

    def read(self) -> CameraFrame:
        frame = self.connection.call("camera.read", self.name)
        depth = frame["depth"]
        return CameraFrame(
            np.asarray(frame["color"], dtype=np.uint8),
            self.connection.local(frame["capture_time"]),
            time.monotonic(),
            None if depth is None else np.asarray(depth, dtype=np.float32),
        )

    def close(self) -> None:
        """Nothing to release here."""


class RemoteSensor(Sensor):
    def __init__(self, connection: Connection, name: str) -> None:
        self.connection, self.name = connection, name

    def read(self) -> SensorReading:
        reading = self.connection.call("sensor.read", self.name)
        return SensorReading(reading["values"], self.connection.local(reading["timestamp"]))

    def close(self) -> None:
        """Nothing to release here."""


class RemoteTask(TaskControl):
    """The server robot's task control; closing it closes the connection (it is closed last
    by ``Robot.close``)."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection

    def reset_episode(self, seed: int) -> None:
        self.connection.call("task.reset_episode", seed=int(seed))

    def task_info(self) -> dict:
        return self.connection.call("task.info")

    def close(self) -> None:
        self.connection.close()


def connect(address: str, token: str | None = None, timeout: float = 5.0) -> Robot:
    """A ``Robot`` of proxies for the robot served at ``address``; ConnectionError naming the
    address when no server answers within ``timeout`` seconds."""
    connection = Connection(address, token, timeout)
    try:
        layout = connection.call("describe")
        connection.measure_offset()
    except Exception:
        connection.close()
        raise
    return Robot(
        arms={name: RemoteArm(connection, name) for name in layout["arms"]},
        grippers={name: RemoteGripper(connection, name) for name in layout["grippers"]},
        cameras={name: RemoteCamera(connection, name) for name in layout["cameras"]},
        sensors={name: RemoteSensor(connection, name) for name in layout["sensors"]},
        task=RemoteTask(connection),
        info=layout["info"],
    )
