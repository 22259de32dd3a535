"""Scripted expert for AroundObstacle: grasp the cube (``GraspExpert``), carry it round the post
on a side drawn per episode, and set it down on the target.

The side is drawn at ``reset`` from the expert's rng: left (mode 0, +y) with probability
``left_prob`` (by default the env's ``expert_left_prob``), else right (mode 1). Carry phases, at
hover height (where the cube cannot clear the post but the hand can):

* ``carry_lift``: straight up to hover height, turning the hand (and the cube with it) to yaw 0,
  where the hand's long side (the finger axis, 21 cm) runs along y: set down beside the post,
  the hand then reaches only 3.5 cm towards it;
* ``carry_before``: to the point ``PASS_AHEAD`` before the post's x, on the chosen side at
  ``PASS_Y``;
* ``carry_after``: to the point ``PASS_AHEAD`` beyond the post's x on the same side; these two
  straight legs keep the cube and fingers well clear of the post;
* ``carry_over``: to above the target;
* ``carry_lower``: down until the cube touches the table; the episode ends on success there.
  Should it not (the cube landed outside the target), the expert opens the gripper (``release``)
  and begins again with a new grasp.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np

from sim.envs.grasp_expert import HEIGHT_TOLERANCE, HOVER_HEIGHT, YAW_TOLERANCE, GraspExpert
from sim.envs.multimodal import CUBE_HALF_SIZE, LEFT, PASS_Y, POST_X, RIGHT
from sim.envs.task_helpers import GRIPPER_CLOSED, GRIPPER_OPEN
from sim.experts import TeleopStyle

PASS_AHEAD = 0.04  # how far before / beyond the post's x the passing points lie
WAYPOINT_TOLERANCE = 0.015  # distance (m) at which a passing point counts as reached
OVER_TOLERANCE = 0.006  # cube-above-target error (m) before lowering
CARRY_SPEED = 0.035  # metres per policy step with the cube held
LOWER_SPEED = 0.02  # metres per policy step while setting the cube down
SET_DOWN_GAP = 0.002  # cube bottom's height above the table when the lowering ends
RELEASE_STEPS = 3
CARRY_YAW = 0.0  # hand yaw (from home) while carrying: the finger axis along y


class AroundObstacleExpert(GraspExpert):
    """The ``Expert`` for ``robopolicy/AroundObstacle-v0`` (see ``sim.experts``)."""

    def __init__(self, env: gym.Env, style: TeleopStyle, left_prob: float | None = None) -> None:
        super().__init__(env, style)
        self.left_prob = self.task.expert_left_prob if left_prob is None else left_prob
        self._mode = LEFT

    @property
    def mode(self) -> int:
        return self._mode

    def reset(self, rng: np.random.Generator) -> None:
        super().reset(rng)
        self._mode = LEFT if rng.random() < self.left_prob else RIGHT

    def grasp_yaw_for(self, cube: np.ndarray, cube_yaw: float) -> float:
        """Of the hand yaws that line the fingers up with the cube's faces, the one whose finger
        axis (the hand's long side) is most nearly square to the direction of the post, so
        that a cube dropped beside the post can be picked up again without hitting it."""
        to_post = np.array([POST_X, 0.0]) - cube[:2]
        to_post /= max(float(np.linalg.norm(to_post)), 1e-6)
        base = super().grasp_yaw_for(cube, cube_yaw)
        options = [base - np.pi / 2, base, base + np.pi / 2]
        return min(
            options, key=lambda yaw: abs(-np.sin(yaw) * to_post[0] + np.cos(yaw) * to_post[1])
        )

    def carry(self, hand: np.ndarray) -> np.ndarray | None:
        cube = self.task.cube_pose()[0]
        offset = hand - cube  # where the hand holds the cube, relative to its centre
        side = PASS_Y if self._mode == LEFT else -PASS_Y
        if self.phase == "carry":
            return self.set_phase("carry_lift")
        if self.phase == "carry_lift":
            lifted = hand[2] > HOVER_HEIGHT - HEIGHT_TOLERANCE
            if lifted and self.hand_yaw_error(CARRY_YAW) < YAW_TOLERANCE:
                return self.set_phase("carry_before")
            goal = np.array([hand[0], hand[1], HOVER_HEIGHT])
            return self.motion.toward(goal, CARRY_YAW, GRIPPER_CLOSED, CARRY_SPEED)
        legs = {
            "carry_before": np.array([POST_X - PASS_AHEAD, side]),
            "carry_after": np.array([POST_X + PASS_AHEAD, side]),
        }
        if self.phase in legs:
            point = legs[self.phase]
            if np.linalg.norm(cube[:2] - point) < WAYPOINT_TOLERANCE:
                return self.set_phase(
                    "carry_after" if self.phase == "carry_before" else "carry_over"
                )
            goal = np.array([point[0] + offset[0], point[1] + offset[1], HOVER_HEIGHT])
            return self.motion.toward(goal, CARRY_YAW, GRIPPER_CLOSED, CARRY_SPEED)
        target = self.task.target_xy()
        above = np.array([target[0] + offset[0], target[1] + offset[1], HOVER_HEIGHT])
        if self.phase == "carry_over":
            if np.linalg.norm(cube[:2] - target) < OVER_TOLERANCE:
                return self.set_phase("carry_lower")
            return self.motion.toward(above, CARRY_YAW, GRIPPER_CLOSED, CARRY_SPEED)
        down_z = CUBE_HALF_SIZE + SET_DOWN_GAP + offset[2]
        if hand[2] < down_z + 0.003:
            return self.set_phase("release")
        goal = np.array([above[0], above[1], down_z])
        return self.motion.toward(goal, CARRY_YAW, GRIPPER_CLOSED, LOWER_SPEED)

    def after_release(self, hand: np.ndarray) -> np.ndarray | None:
        if self.phase == "release":
            if self.phase_steps > RELEASE_STEPS:
                return self.set_phase("retreat")
            return self.motion.toward(hand, CARRY_YAW, GRIPPER_OPEN, LOWER_SPEED)
        return super().after_release(hand)
