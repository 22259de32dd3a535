"""Controllers: policy actions (end-effector delta/absolute pose, joint positions) -> actuators."""

from sim.controllers.arm_controller import ACTION_SPACES, ArmController
from sim.controllers.ik import DifferentialIK

__all__ = ["ACTION_SPACES", "ArmController", "DifferentialIK"]
