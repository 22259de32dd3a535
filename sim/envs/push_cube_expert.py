"""Scripted expert for PushCube: get behind the cube once, then push it along the line to the goal.

It plans hand *positions* from privileged state (cube and target poses from the simulator) and
turns them into actions with ``TabletopEnv.action_for_pose``, so it works in every action space.
The hand keeps its home orientation (pointing down) with the gripper closed, the two fingers
forming a small pusher.

The expert is memoryless and smooth, so that its demonstrations are easy to imitate: the action
is a function of the current hand, cube and target positions only (no phases, no hidden timers),
like a teleoperator who steadily tracks a reference path rather than reacting to thresholds, and
it reacts gently to small offsets (a policy that imitates it is never exactly on its path). With
``d`` the unit vector from the cube's centre to the target, and the hand's position relative to
the cube split into ``along`` (along ``d``, negative behind the cube) and ``lateral`` (across
it), each step:

* the reference point lies on the *push line* through the cube along ``d``, a look-ahead
  ``LOOKAHEAD`` in front of the hand's projection on it (pure pursuit: the hand converges on the
  line while moving along it), but never further forward than ``reach``: the cube's near face
  plus ``PUSH_LEAD`` for a hand that is low and within ``LATERAL_BAND`` of the line, receding
  linearly to the pre-push point ``cube - d * standoff`` as the hand gets up to twice that far
  off the line, or rises above push height. A hand beside, above or in front of the cube thus
  heads for the pre-push point, and one that drifts off the line while pushing backs off a
  little and re-centres, without lifting;
* the reference height is the push height near the push line behind the cube, climbing linearly
  (a glide slope) to ``TRAVEL_HEIGHT`` with the distance from that line; it stays at travel
  height while the straight way to the reference point would cross the cube, and while the hand
  is up above the cube's footprint;
* the hand moves a fraction ``GAIN`` (< 1: a damped approach, no overshoot and no zigzag) of the
  way to the reference each step, at most ``PUSH_SPEED`` metres near the cube and up to
  ``TRAVEL_SPEED`` away from it, and sweeps sideways across the cube only once high enough to
  clear it.

A ``TeleopStyle`` adds noise and pauses on top through ``sim.experts.TeleopNoise``.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np

from sim.envs.push_cube import CUBE_HALF_SIZE, PushCubeEnv
from sim.experts import TeleopNoise, TeleopStyle

PUSH_HEIGHT = 0.022  # grip-site height while pushing: the finger pads at the cube's mid-height
TRAVEL_HEIGHT = 0.11  # grip-site height that clears the cube with the fingers, with margin
STANDOFF_MARGIN = 0.015  # gap between fingers and cube at the pre-push point
CONTACT = CUBE_HALF_SIZE + 0.008  # hand-to-cube-centre distance when the pads touch the face
PUSH_LEAD = 0.03  # how far past the contact point the reference may lead while pushing
LOOKAHEAD = 0.04  # pure-pursuit look-ahead along the push line (metres)
LATERAL_BAND = 0.015  # off-line distance beyond which the reach recedes (fully at twice it)
GLIDE_START = 0.02  # distance from the push line below which the hand stays at push height
GLIDE_LENGTH = 0.04  # further distance over which the reference climbs to travel height
CLEAR_MARGIN = 0.003  # extra clearance around the cube's footprint for paths at push height
ENGAGE_HEIGHT = 0.01  # above push height + this, the hand is not low enough to push
GAIN = 0.6  # share of the remaining distance to the reference covered per step
TRAVEL_SPEED = 0.035  # metres per policy step, away from the cube
PUSH_SPEED = 0.02  # metres per policy step, within SLOW_RADIUS of the cube
SLOW_RADIUS = 0.06  # hand-to-cube distance (xy) within which the hand moves at PUSH_SPEED; the
#   speed limit rises linearly to TRAVEL_SPEED at twice this distance
CLOSED = 1.0


def _ramp(value: float, start: float, length: float) -> float:
    """0 below ``start``, 1 above ``start + length``, linear in between."""
    return float(np.clip((value - start) / length, 0.0, 1.0))


def _segment_distance(point: np.ndarray, start: np.ndarray, end: np.ndarray) -> float:
    """Distance from ``point`` to the segment ``start``-``end`` (all xy)."""
    span = end - start
    length2 = float(span @ span)
    fraction = 0.0 if length2 < 1e-12 else float(np.clip((point - start) @ span / length2, 0, 1))
    return float(np.linalg.norm(start + fraction * span - point))


class PushCubeExpert:
    """The ``Expert`` for ``robopolicy/PushCube-v0`` (see ``sim.experts``)."""

    def __init__(self, env: gym.Env, style: TeleopStyle) -> None:
        self.env = env
        self.task: PushCubeEnv = env.unwrapped
        self.noise = TeleopNoise(style, env.action_space)
        fingertip = self.task.arm.fingertip_radius
        # pre-push point's distance behind the cube's centre: the fingers land clear of the cube
        self.standoff = CUBE_HALF_SIZE + fingertip + STANDOFF_MARGIN
        # a path at push height closer than this to the cube's centre would hit it (any yaw)
        self.clear_radius = CUBE_HALF_SIZE * np.sqrt(2.0) + fingertip + CLEAR_MARGIN

    @property
    def mode(self) -> int | None:
        return None

    def reset(self, rng: np.random.Generator) -> None:
        self.noise.reset(rng)

    def act(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        task = self.task
        hand, _ = task.eef_pose()
        goal = hand + self._step(hand)
        action = task.action_for_pose(goal, task.home_quat, CLOSED)
        hold = task.action_for_pose(hand, task.home_quat, CLOSED)
        return self.noise(action, hold)

    def reference(self, hand: np.ndarray) -> tuple[np.ndarray, bool]:
        """The point (xyz) on the reference path that the hand tracks from ``hand``, and whether
        the straight way there crosses the cube (so the hand must stay above it)."""
        cube = self.task.cube_pose()[0][:2]
        to_target = self.task.target_xy() - cube
        direction = to_target / max(float(np.linalg.norm(to_target)), 1e-6)
        relative = hand[:2] - cube
        along = float(relative @ direction)
        lateral = float(np.linalg.norm(relative - along * direction))

        # how far forward the reference may go: into the cube (pushing) only for a hand that is
        # low and on the line; back to the pre-push point for one off the line or up high
        push_reach = -CONTACT + min(PUSH_LEAD, float(np.linalg.norm(to_target)))
        retreat = max(
            _ramp(lateral, LATERAL_BAND, LATERAL_BAND),
            _ramp(hand[2], PUSH_HEIGHT + ENGAGE_HEIGHT, ENGAGE_HEIGHT),
        )
        reach = push_reach + retreat * (-self.standoff - push_reach)
        aim = cube + direction * min(along + LOOKAHEAD, reach)

        # glide slope: push height near the push line behind the cube (behind the pre-push point
        # for a hand that is still up, behind the contact point for one that is down), higher
        # away from it
        low = hand[2] < PUSH_HEIGHT + 2 * ENGAGE_HEIGHT
        behind = min(along, -CONTACT if low else -self.standoff)
        corridor = float(np.linalg.norm(relative - behind * direction))
        height = _ramp(corridor, GLIDE_START, GLIDE_LENGTH)
        engaged = low and along < -CUBE_HALF_SIZE and lateral < 2 * LATERAL_BAND
        # the straight way to the reference would come closer to the cube than its clearance
        # (moving away from a cube the hand is already close to is fine)
        closest = _segment_distance(cube, hand[:2], aim)
        must_clear = not engaged and closest < min(
            self.clear_radius, np.hypot(along, lateral) - 0.002
        )
        if must_clear:  # stay up until the hand is back at the pre-push point's distance
            height = max(height, _ramp(along, -self.standoff + 0.004, 0.006))
        if not low:  # a hand above the cube's footprint stays up until it is clear of it
            height = max(
                height, 1.0 - _ramp(np.hypot(along, lateral), self.clear_radius - 0.012, 0.01)
            )
        z = PUSH_HEIGHT + height * (TRAVEL_HEIGHT - PUSH_HEIGHT)
        return np.array([aim[0], aim[1], z]), must_clear

    def _step(self, hand: np.ndarray) -> np.ndarray:
        """The hand displacement for this step: a damped, speed-limited move to the reference."""
        target, must_clear = self.reference(hand)
        step = GAIN * (target - hand)
        if must_clear:  # don't sweep across the cube before the fingers clear its top
            step[:2] *= _ramp(hand[2], PUSH_HEIGHT + 0.02, TRAVEL_HEIGHT - PUSH_HEIGHT - 0.03)
        cube = self.task.cube_pose()[0][:2]
        distance = float(np.linalg.norm(hand[:2] - cube))
        speed = PUSH_SPEED + (TRAVEL_SPEED - PUSH_SPEED) * _ramp(distance, SLOW_RADIUS, SLOW_RADIUS)
        norm = float(np.linalg.norm(step))
        return step if norm <= speed else step * (speed / norm)
