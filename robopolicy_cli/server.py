"""Serve one robot to policy-side clients over ZeroMQ (``hardware.server.serve``), every arm
behind its safety layer.

    robopolicy-server [env_id=ID] [+env_kwargs={KEY: VALUE, ...}] [seed=N]
        [+limits={FIELD: VALUE, ...}] [camera_fps=F] [address=ENDPOINT] [token=T]
    robopolicy-server hardware=NAME [hardware.KEY=VALUE ...] [address=ENDPOINT] [token=T]

(``python -m hardware.server ...`` from the repository.) The robot is the sim arm of ``env_id``
stepping in real time (``robot=sim``, the default: ``hardware/sim_robot.py``) or, with
``hardware=NAME``, the robot of ``conf/hardware/<NAME>.yaml`` built by
``hardware.factory.make_robot`` (its keys as ``hardware.arms.arm.ip=10.0.0.3``). Every key:
conf/server.yaml, robopolicy/config/hardware.py ServerConfig.

It prints ``ready <endpoint>`` once bound (``address=tcp://127.0.0.1:*``: a free port, named
there), latches every arm's e-stop on SIGUSR1 (``kill -USR1 <pid>``) or, run in a terminal with
one arm, on the key ``e`` (``hardware.estop``); a client can latch and reset it too. It closes
the robot (arms hold) on SIGTERM or Ctrl-C. Binding beyond loopback needs a shared token,
``token=T`` or the environment variable ``ROBOT_SERVER_TOKEN`` (``hardware.server``'s module
doc). Whatever it refuses it says in one line, ``<program>: error: ...``, and exits with status 2
(a bad key, a bind without a valid token, both checked before the robot is built; an address it
cannot bind) or 1 (a robot it cannot build or reach).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import signal
import sys
import threading
from typing import NoReturn

import zmq
from omegaconf import DictConfig, OmegaConf

from hardware.estop import bind_estop_key
from hardware.factory import make_robot
from hardware.interfaces import Robot
from hardware.limits import SafetyLimits
from hardware.protocol import MAX_STRING
from hardware.server import MIN_TOKEN_CHARS, TOKEN_VARIABLE, serve, token_problem
from robopolicy.config import ConfigError, validate
from robopolicy.config.checks import require
from robopolicy.config.hardware import ServerConfig
from robopolicy_cli.command import Usage, program_name, run_config_tool

LOG_FORMAT = "%(asctime)s %(name)s %(levelname)s %(message)s"  # the server's log lines (stderr)
USAGE = Usage(
    summary="Serve a robot to policy-side clients over ZeroMQ, every arm behind its safety "
    "layer: the sim arm of env_id (robot=sim, the default) or the robot of "
    "conf/hardware/<NAME>.yaml (hardware=NAME). Prints 'ready <endpoint>' once bound.",
    config="server",
    schema="robopolicy/config/hardware.py ServerConfig",
    examples=(
        "robot=sim env_id=robopolicy/PushCube-v0 address=tcp://127.0.0.1:5555",
        "'+env_kwargs={obs_mode: rgb, image_size: 96}' '+limits={max_joint_velocity: 1.0}'",
        "hardware=ur5e",
    ),
    groups=("hardware",),
    tasks="conf/task/; env_id=ID takes a task's env_id",
    notes=(
        f"Binding beyond loopback needs a token of {MIN_TOKEN_CHARS} to {MAX_STRING} characters: "
        f"token=T or the environment variable {TOKEN_VARIABLE}. kill -USR1 <pid> latches every "
        "arm's e-stop (in a terminal, with one arm, so does the key e); SIGTERM or Ctrl-C closes "
        "the robot.",
        "A refusal is one line: exit status 2 for a bad key or token or an address it cannot "
        "bind, 1 for a robot it cannot build or reach.",
    ),
)


def main(argv: list[str] | None = None) -> None:
    run_config_tool("server", USAGE, argv, run)


def run(composed: DictConfig) -> None:
    cfg: ServerConfig = validate(composed)
    token = os.environ.get(TOKEN_VARIABLE) if cfg.token is None else cfg.token
    problem = token_problem(token, cfg.address)
    if problem:  # before the robot is built: nothing to close, and no arm is moved
        raise ConfigError.line(problem)  # (not naming the token: it is a secret)
    check_limits(cfg.limits)
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    try:
        robot = build_robot(cfg, composed)
    except (ConnectionError, ImportError, ValueError) as error:
        refuse(str(error), 1)
    serve_until_stopped(robot, cfg.address, token)


def check_limits(limits: dict) -> None:
    """Every key of ``limits`` names a field of ``SafetyLimits`` (before the world is built)."""
    names = [item.name for item in dataclasses.fields(SafetyLimits)]
    for key, value in limits.items():
        expected = f"no such limit; expected one of {', '.join(names)}"
        require(key in names, f"limits.{key}", value, expected)


def build_robot(cfg: ServerConfig, composed: DictConfig) -> Robot:
    """The robot of ``cfg`` (``composed``, as Hydra composed it), every arm behind a
    ``SafetyLayer``."""
    if cfg.hardware is not None:
        return make_robot(OmegaConf.to_container(composed.hardware, resolve=True))
    from hardware.sim_robot import make_sim_robot  # MuJoCo and the sim: only for the sim arm

    return make_sim_robot(cfg.env_id, cfg.env_kwargs, cfg.seed, cfg.limits, cfg.camera_fps)


def serve_until_stopped(robot: Robot, address: str, token: str | None) -> None:
    """Serve ``robot`` on ``address`` until SIGTERM or SIGINT, then close it (its arms hold);
    SIGUSR1, and in a terminal with one arm the key e, latch every arm's e-stop."""
    arms = list(robot.arms.values())

    def estop_all(signum: int, frame: object) -> None:  # as hardware.estop, for every arm
        for arm in arms:
            arm.estop("signal SIGUSR1", blocking=False)

    signal.signal(signal.SIGUSR1, estop_all)
    unbind_key = bind_estop_key(arms[0]) if len(arms) == 1 else None  # None: not a terminal
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    try:
        serve(robot, address, token, stop, lambda endpoint: print(f"ready {endpoint}", flush=True))
    except zmq.ZMQError as error:
        raise ConfigError.line(f"cannot bind {address}: {error}") from None
    finally:
        if unbind_key is not None:
            unbind_key()
        robot.close()


def refuse(why: str, status: int) -> NoReturn:
    """Say ``why`` in one line on stderr, ``<program>: error: <why>``, and exit with ``status``
    (no traceback)."""
    print(f"{program_name()}: error: {' '.join(why.split())}", file=sys.stderr, flush=True)
    raise SystemExit(status)
