"""Schemas of the robots in conf/hardware/ (eval.py ``hardware=<robot>``), built by
``hardware.factory.make_robot`` with ``hydra.utils.instantiate``.

The sim arm's builder takes the fields of ``SimRobotConfig``; a real robot is assembled device
by device (``RealRobotConfig``): each arm, gripper and camera is its driver's ``_target_`` and
arguments, checked by the driver, and each arm's ``safety`` limits are the fields of
``hardware.limits.SafetyLimits``, checked when the limits are built.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from robopolicy.config.checks import ConfigError, positive


@dataclass
class SimRobotConfig:
    """conf/hardware/sim.yaml: the MuJoCo sim arm stepping in real time behind the safety layer
    (hardware/sim_robot.py). eval.py serves it with ``python -m hardware.server`` in its own
    process on loopback (deploy.* in conf/eval.yaml) and plays the checkpoint's task on it."""

    _target_: str = "hardware.sim_robot.make_sim_robot"  # builder returning the Robot
    env_id: str = "robopolicy/PushCube-v0"  # sim task (eval.py: the checkpoint's task, or
    #   eval's env_id; this one is then replaced)
    env_kwargs: dict[str, Any] = field(default_factory=dict)  # gym.make kwargs; eval.py merges
    #   them over the checkpoint's and eval's env_kwargs
    seed: int = 0  # seed of the first episode the world starts in (eval.py resets each to
    #   seed + i)
    limits: dict[str, Any] = field(default_factory=dict)  # overrides of the sim arm's
    #   SafetyLimits (hardware.sim_robot.sim_safety_limits)
    camera_fps: float | None = None  # rate the sim cameras render at (null: the env's policy
    #   rate)

    def check(self) -> None:
        positive(self, "camera_fps")


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
