"""The robot server: a robot in its own process, answering policy-side clients over ZeroMQ.

``serve(robot, address, token)`` binds a ROUTER socket and answers one request at a time
(``hardware.protocol``): read a state or frame, send a command, hold/stop, e-stop and reset, reset
an episode, ask the task. The server is the robot's guard, so it trusts nothing it receives:

* every arm must be a ``SafetyLayer`` (refused otherwise), so each command goes through the
  limits next to the arm, and the layer's watchdog holds then stops the arm when commands stop
  coming, for instance because the client process died;
* every message is size-checked, decoded without pickle and validated against the schema; a bad
  one (garbage, truncated, wrong types or shapes, NaN, oversized, multi-frame, wrong token) gets
  an error reply and one log line, and the loop goes on; an unexpected exception in a handler is
  answered and logged the same way;
* it binds loopback by default; binding any other address requires a shared ``token``, which
  every request must then carry (compared in constant time). A token, where one is given (on
  any address), must have at least ``MIN_TOKEN_CHARS`` characters: an empty one (``token=''``
  or ``ROBOT_SERVER_TOKEN=``) would otherwise let every tokenless request in, a short one be
  guessed.

Messages larger than ``HARD_LIMIT_BYTES`` are dropped by libzmq itself (it disconnects the
sender) before they are buffered whole; smaller ones over the request limit get an error reply.

The program (``robopolicy-server`` or ``python -m hardware.server``, ``key=value`` arguments like
every program: robopolicy_cli/server.py) builds the robot of its config, serves it, prints
``ready <endpoint>`` once bound, latches every arm's e-stop on SIGUSR1 and closes the robot on
SIGTERM or Ctrl-C. The token may also come from the environment variable ``ROBOT_SERVER_TOKEN``.
"""

from __future__ import annotations

import hmac
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import zmq

from hardware.interfaces import ArmCommand, GripperCommand, Robot
from hardware.protocol import (
    MAX_REQUEST_BYTES,
    MAX_REQUEST_ELEMENTS,
    MAX_STRING,
    ProtocolError,
    Request,
    decode,
    encode,
    parse_request,
)
from hardware.safety import SafetyLayer

logger = logging.getLogger(__name__)

HARD_LIMIT_BYTES = 16 * MAX_REQUEST_BYTES  # libzmq drops larger messages (ZMQ_MAXMSGSIZE)
POLL_MS = 100  # the loop wakes this often to notice a stop request
LOOPBACK_HOSTS = ("127.", "localhost", "[::1]")
MIN_TOKEN_CHARS = 16  # e.g. python -c "import secrets; print(secrets.token_urlsafe(24))"
TOKEN_VARIABLE = "ROBOT_SERVER_TOKEN"  # the environment variable the program's token may come from


def is_loopback(address: str) -> bool:
    """True for ``tcp://127.x.x.x:port``, ``tcp://localhost:port``, ``tcp://[::1]:port`` and
    the host-local transports ``ipc://`` and ``inproc://``."""
    if address.startswith(("ipc://", "inproc://")):
        return True
    return address.startswith("tcp://") and address[6:].startswith(LOOPBACK_HOSTS)


def token_problem(token: str | None, address: str) -> str | None:
    """Why a server bound to ``address`` cannot be guarded by ``token`` (None: it can)."""
    if token is None:
        if is_loopback(address):
            return None
        return (
            f"binding {address} (not loopback) needs a shared token of at least "
            f"{MIN_TOKEN_CHARS} characters (token=T or {TOKEN_VARIABLE})"
        )
    if not isinstance(token, str) or not MIN_TOKEN_CHARS <= len(token) <= MAX_STRING:
        given = "an empty token" if token == "" else f"a token of {len(str(token))} characters"
        return (
            f"{given} is refused: a token needs {MIN_TOKEN_CHARS} to {MAX_STRING} characters "
            """(e.g. python -c "import secrets; print(secrets.token_urlsafe(24))")"""
        )
    return None


