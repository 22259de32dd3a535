"""Robots built from the Hydra configs in conf/hardware/: the real-arm configs compose and fail
with the driver's clear error when no arm is there; every arm the factory returns is behind a
running SafetyLayer with the arm's forward kinematics (joint commands bounded by the workspace
box), the sim robot included; every gripper behind a GripperGuard."""

import re
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from hardware.factory import make_robot
from hardware.interfaces import Arm, ArmCommand, ArmState, Gripper, GripperCommand, Robot
from hardware.kinematics import franka_kinematics, ur5e_kinematics
from hardware.safety import GripperGuard, SafetyLayer

CONF = Path(__file__).resolve().parents[1] / "conf" / "hardware"
REAL = {"ur5e": "UR arm (RTDE)", "franka": "Franka arm (FCI)"}
CLIENTS = {"ur5e": ("rtde_control", "ur_rtde"), "franka": ("franky", "franky-control")}


def compose_hardware(name, overrides=()):
    with initialize_config_dir(config_dir=str(CONF), version_base=None):
        return compose(config_name=name, overrides=list(overrides))


@pytest.mark.parametrize("name", sorted(REAL))
@pytest.mark.parametrize("ip", ["127.0.0.1", "192.0.2.1"])
def test_real_arm_config_without_an_arm_gives_the_unreachable_error(name, ip):
    module, package = CLIENTS[name]
    cfg = compose_hardware(name, [f"arms.arm.ip={ip}", "arms.arm.connect_timeout=0.5"])
    started = time.monotonic()
    try:
        __import__(module)
    except ImportError:  # the client is not installed: the error names the package instead
        with pytest.raises(ImportError, match=f"'{package}' package: pip install"):
            make_robot(cfg)
        return
    with pytest.raises(ConnectionError, match=re.escape(f"{REAL[name]} at {ip}:")):
        make_robot(cfg)
    assert time.monotonic() - started < 2.0


@pytest.mark.parametrize("name", sorted(REAL))
def test_real_arm_config_without_its_client_names_the_package(name, monkeypatch):
    module, package = CLIENTS[name]
    monkeypatch.setitem(sys.modules, module, None)  # makes `import module` fail
    with pytest.raises(ImportError, match=f"'{package}' package: pip install {package}=="):
        make_robot(compose_hardware(name))


@pytest.mark.parametrize("name", sorted(REAL))
def test_real_arm_config_is_complete_and_documented(name):
    cfg = OmegaConf.to_container(compose_hardware(name), resolve=True)
    assert cfg["_target_"] == "hardware.factory.assemble_robot"
    assert cfg["grippers"]["gripper"]["ip"] == cfg["arms"]["arm"]["ip"]  # interpolation resolves
    assert set(cfg["safety"]) == set(cfg["arms"])  # every arm has limits
    for line in (CONF / f"{name}.yaml").read_text().splitlines():
        if re.match(r"\s*[A-Za-z_]+:\s*\S", line):  # a key with a value: a default
            assert "#" in line, f"{name}.yaml: default without a comment: {line.strip()}"


def test_config_without_a_target_is_refused():
    with pytest.raises(ValueError, match="needs a _target_ returning a Robot"):
        make_robot({"arms": {}})


# ---- arms behind the safety layer (real MuJoCo sim arm) ------------------------------------

STATE_ONLY = {"obs_mode": "state"}
WORLDS = []  # the sim worlds bare_sim_robot built, to check that they were closed


def bare_sim_robot():
    """A sim robot whose arm is NOT wrapped, as a careless builder would return it."""
    from hardware.sim_robot import SimArm, SimWorld

    world = SimWorld(env_kwargs=STATE_ONLY)
    WORLDS.append(world)
    return Robot(arms={"arm": SimArm(world)}, task=world)


def sim_limits():
    return {
        "workspace_low": [-0.35, -0.35, 0.01],
        "workspace_high": [0.2, 0.35, 0.35],
        "joint_low": [-2.8973, -1.7628, -2.8973, -3.0718, -2.8973, -0.0175, -2.8973],
        "joint_high": [2.8973, 1.7628, 2.8973, -0.0698, 2.8973, 3.7525, 2.8973],
        "max_joint_velocity": 1.0,
        "max_joint_acceleration": 10.0,
        "max_joint_step": 0.1,
        "max_translation_step": 0.02,
        "max_rotation_step": 0.1,
    }


def test_unwrapped_arm_is_wrapped_with_the_configured_limits():
    cfg = {"_target_": "test_hardware_factory.bare_sim_robot", "safety": {"arm": sim_limits()}}
    robot = make_robot(cfg)
    try:
        layer = robot.arms["arm"]
        assert isinstance(layer, SafetyLayer) and layer._thread.is_alive()  # watchdog running
        state = layer.read_state()
        far = state.ee_position + np.array([0.0, 0.0, 0.1])
        layer.send_command(ArmCommand.pose(far, state.ee_quat, time.monotonic() + 0.5))
        assert layer.counts["clamped"] == 1  # 10 cm asked, the configured 2 cm let through
    finally:
        robot.close()


def test_arm_without_limits_is_refused_and_the_robot_closed():
    with pytest.raises(
        ValueError, match=r"arm 'arm' has no safety limits: add hardware.safety.arm"
    ):
        make_robot({"_target_": "test_hardware_factory.bare_sim_robot"})
    assert not WORLDS[-1]._thread.is_alive()  # the robot was closed before the error
    with pytest.raises(ValueError, match=r"hardware.safety names arms the robot lacks: \['left'\]"):
        cfg = {"left": sim_limits(), "arm": sim_limits()}
        make_robot({"_target_": "test_hardware_factory.bare_sim_robot", "safety": cfg})


