"""Scripted expert for Stack: grasp cube A (``GraspExpert``), carry it over cube B, set it down,
let go, and back away.

Carry phases (the cube held; a lost grasp sends the base class to ``retreat`` and a new grasp):

* ``carry_lift``: straight up to hover height, where A clears B.
* ``carry_over``: at hover height, to above B's centre (re-read every step).
* ``carry_lower``: down until A's bottom is ``DROP_GAP`` above B's top, keeping over B.

Then the hand is free:

* ``release``: hold still with the gripper opening for ``RELEASE_STEPS`` steps.
* ``depart``: rise to hover height. The episode ends on success once A is at rest; if A did not
  end up on B, the expert starts over with ``approach``.
"""

from __future__ import annotations

import numpy as np

from sim.envs.grasp_expert import HEIGHT_TOLERANCE, HOVER_HEIGHT, GraspExpert
from sim.envs.stack import CUBE_A_HALF_SIZE, CUBE_B_HALF_SIZE
from sim.envs.task_helpers import GRIPPER_CLOSED, GRIPPER_OPEN

DROP_GAP = 0.004  # gap between A's bottom and B's top when letting go
OVER_TOLERANCE = 0.005  # A-above-B error (m) before lowering
CARRY_SPEED = 0.03  # metres per policy step with the cube held
LOWER_SPEED = 0.015  # metres per policy step while setting the cube down
RELEASE_STEPS = 4


class StackExpert(GraspExpert):
    """The ``Expert`` for ``robopolicy/Stack-v0`` (see ``sim.experts``)."""

    cube_body = "cube_a"

    def carry(self, hand: np.ndarray) -> np.ndarray | None:
        task, motion, yaw = self.task, self.motion, self.grasp_yaw
        a, b = task.cube_pos("cube_a"), task.cube_pos("cube_b")
        offset = hand - a  # where the hand holds A, relative to A's centre
        if self.phase == "carry":
            return self.set_phase("carry_lift")
        if self.phase == "carry_lift":
            if hand[2] > HOVER_HEIGHT - HEIGHT_TOLERANCE:
                return self.set_phase("carry_over")
            goal = np.array([hand[0], hand[1], HOVER_HEIGHT])
            return motion.toward(goal, yaw, GRIPPER_CLOSED, CARRY_SPEED)
        over = np.array([b[0], b[1], HOVER_HEIGHT]) + [offset[0], offset[1], 0.0]
        if self.phase == "carry_over":
            if np.linalg.norm(a[:2] - b[:2]) < OVER_TOLERANCE:
                return self.set_phase("carry_lower")
            return motion.toward(over, yaw, GRIPPER_CLOSED, CARRY_SPEED)
        place_z = b[2] + CUBE_B_HALF_SIZE + DROP_GAP + CUBE_A_HALF_SIZE + offset[2]
        if abs(hand[2] - place_z) < HEIGHT_TOLERANCE / 2:
            return self.set_phase("release")
        goal = np.array([over[0], over[1], place_z])
        return motion.toward(goal, yaw, GRIPPER_CLOSED, LOWER_SPEED)

    def after_release(self, hand: np.ndarray) -> np.ndarray | None:
        if self.phase == "release":
            if self.phase_steps > RELEASE_STEPS:
                return self.set_phase("depart")
            return self.motion.toward(hand, self.grasp_yaw, GRIPPER_OPEN, LOWER_SPEED)
        if self.phase == "depart":
            if hand[2] > HOVER_HEIGHT - HEIGHT_TOLERANCE:
                return self.set_phase("approach")
            goal = np.array([hand[0], hand[1], HOVER_HEIGHT])
            return self.motion.toward(goal, self.grasp_yaw, GRIPPER_OPEN, LOWER_SPEED)
        return super().after_release(hand)