class RobotServer:
    """Answers requests for ``robot`` (see the module doc); ``handle`` maps one raw request
    frame to one reply frame and never raises."""

    def __init__(self, robot: Robot, token: str | None = None) -> None:
        unguarded = [name for name, arm in robot.arms.items() if not isinstance(arm, SafetyLayer)]
        if unguarded:
            raise ValueError(f"arms {unguarded} are not behind a SafetyLayer; refusing to serve")
        problem = None if token is None else token_problem(token, "")  # any address: serve()
        if problem:
            raise ValueError(problem)
        self.robot = robot
        self.token = token
        self.served = 0
        self.refused = 0

    def handle(self, frame: bytes) -> bytes:
        try:
            request = parse_request(decode(frame, MAX_REQUEST_BYTES, MAX_REQUEST_ELEMENTS))
            self._authenticate(request)
            result = self._dispatch(request)
        except (ProtocolError, PermissionError) as error:
            return self._refuse(f"rejected request: {error}")
        except Exception as error:  # a handler failed: answer, log, keep serving
            logger.exception("request failed")
            return self._refuse(f"request failed: {type(error).__name__}: {error}")
        self.served += 1
        return encode({"ok": True, "result": result})

    def _refuse(self, why: str) -> bytes:
        self.refused += 1
        logger.warning("%s", why[:300])
        return encode({"ok": False, "error": why[:1000]})

    def _authenticate(self, request: Request) -> None:
        if self.token is None:
            return
        given = (request.token or "").encode()
        if not hmac.compare_digest(given, self.token.encode()):
            raise PermissionError("missing or wrong token")

    def _device(self, request: Request, group: str) -> Any:
        devices = getattr(self.robot, group)
        if request.device not in devices:
            raise ProtocolError(f"no {group[:-1]} {request.device!r}; have {list(devices)}")
        return devices[request.device]

    def _dispatch(self, request: Request) -> Any:
        op, args = request.op, request.args
        group = op.split(".")[0] + "s"
        device = self._device(request, group) if request.device is not None else None
        handlers: dict[str, Callable[[], Any]] = {
            "ping": lambda: {"time": time.monotonic()},
            "describe": self._describe,
            "arm.read_state": lambda: _arm_state(device),
            "arm.send_command": lambda: self._arm_command(device, args),
            "arm.hold": lambda: device.hold(),
            "arm.stop": lambda: device.stop(),
            "arm.estop": lambda: device.estop(args.get("reason", "client request")),
            "arm.reset_estop": lambda: device.reset(),
            "arm.safety": lambda: _safety(device, args.get("last", 20)),
            "gripper.read_state": lambda: _gripper_state(device),
            "gripper.send_command": lambda: self._gripper_command(device, args),
            "camera.read": lambda: _frame(device),
            "sensor.read": lambda: _reading(device),
            "task.reset_episode": lambda: self.robot.reset_episode(args["seed"]),
            "task.info": self.robot.task_info,
        }
        return handlers[op]()

    def _describe(self) -> dict:
        robot = self.robot
        return {
            "arms": {
                name: len(arm.read_state().joint_positions) for name, arm in robot.arms.items()
            },
            "grippers": list(robot.grippers),
            "cameras": list(robot.cameras),
            "sensors": list(robot.sensors),
            "task": robot.task is not None,
            "info": robot.info,
        }

    def _arm_command(self, arm: SafetyLayer, args: dict) -> dict:
        joints = args.get("joint_positions")
        if joints is not None:
            expected = len(arm.limits.joint_low)
            if joints.shape != (expected,) or "ee_position" in args or "ee_quat" in args:
                raise ProtocolError(f"a joint command needs exactly {expected} joint positions")
            command = ArmCommand.joints(joints, args["target_time"])
        elif "ee_position" in args and "ee_quat" in args:
            command = ArmCommand.pose(args["ee_position"], args["ee_quat"], args["target_time"])
        else:
            raise ProtocolError("a command needs joint_positions, or ee_position and ee_quat")
        sent = arm.send_command(command)
        return {"mode": arm.mode, "estopped": arm.estopped, "sent": _command_fields(sent)}

    def _gripper_command(self, gripper: Any, args: dict) -> dict:
        opening = args["opening"]
        if not 0.0 <= opening <= 1.0:
            raise ProtocolError(f"gripper opening must be in [0, 1]; got {opening}")
        sent = gripper.send_command(GripperCommand(opening, args["target_time"]))
        if sent is None:
            return {"sent": None}
        return {"sent": {"opening": sent.opening, "target_time": sent.target_time}}


