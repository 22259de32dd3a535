"""The grasping half of a scripted expert, shared by PickLift, Stack and AroundObstacle.

``GraspExpert`` runs a small state machine from privileged simulator state, re-planned every step
(closed loop), and leaves what happens to a held cube to a subclass (``carry``):

* ``approach``: fly at hover height to above the cube, the hand turned so that the fingers close
  on two opposite faces (``grasp_yaw``: by default the cube's yaw modulo 90 degrees, the smallest
  turn; a subclass may prefer another of the four).
* ``descend``: down until the finger pads are level with the cube's centre and the hand is
  centred on it (a grasp on an edge would not hold); ``retreat`` if the cube got pushed away.
* ``close``: hold still where the descent ended, the gripper closing, for ``CLOSE_STEPS`` steps,
  then ``carry`` if both fingers touch the cube, else ``retreat``.
* ``carry``: the subclass's phases, while the cube is held. If the grasp is lost (the cube
  slipped or a pause let it swing), ``retreat``.
* ``retreat``: open the gripper and rise to hover height, then ``approach`` again.
* any other phase: the subclass's, after it let go of the cube (``after_release``).

Motion is rate-limited and noised by ``HandMotion``, so a ``TeleopStyle`` shapes every phase.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import gymnasium as gym
import numpy as np

from sim.envs.task_helpers import (
    GRIPPER_CLOSED,
    GRIPPER_OPEN,
    HandMotion,
    wrap_angle,
    yaw_of,
)
from sim.experts import TeleopStyle

HOVER_HEIGHT = 0.1  # grip-site height for flying over the table and objects
ALIGN_TOLERANCE = 0.008  # hand-above-cube error (m) before descending
YAW_TOLERANCE = 0.08  # hand-to-cube yaw error (rad) before descending
HEIGHT_TOLERANCE = 0.006  # grip-site height error (m) that counts as arrived
CLOSE_STEPS = 5  # policy steps (0.5 s) given to the fingers to close
TRAVEL_SPEED = 0.04  # metres per policy step when the hand is free
DESCEND_SPEED = 0.025  # metres per policy step on the way down to a grasp
GRASP_PHASES = ("approach", "descend", "close", "retreat")
MAX_SWITCHES = 8  # phase switches allowed within one policy step (a cycle would be a bug)


class GraspExpert(ABC):
    """Base for experts that grasp one cube (``task.cube_geom``, pose from ``cube_body``)."""

    cube_body = "cube"

    def __init__(self, env: gym.Env, style: TeleopStyle) -> None:
        self.task = env.unwrapped
        self.motion = HandMotion(env, style)
        self.phase = "approach"
        self.phase_steps = 0
        self.grasp_yaw = 0.0
        self.grasp_point = np.zeros(3)

    @property
    def mode(self) -> int | None:
        return None

    def reset(self, rng: np.random.Generator) -> None:
        self.motion.reset(rng)
        self.set_phase("approach")

    def set_phase(self, phase: str) -> None:
        """Switch phase (returns None, so a phase handler can ``return self.set_phase(...)``)."""
        self.phase = phase
        self.phase_steps = 0

    def act(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        hand = self.task.eef_pose()[0]
        self.phase_steps += 1
        for _ in range(MAX_SWITCHES):  # a phase may hand over to the next within one step
            if self.phase.startswith("carry"):
                if self.task.grasp.holding(self.task.data, self.grasped_geom()):
                    action = self.carry(hand)
                else:
                    self.set_phase("retreat")
                    continue
            elif self.phase in GRASP_PHASES:
                action = self.grasp(hand)
            else:
                action = self.after_release(hand)
            if action is not None:
                return action
        raise RuntimeError(f"the expert's phases cycle without acting (phase {self.phase!r})")

    def grasped_geom(self) -> int:
        return self.task.cube_geom

    def cube(self) -> tuple[np.ndarray, float]:
        """The cube's centre and the hand yaw that grasps it."""
        body = self.task.data.body(self.cube_body)
        return body.xpos.copy(), self.grasp_yaw_for(body.xpos, yaw_of(body.xquat))

    def grasp_yaw_for(self, cube: np.ndarray, cube_yaw: float) -> float:
        """The hand yaw (from home) for grasping a cube at ``cube`` turned by ``cube_yaw``: the
        smallest turn that lines the fingers up with two faces."""
        return wrap_angle(4.0 * cube_yaw) / 4.0

    def hand_yaw_error(self, yaw: float) -> float:
        """Angle (rad) between the hand's orientation and the home one turned by ``yaw``."""
        _, quat = self.task.eef_pose()
        target = self.motion.hand_quat(yaw)
        return float(2.0 * np.arccos(min(1.0, abs(float(np.dot(quat, target))))))

    def grasp(self, hand: np.ndarray) -> np.ndarray | None:
        """The action of a phase up to a closed grasp; None after switching phase."""
        cube, cube_yaw = self.cube()
        motion = self.motion
        if self.phase == "retreat":
            if hand[2] > HOVER_HEIGHT - HEIGHT_TOLERANCE:
                return self.set_phase("approach")
            goal = np.array([hand[0], hand[1], HOVER_HEIGHT])
            return motion.toward(goal, self.grasp_yaw, GRIPPER_OPEN, TRAVEL_SPEED)
        if self.phase == "approach":
            self.grasp_yaw = cube_yaw
            aligned = np.linalg.norm(hand[:2] - cube[:2]) < ALIGN_TOLERANCE
            if aligned and self.hand_yaw_error(cube_yaw) < YAW_TOLERANCE:
                return self.set_phase("descend")
            above = np.array([cube[0], cube[1], HOVER_HEIGHT])
            return motion.toward(above, cube_yaw, GRIPPER_OPEN, TRAVEL_SPEED)
        if self.phase == "descend":
            goal = np.array([cube[0], cube[1], max(cube[2], self.task.workspace_low[2] + 0.005)])
            offset = float(np.linalg.norm(hand[:2] - cube[:2]))
            if offset > 3 * ALIGN_TOLERANCE:
                return self.set_phase("retreat")
            if abs(hand[2] - goal[2]) < HEIGHT_TOLERANCE and offset < ALIGN_TOLERANCE / 2:
                self.grasp_point = goal
                return self.set_phase("close")
            return motion.toward(goal, self.grasp_yaw, GRIPPER_OPEN, DESCEND_SPEED)
        if self.phase == "close":
            if self.phase_steps > CLOSE_STEPS:
                holding = self.task.grasp.holding(self.task.data, self.grasped_geom())
                return self.set_phase("carry" if holding else "retreat")
            return motion.toward(self.grasp_point, self.grasp_yaw, GRIPPER_CLOSED, TRAVEL_SPEED)
        raise AssertionError(f"unknown phase {self.phase!r}")

    @abstractmethod
    def carry(self, hand: np.ndarray) -> np.ndarray | None:
        """The action while the cube is held (phase ``carry`` or ``carry_<name>``); None after
        switching phase."""

    def after_release(self, hand: np.ndarray) -> np.ndarray | None:
        """The action in a subclass's phases after letting go of the cube; None after switching
        phase."""
        raise AssertionError(f"unknown phase {self.phase!r}")
