"""Scripted expert for PickLift: grasp the cube (``GraspExpert``), then lift it straight up.

While held, the cube is raised at ``LIFT_SPEED`` to ``LIFT_HEIGHT`` plus a margin above the
success height, so that the episode ends on success with the arm still moving smoothly.
"""

from __future__ import annotations

import numpy as np

from sim.envs.grasp_expert import GraspExpert
from sim.envs.pick_lift import LIFT_HEIGHT
from sim.envs.task_helpers import GRIPPER_CLOSED

LIFT_SPEED = 0.03  # metres per policy step while lifting
LIFT_MARGIN = 0.03  # how far above the success height the hand aims


class PickLiftExpert(GraspExpert):
    """The ``Expert`` for ``robopolicy/PickLift-v0`` (see ``sim.experts``)."""

    def carry(self, hand: np.ndarray) -> np.ndarray:
        goal = np.array([hand[0], hand[1], LIFT_HEIGHT + LIFT_MARGIN])
        return self.motion.toward(goal, self.grasp_yaw, GRIPPER_CLOSED, LIFT_SPEED)
