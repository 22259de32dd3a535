"""The arms that bench/safety_fuzz.py fuzzes (``make_arms``: limits, forward kinematics, home
pose) and the recording rigs behind their safety layers (a fake clock, an arm that keeps the last
command forwarded and jumps to it, a gripper that keeps the last command)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np
from omegaconf import OmegaConf

from hardware.interfaces import Arm, ArmCommand, ArmState, Gripper, GripperCommand
from hardware.kinematics import franka_kinematics, ur5e_kinematics
from hardware.limits import SafetyLimits
from robopolicy.config.locate import conf_dir

ARM_NAMES = ("panda", "ur5e", "franka")


@dataclass(frozen=True)
class FuzzArm:
    """An arm to fuzz: its limits, forward kinematics (joints -> hand) and home pose."""

    name: str
    limits: SafetyLimits
    fk: object
    home: np.ndarray
    home_quat: np.ndarray


def make_arms(names=ARM_NAMES) -> dict[str, FuzzArm]:
    """The arms of the module doc (the sim's PushCube env is built only for ``panda``)."""
    arms = {}
    if "panda" in names:
        import gymnasium as gym

        import sim
        from hardware.kinematics import sim_arm_kinematics
        from hardware.sim_robot import sim_safety_limits

        env = gym.make(sim.PUSH_CUBE_ID, obs_mode="state").unwrapped
        env.reset(seed=0)
        world = SimpleNamespace(  # what sim_safety_limits reads of a SimWorld
            env=env,
            joint_low=env.controller.joint_low,
            joint_high=env.controller.joint_high,
            control_period=env.substeps * env.model.opt.timestep,
        )
        fk = sim_arm_kinematics(env.model, "panda")
        home = np.asarray(env.arm.home_qpos, dtype=np.float64)
        arms["panda"] = FuzzArm("panda", sim_safety_limits(world), fk, home, env.home_quat)
    down = np.array([0.0, 1.0, 0.0, 0.0])
    real = {
        "ur5e": (ur5e_kinematics(), [0.0, -math.pi / 2, math.pi / 2, -math.pi / 2, -1.57, 0.0]),
        "franka": (franka_kinematics(), [0.0, -math.pi / 4, 0.0, -2.356, 0.0, 1.571, 0.785]),
    }
    for name in names:
        if name in real:
            fk, home = real[name]
            config = OmegaConf.load(conf_dir() / "hardware" / f"{name}.yaml")
            limits = SafetyLimits(**OmegaConf.to_container(config.safety.arm))
            arms[name] = FuzzArm(name, limits, fk, np.array(home), down)
    return arms


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class RecordingArm(Arm):
    """Keeps the last command forwarded, with the state and time it met; jumps to it."""

    def __init__(self, clock: FakeClock, arm: FuzzArm) -> None:
        self.clock, self.fk = clock, arm.fk
        self.state = ArmState(arm.home, np.zeros(len(arm.home)), arm.fk(arm.home), arm.home_quat, 0)
        self.last: tuple[ArmCommand, ArmState, float] | None = None

    def read_state(self) -> ArmState:
        return self.state

    def send_command(self, command: ArmCommand) -> None:
        self.last = (command, self.state, self.clock())
        old, now = self.state, self.clock()
        if command.is_joint:
            joints = command.joint_positions
            velocity = (joints - old.joint_positions) / 0.01
            self.state = ArmState(joints, velocity, self.fk(joints), old.ee_quat, now)
        else:
            self.state = ArmState(
                old.joint_positions, old.joint_velocities, command.ee_position, command.ee_quat, now
            )

    def hold(self) -> None:
        """Holding, stopping and closing change nothing measured here."""

    stop = close = hold


class RecordingGripper(Gripper):
    """Keeps the last command it got; measures nothing."""

    last: GripperCommand | None = None
    read_state = close = RecordingArm.hold

    def send_command(self, command: GripperCommand) -> None:
        self.last = command
