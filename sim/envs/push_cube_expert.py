"""Scripted expert for PushCube: get behind the cube, then push it along the line to the target.

It plans hand *positions* from privileged state (cube and target poses from the simulator) and
turns them into actions with ``TabletopEnv.action_for_pose``, so it works in every action space.
The hand keeps its home orientation (pointing down) with the gripper closed, the two fingers
forming a small pusher.

Each step, with ``d`` the unit vector from the cube's centre to the target:

* ``lift``: the hand is low but not behind the cube (it slipped off to the side, or the cube
  turned); rise to travel height, backing away from the cube.
* ``approach``: at travel height, fly to above the pre-push point ``cube - d * standoff``.
* ``descend``: go down to push height at the pre-push point (until there, within 1 cm).
* ``push``: aim the hand at the cube's near face, a few centimetres ahead, along ``d``; because
  ``d`` is recomputed from the cube's current position each step, a cube that drifts sideways
  pulls the aim point with it. If the hand ends up more than ``MAX_LATERAL`` off the line, or
  level with the cube, go back to ``lift``.

Motion is rate-limited (``TRAVEL_SPEED``, ``PUSH_SPEED`` metres per policy step) so pushes are
gentle, and a ``TeleopStyle`` adds noise and pauses on top through ``sim.experts.TeleopNoise``.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np

from sim.envs.push_cube import CUBE_HALF_SIZE, PushCubeEnv
from sim.experts import TeleopNoise, TeleopStyle

PUSH_HEIGHT = 0.022  # grip-site height while pushing: the finger pads at the cube's mid-height
TRAVEL_HEIGHT = 0.09  # grip-site height that clears the cube with the fingers
STANDOFF_MARGIN = 0.015  # gap between fingers and cube at the pre-push point
CONTACT = CUBE_HALF_SIZE + 0.008  # hand-to-cube-centre distance when the pads touch the face
PUSH_LEAD = 0.03  # how far past the contact point the push aims
MAX_LATERAL = 0.015  # how far off the push line the hand may drift before re-approaching
TRAVEL_SPEED = 0.04
PUSH_SPEED = 0.02
CLOSED = 1.0


def _limit(step: np.ndarray, max_norm: float) -> np.ndarray:
    norm = float(np.linalg.norm(step))
    return step if norm <= max_norm else step * (max_norm / norm)


class PushCubeExpert:
    """The ``Expert`` for ``robopolicy/PushCube-v0`` (see ``sim.experts``)."""

    def __init__(self, env: gym.Env, style: TeleopStyle) -> None:
        self.env = env
        self.task: PushCubeEnv = env.unwrapped
        self.noise = TeleopNoise(style, env.action_space)
        self.phase = "lift"
        # pre-push point's distance behind the cube's centre: the fingers land clear of the cube
        self.standoff = CUBE_HALF_SIZE + self.task.arm.fingertip_radius + STANDOFF_MARGIN

    @property
    def mode(self) -> int | None:
        return None

    def reset(self, rng: np.random.Generator) -> None:
        self.noise.reset(rng)
        self.phase = "lift"

    def act(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        task = self.task
        hand, _ = task.eef_pose()
        goal = self._plan(hand)
        speed = PUSH_SPEED if self.phase == "push" else TRAVEL_SPEED
        goal = hand + _limit(goal - hand, speed)
        action = task.action_for_pose(goal, task.home_quat, CLOSED)
        hold = task.action_for_pose(hand, task.home_quat, CLOSED)
        return self.noise(action, hold)

    def _plan(self, hand: np.ndarray) -> np.ndarray:
        """Update the phase and return the hand position to move toward."""
        cube = self.task.cube_pose()[0][:2]
        to_target = self.task.target_xy() - cube
        direction = to_target / max(float(np.linalg.norm(to_target)), 1e-6)
        relative = hand[:2] - cube
        along = float(relative @ direction)
        lateral = float(np.linalg.norm(relative - along * direction))
        pre_push = cube - direction * self.standoff

        behind = along < -CUBE_HALF_SIZE and lateral < MAX_LATERAL
        if self.phase == "push" and not behind:
            self.phase = "lift"
        if self.phase == "lift":
            if hand[2] > TRAVEL_HEIGHT - 0.01:
                self.phase = "approach"
            else:
                away = hand[:2] + 0.02 * relative / max(float(np.linalg.norm(relative)), 1e-6)
                return np.array([away[0], away[1], TRAVEL_HEIGHT])
        if self.phase == "approach":
            if np.linalg.norm(hand[:2] - pre_push) < 0.01:
                self.phase = "descend"
            else:
                return np.array([pre_push[0], pre_push[1], TRAVEL_HEIGHT])
        if self.phase == "descend":
            if hand[2] < PUSH_HEIGHT + 0.008 and np.linalg.norm(hand[:2] - pre_push) < 0.01:
                self.phase = "push"
            else:
                return np.array([pre_push[0], pre_push[1], PUSH_HEIGHT])
        aim = cube - direction * (CONTACT - min(PUSH_LEAD, float(np.linalg.norm(to_target))))
        return np.array([aim[0], aim[1], PUSH_HEIGHT])