def _command_fields(command: ArmCommand | None) -> dict | None:
    """The forwarded arm command as request-style fields (None: nothing was forwarded)."""
    if command is None:
        return None
    if command.is_joint:
        return {"target_time": command.target_time, "joint_positions": command.joint_positions}
    return {
        "target_time": command.target_time,
        "ee_position": command.ee_position,
        "ee_quat": command.ee_quat,
    }


def _arm_state(arm: Any) -> dict:
    state = arm.read_state()
    return {
        "joint_positions": state.joint_positions,
        "joint_velocities": state.joint_velocities,
        "ee_position": state.ee_position,
        "ee_quat": state.ee_quat,
        "timestamp": state.timestamp,
    }


def _safety(arm: SafetyLayer, last: int) -> dict:
    records = list(arm.interventions)[-last:] if last else []
    return {
        "mode": arm.mode,
        "estopped": arm.estopped,
        "last_forward_time": arm.last_forward_time,
        "summary": dict(arm.summary()),
        "interventions": [[r.time, r.kind, r.reason] for r in records],
    }


def _gripper_state(gripper: Any) -> dict:
    state = gripper.read_state()
    return {
        "opening": state.opening,
        "timestamp": state.timestamp,
        "width": state.width,
        "joint_positions": state.joint_positions,
    }


def _frame(camera: Any) -> dict:
    frame = camera.read()
    return {
        "color": frame.color,
        "depth": frame.depth,
        "capture_time": frame.capture_time,
        "receive_time": frame.receive_time,
    }


def _reading(sensor: Any) -> dict:
    reading = sensor.read()
    return {"values": np.asarray(reading.values), "timestamp": reading.timestamp}


def serve(
    robot: Robot,
    address: str = "tcp://127.0.0.1:5555",
    token: str | None = None,
    stop: threading.Event | None = None,
    on_ready: Callable[[str], None] | None = None,
) -> RobotServer:
    """Serve ``robot`` on ``address`` until ``stop`` is set; returns the server (its counts).

    ``on_ready(endpoint)`` is called once bound (``tcp://127.0.0.1:*`` picks a free port; the
    endpoint names it). Binding an address other than loopback without a valid ``token``, or
    with a token of fewer than ``MIN_TOKEN_CHARS`` characters on any address, raises
    ValueError."""
    problem = token_problem(token, address)
    if problem:
        raise ValueError(problem)
    server = RobotServer(robot, token)
    stop = stop or threading.Event()
    context = zmq.Context.instance()
    socket = context.socket(zmq.ROUTER)
    socket.setsockopt(zmq.LINGER, 0)
    socket.setsockopt(zmq.MAXMSGSIZE, HARD_LIMIT_BYTES)
    socket.bind(address)
    endpoint = socket.getsockopt_string(zmq.LAST_ENDPOINT)
    logger.info("serving %s on %s", list(robot.arms), endpoint)
    if on_ready is not None:
        on_ready(endpoint)
    try:
        while not stop.is_set():
            if not socket.poll(POLL_MS):
                continue
            frames = socket.recv_multipart()
            identity, rest = frames[0], frames[1:]
            # a REQ client's envelope: [request id (REQ_CORRELATE)], an empty delimiter
            split = rest.index(b"") + 1 if b"" in rest[:2] else 0
            envelope, body = rest[:split], rest[split:]
            if len(body) != 1:
                reply = server._refuse(f"rejected request: expected 1 frame, got {len(body)}")
            else:
                reply = server.handle(body[0])
            socket.send_multipart([identity, *envelope, reply])
    finally:
        socket.close(0)
    return server


if __name__ == "__main__":  # python -m hardware.server: the program of robopolicy_cli/server.py
    from robopolicy_cli.server import main

    main()
