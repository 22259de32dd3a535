"""Build a ``Robot`` from config, with every arm behind a ``SafetyLayer``.

A robot config (``conf/hardware/<robot>.yaml``) names in ``_target_`` a function that returns a
``Robot``: ``assemble_robot`` for real hardware (each device its own ``_target_``: a driver class
with its IP or serial), or a complete builder such as ``hardware.sim_robot.make_sim_robot``.
``make_robot(cfg)`` instantiates it with ``hydra.utils.instantiate`` and then makes sure that no
arm can be reached except through a safety layer:

* an arm the builder already wrapped (the sim robot wraps its own, with its forward kinematics)
  is kept as it is, and the config may not give it other limits;
* every other arm is wrapped in ``SafetyLayer(arm, SafetyLimits(**cfg.safety[name]),
  forward_kinematics=arm.forward_kinematics)``, whose watchdog thread is started, so its joint
  commands are bounded by the workspace box as its pose commands are. An arm with no limits in
  ``cfg.safety`` or without ``forward_kinematics`` is an error (the robot is closed first), and
  so is one whose kinematics put the hand more than ``KINEMATICS_TOLERANCE`` from where the arm
  measures it (a wrong model or tool offset would make the box mean another point);
* every gripper not yet guarded is wrapped in a ``GripperGuard`` (opening clamped into [0, 1],
  NaN rejected).

``assemble_robot`` builds devices in order (arms, grippers, cameras, sensors) and closes the
ones already open when a later one fails, so a camera with a wrong serial does not leave an arm
connected. Errors from the drivers (unreachable IP, missing package) come through as they are,
not wrapped in Hydra's ``InstantiationException``.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from hardware.interfaces import Arm, Device, Robot
from hardware.safety import GripperGuard, SafetyLayer, SafetyLimits

GROUPS = ("arms", "grippers", "cameras", "sensors")
KINEMATICS_TOLERANCE = 0.01  # m between the hand by forward kinematics and as the arm measures it


def _build(spec: object, where: str) -> Device:
    """A device from its config (``_target_`` + arguments), or ``spec`` itself if built."""
    if isinstance(spec, Device):
        return spec
    if not isinstance(spec, Mapping) or "_target_" not in spec:
        raise ValueError(f"hardware.{where} must be a device config with a _target_; got {spec!r}")
    try:
        return instantiate(spec, _convert_="all")
    except InstantiationException as error:  # the driver's own error says what is wrong
        raise (error.__cause__ or error) from None


def assemble_robot(
    arms: Mapping[str, object],
    grippers: Mapping[str, object] | None = None,
    cameras: Mapping[str, object] | None = None,
    sensors: Mapping[str, object] | None = None,
    info: Mapping[str, object] | None = None,
) -> Robot:
    """A ``Robot`` from device configs (name -> ``{_target_: ..., **kwargs}``) or devices.

    Use it with ``_recursive_: false`` in the config, so that devices are built here one at a
    time and closed again if a later one fails. The arms are *not* wrapped yet: ``make_robot``
    does that."""
    robot = Robot(info=dict(info or {}))
    specs = {"arms": arms, "grippers": grippers, "cameras": cameras, "sensors": sensors}
    try:
        for group in GROUPS:
            for name, spec in (specs[group] or {}).items():
                getattr(robot, group)[name] = _build(spec, f"{group}.{name}")
    except BaseException:
        robot.close()
        raise
    return robot


def make_robot(cfg: Mapping | DictConfig) -> Robot:
    """The robot ``cfg`` describes, every arm behind a running ``SafetyLayer`` (module doc)."""
    cfg = OmegaConf.create(cfg) if not isinstance(cfg, DictConfig) else cfg
    if "_target_" not in cfg:
        raise ValueError(
            "a hardware config needs a _target_ returning a Robot, e.g. "
            "hardware.factory.assemble_robot or hardware.sim_robot.make_sim_robot"
        )
    safety = OmegaConf.to_container(cfg.get("safety") or OmegaConf.create({}), resolve=True)
    build = OmegaConf.masked_copy(cfg, [key for key in cfg if key != "safety"])
    try:
        robot = instantiate(build, _convert_="all")
    except InstantiationException as error:
        raise (error.__cause__ or error) from None
    if not isinstance(robot, Robot):
        raise TypeError(
            f"hardware._target_ {cfg._target_} returned {type(robot).__name__}, not a Robot"
        )
    try:
        _guard_arms(robot, safety)
        for name, gripper in robot.grippers.items():
            if not isinstance(gripper, GripperGuard):
                robot.grippers[name] = GripperGuard(gripper)
    except BaseException:
        robot.close()
        raise
    return robot


def _guard_arms(robot: Robot, safety: dict) -> None:
    """Wrap every unwrapped arm of ``robot`` in a started ``SafetyLayer`` with its limits."""
    unknown = sorted(set(safety) - set(robot.arms))
    if unknown:
        raise ValueError(
            f"hardware.safety names arms the robot lacks: {unknown}; arms: {sorted(robot.arms)}"
        )
    for name, arm in robot.arms.items():
        if isinstance(arm, SafetyLayer):
            if name in safety:
                raise ValueError(
                    f"arm {name!r} is already behind a SafetyLayer made by its builder; set its "
                    "limits there, not in hardware.safety"
                )
            continue
        if name not in safety:
            raise ValueError(
                f"arm {name!r} has no safety limits: add hardware.safety.{name} with the fields "
                "of hardware.safety.SafetyLimits"
            )
        try:
            limits = SafetyLimits(**safety[name])
        except TypeError as error:
            raise ValueError(f"hardware.safety.{name}: {error}") from error
        layer = SafetyLayer(arm, limits, forward_kinematics=_checked_kinematics(name, arm))
        layer.start()
        robot.arms[name] = layer


def _checked_kinematics(name: str, arm: Arm):
    """``arm.forward_kinematics``, once it agrees with the hand position the arm measures."""
    kinematics = getattr(arm, "forward_kinematics", None)
    if kinematics is None:
        raise ValueError(
            f"arm {name!r} ({type(arm).__name__}) has no forward_kinematics: its joint commands "
            "could not be kept in the workspace box"
        )
    state = arm.read_state()
    gap = float(np.linalg.norm(kinematics(state.joint_positions) - state.ee_position))
    if not gap <= KINEMATICS_TOLERANCE:
        raise ValueError(
            f"arm {name!r}: its forward kinematics put the hand {gap * 1000:.0f} mm from where "
            f"the arm measures it (tolerance {KINEMATICS_TOLERANCE * 1000:.0f} mm); check the "
            "arm's model and tool offset (the TCP set on the controller)"
        )
    return kinematics
