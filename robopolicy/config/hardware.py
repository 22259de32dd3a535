"""Schemas of the robots in conf/hardware/ (eval.py ``hardware=<robot>``), built by
``hardware.factory.make_robot`` with ``hydra.utils.instantiate``, and of the robot server that
serves one of them (``ServerConfig``, conf/server.yaml).

The sim arm's builder takes the fields of ``SimRobotConfig``; a real robot is assembled device
by device (``RealRobotConfig``): each arm, gripper and camera is its driver's ``_target_`` and
arguments, checked by the driver, and each arm's ``safety`` limits are the fields of
``hardware.limits.SafetyLimits``, checked when the limits are built.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from robopolicy.config.checks import (
    ConfigError,
    at_least,
    default_of,
    one_of,
    positive,
    require,
)


@dataclass
class SimArmSettings:
    """The sim arm's world and limits: the arguments of ``hardware.sim_robot.make_sim_robot``
    (conf/hardware/sim.yaml's keys, and the robot server's for ``robot=sim``)."""

    env_id: str = "robopolicy/PushCube-v0"  # sim task: a gymnasium id (each conf/task/*.yaml
    #   names its env_id)
    env_kwargs: dict[str, Any] = field(default_factory=dict)  # gym.make kwargs, a mapping, e.g.
    #   {obs_mode: rgb, image_size: 96}
    seed: int = 0  # seed of the first episode the world starts in
    limits: dict[str, Any] = field(default_factory=dict)  # overrides of the sim arm's
    #   SafetyLimits (hardware.sim_robot.sim_safety_limits), e.g. {max_joint_velocity: 1.0}
    camera_fps: float | None = None  # rate the sim cameras render at (null: the env's policy
    #   rate)

    def check(self) -> None:
        at_least(self, 0, "seed")
        positive(self, "camera_fps")


SIM_ARM_KEYS = tuple(item.name for item in fields(SimArmSettings))


@dataclass
class SimRobotConfig(SimArmSettings):
    """conf/hardware/sim.yaml: the MuJoCo sim arm stepping in real time behind the safety layer
    (hardware/sim_robot.py). eval.py serves it with ``python -m hardware.server`` in its own
    process on loopback (deploy.* in conf/eval.yaml) and plays the checkpoint's task on it: its
    env_id is then the checkpoint's (or eval's env_id), its env_kwargs are merged over the
    checkpoint's and eval's, and eval.py resets episode i to seed + i."""

    _target_: str = "hardware.sim_robot.make_sim_robot"  # builder returning the Robot


SERVED_ROBOTS = ("sim",)  # robot=NAME where hardware is null: the sim arm of env_id
SERVER_TRANSPORTS = ("tcp://", "ipc://")  # the endpoints a robot server binds


@dataclass
class ServerConfig(SimArmSettings):
    """robopolicy-server (python -m hardware.server, conf/server.yaml): one robot served to
    policy-side clients over ZeroMQ (hardware/server.py), every arm behind its safety layer.
    The sim keys (env_id, env_kwargs, seed, limits, camera_fps: SimArmSettings) describe the sim
    arm of robot=sim; with hardware=NAME they do not apply and are refused."""

    robot: str = "sim"  # the robot served where hardware is null: sim, the MuJoCo arm of env_id
    #   stepping in real time (hardware/sim_robot.py)
    hardware: Any = None  # conf/hardware/<NAME>.yaml (hardware=NAME: ur5e, franka, sim): serve
    #   that robot instead, built by hardware.factory.make_robot as configured there (its keys:
    #   hardware.*); null: the sim arm of robot=sim
    address: str = "tcp://127.0.0.1:5555"  # the endpoint to bind: tcp://HOST:PORT (PORT *: a
    #   free one, named on the "ready" line) or ipc://PATH; beyond loopback it needs a token
    token: str | None = None  # shared secret every request must carry, 16 to 256 characters
    #   (null: the environment variable ROBOT_SERVER_TOKEN, else none: loopback binds only)

    def check(self) -> None:
        super().check()
        one_of(self, "robot", SERVED_ROBOTS)
        require(
            self.address.startswith(SERVER_TRANSPORTS),
            "address",
            self.address,
            "expected an endpoint to bind: tcp://HOST:PORT (PORT * picks a free one) or ipc://PATH",
        )
        if self.hardware is None:
            return
        for key in SIM_ARM_KEYS:
            value = getattr(self, key)
            require(
                value == default_of(self, key),
                key,
                value,
                "a key of robot=sim, which hardware=NAME does not take (that robot is configured "
                "in conf/hardware/<NAME>.yaml, its keys hardware.*); leave it out",
            )


@dataclass
class RealRobotConfig:
    """conf/hardware/<arm>.yaml for a real arm: its devices, one by one, and its safety limits."""

    _target_: str = "hardware.factory.assemble_robot"  # builds the devices one by one, closing
    #   them on failure
    _recursive_: bool = False  # assemble_robot instantiates each device itself
    arms: dict[str, Any] = field(default_factory=dict)  # name -> {_target_: driver, arguments}
    grippers: dict[str, Any] = field(default_factory=dict)  # name -> gripper driver
    cameras: dict[str, Any] = field(default_factory=dict)  # name -> camera driver
    info: dict[str, Any] = field(default_factory=dict)  # a description for logs and reports
    safety: dict[str, Any] = field(default_factory=dict)  # arm name -> the fields of
    #   hardware.limits.SafetyLimits (every arm needs its limits)

    def check(self) -> None:
        missing = sorted(set(self.arms) - set(self.safety))
        if missing:
            raise ConfigError(
                f"safety.{missing[0]}",
                None,
                "expected the arm's safety limits (the fields of hardware.limits.SafetyLimits)",
            )