def test_sim_robot_config_keeps_its_own_safety_layer():
    cfg = {"_target_": "hardware.sim_robot.make_sim_robot", "env_kwargs": STATE_ONLY}
    robot = make_robot(cfg)
    try:
        assert isinstance(robot.arms["arm"], SafetyLayer)
        assert not isinstance(robot.arms["arm"].arm, SafetyLayer)  # not wrapped twice
    finally:
        robot.close()


def test_factory_bounds_joint_commands_of_the_sim_arm_by_the_box():
    cfg = {"_target_": "test_hardware_factory.bare_sim_robot", "safety": {"arm": sim_limits()}}
    robot = make_robot(cfg)
    try:
        layer = robot.arms["arm"]
        assert layer.forward_kinematics == layer.arm.forward_kinematics
        down = np.array([0.0, 0.1, 0.0, 0.1, 0.0, 0.0, 0.0])  # shoulder and elbow: hand down
        for _ in range(15):  # towards the table (the box's floor: ~8 steps), 0.1 rad a step
            target = layer.read_state().joint_positions + down
            layer.send_command(ArmCommand.joints(target, time.monotonic() + 0.1))
            time.sleep(0.1)
            hand = layer.read_state().ee_position
            assert hand[2] > sim_limits()["workspace_low"][2] - 0.01  # measured, tracking lag
        assert any("cut joint step" in r.reason for r in layer.interventions)
    finally:
        robot.close()


# ---- real arms: their kinematics reach the layer (fakes standing in for the drivers) -------

HOMES = {
    "ur5e": [0.0, -np.pi / 2, np.pi / 2, -np.pi / 2, -1.57, 0.0],
    "franka": [0.0, -np.pi / 4, 0.0, -2.356, 0.0, 1.571, 0.785],
}


class FakeDHArm(Arm):
    """A UR5e or Franka driver stand-in: the drivers' kinematics, a state that follows each
    command at once; ``offset`` shifts the hand it measures (a wrong TCP in the config)."""

    def __init__(self, model: str, offset: float = 0.0, kinematics: bool = True) -> None:
        fk = ur5e_kinematics() if model == "ur5e" else franka_kinematics()
        if kinematics:
            self.forward_kinematics = fk
        self.fk, self.offset = fk, offset
        self.joints = np.array(HOMES[model])
        self.commands = []

    def read_state(self) -> ArmState:
        hand = self.fk(self.joints) + [self.offset, 0.0, 0.0]
        return ArmState(
            self.joints, np.zeros(len(self.joints)), hand, [0, 1, 0, 0], time.monotonic()
        )

    def send_command(self, command: ArmCommand) -> None:
        self.commands.append(command)
        if command.is_joint:
            self.joints = command.joint_positions

    def hold(self) -> None:
        pass

    def stop(self) -> None:
        pass

    def close(self) -> None:
        pass


def real_config(name: str, **arm_args) -> dict:
    cfg = OmegaConf.to_container(compose_hardware(name), resolve=True)
    arm = {"_target_": "test_hardware_factory.FakeDHArm", "model": name, **arm_args}
    return {**cfg, "arms": {"arm": arm}, "grippers": {}, "cameras": {}}


@pytest.mark.parametrize("name", sorted(REAL))
def test_real_arm_joint_commands_are_bounded_by_the_box_through_its_kinematics(name):
    robot = make_robot(real_config(name))
    try:
        layer, arm = robot.arms["arm"], robot.arms["arm"].arm
        assert layer.forward_kinematics == arm.forward_kinematics
        low, high = layer.limits.workspace_low, layer.limits.workspace_high
        for _ in range(60):  # shoulder down, 0.15 rad a command: the hand heads for the table
            target = arm.joints + np.eye(len(arm.joints))[1] * 0.15 * (
                1 if name == "franka" else -1
            )
            layer.send_command(ArmCommand.joints(target, time.monotonic() + 1.0))
        hands = np.array([arm.fk(command.joint_positions) for command in arm.commands])
        assert len(hands) > 5 and (hands >= low).all() and (hands <= high).all()
        assert any("cut joint step" in r.reason for r in layer.interventions)
    finally:
        robot.close()


@pytest.mark.parametrize("name", sorted(REAL))
def test_real_arm_without_matching_kinematics_is_refused(name):
    with pytest.raises(ValueError, match="has no forward_kinematics"):
        make_robot(real_config(name, kinematics=False))
    with pytest.raises(ValueError, match="put the hand 50 mm from where the arm measures it"):
        make_robot(real_config(name, offset=0.05))


class FakeHand(Gripper):
    def read_state(self):
        raise NotImplementedError

    def send_command(self, command: GripperCommand) -> None:
        self.last = command

    def close(self) -> None:
        pass


def test_grippers_are_guarded():
    hand = {"_target_": "test_hardware_factory.FakeHand"}
    cfg = {"_target_": "hardware.factory.assemble_robot", "_recursive_": False, "arms": {}}
    robot = make_robot({**cfg, "grippers": {"hand": hand}})
    guard = robot.grippers["hand"]
    assert isinstance(guard, GripperGuard) and isinstance(guard.gripper, FakeHand)
    assert guard.send_command(GripperCommand(3.0, 0.0)) is guard.gripper.last
    assert guard.gripper.last.opening == 1.0
    assert guard.send_command(GripperCommand(float("nan"), 0.0)) is None
