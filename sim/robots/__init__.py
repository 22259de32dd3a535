"""Arms with parallel grippers (Franka Panda, UR5e), built from robosuite's installed models."""

from sim.robots.arms import ARMS, PANDA, UR5E, ArmDescription, build_arm_spec

__all__ = ["ARMS", "PANDA", "UR5E", "ArmDescription", "build_arm_spec"]
