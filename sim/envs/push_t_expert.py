"""Scripted expert for PushT: greedy push planning with a quasi-static pushing model.

The T must end at a pose, so every push has to be chosen for what it does to position *and*
yaw. Each policy step the expert scores every candidate push against the target and executes
the best one, re-planning continuously (closed loop), so model errors are corrected push by
push.

**Candidates.** Contact points every ``CONTACT_SPACING`` along the T's outline, each pushed along
the inward normal of its edge (pushing along the normal needs no friction to stick). The pusher
is the closed finger pair with the hand turned so that the pair lines up with the push (the
narrow end of a 5.6 x 2.3 cm footprint touches the T, close to a point contact). Contacts where
that footprint, flush against the edge or at the standoff point before it, would overlap the T
(concave corners) are dropped once, in the T's frame; contacts whose standoff point lies outside
the workspace are dropped each step.

**Motion model.** The ellipsoidal limit surface of quasi-static pushing: a push at body-frame
point ``p`` along direction ``u`` with moment ``m = p x u`` moves the T, per unit pusher
travel, by ``u / (1 + m^2/c^2)`` and turns it by ``(m/c^2) / (1 + m^2/c^2)``, where ``c`` is
the T's mean distance from its centroid (the ratio of its maximal friction torque to force).
Pushes at a large lever arm turn the T; pushes through its centroid translate it.

**Choice.** For every candidate and push length in ``PUSH_LENGTHS`` the model predicts the T's
pose; the cost is ``(position error / POSITION_SCALE)^2 + (yaw error / YAW_SCALE)^2`` (scales
half the success thresholds). The current contact is kept while its best cost is within
``SWITCH_COST`` of the overall best and still lowers the cost; otherwise the hand lifts, flies to
the new contact's standoff point, descends, and pushes.

Phases: ``lift`` (to travel height), ``travel`` (above the standoff point, hand turned),
``descend`` (to push height), ``push`` (aim at the contact point a little ahead, following it
as the T moves; a pusher that slid off the contact goes back to ``lift``).
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np

from sim.envs.push_t import (
    SUCCESS_POSITION,
    SUCCESS_YAW,
    TARGET_POSE,
    inside_t,
    t_grid,
    t_rectangles,
)
from sim.envs.task_helpers import GRIPPER_CLOSED, HandMotion, wrap_angle
from sim.experts import TeleopStyle

PUSHER_HALF_LENGTH = 0.029  # grip site to the closed fingers' outer face, along the finger pair
PUSHER_HALF_WIDTH = 0.012  # half the closed fingers' width across the pair
STANDOFF_GAP = 0.012  # gap between fingers and T at the standoff point
CONTACT_SPACING = 0.008  # distance between candidate contact points along an edge
PUSH_HEIGHT = 0.016  # grip-site height while pushing: fingers low on the T's 3 cm side
TRAVEL_HEIGHT = 0.065  # grip-site height at which the fingers clear the T
PUSH_LENGTHS = np.array([0.005, 0.01, 0.02, 0.035, 0.05])  # pusher travels the model tries
POSITION_SCALE = SUCCESS_POSITION / 2
YAW_SCALE = SUCCESS_YAW / 2
SWITCH_COST = 0.5  # cost advantage a new contact needs before the hand repositions
PUSH_SPEED = 0.015  # metres per policy step while pushing
TRAVEL_SPEED = 0.04  # metres per policy step when repositioning
MAX_LATERAL = 0.01  # pusher-to-contact offset across the push before giving up on a contact
MAX_YAW = 2.4  # hand yaw (rad from home) the Panda's wrist reaches pointing down, both ways
REACH_LOW = np.array([-0.33, -0.33])  # where standoff points may lie (inside the workspace box)
REACH_HIGH = np.array([0.18, 0.33])


def _rotate(vectors: np.ndarray, angle: np.ndarray | float) -> np.ndarray:
    """Rotate 2-D vectors (..., 2) by angles (broadcast against ``vectors[..., 0]``)."""
    c, s = np.cos(angle), np.sin(angle)
    return np.stack(
        [c * vectors[..., 0] - s * vectors[..., 1], s * vectors[..., 0] + c * vectors[..., 1]],
        axis=-1,
    )


def _outline() -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """The T's edges as (start, end, outward normal), in its frame, concave parts included."""
    edges = []
    for centre, half in t_rectangles():
        for axis in (0, 1):
            for sign in (-1.0, 1.0):
                normal = np.zeros(2)
                normal[axis] = sign
                other = 1 - axis
                start, end = centre + normal * half, centre + normal * half
                start[other] -= half[other]
                end[other] += half[other]
                edges.append((start, end, normal))
    return edges


def _footprint_clear(site: np.ndarray, direction: np.ndarray) -> bool:
    """Whether the closed fingers, centred at ``site`` and lined up with ``direction``, stay
    out of the T (points sampled over the footprint, tested against the T grown by 1 mm)."""
    across = np.array([-direction[1], direction[0]])
    along = np.linspace(-PUSHER_HALF_LENGTH, PUSHER_HALF_LENGTH - 0.002, 8)
    side = np.linspace(-PUSHER_HALF_WIDTH, PUSHER_HALF_WIDTH, 5)
    points = site + along[:, None, None] * direction + side[None, :, None] * across
    return not inside_t(points.reshape(-1, 2), margin=0.001).any()


def contact_candidates() -> tuple[np.ndarray, np.ndarray]:
    """Contact points (N, 2) and push directions (N, 2) in the T's frame that the fingers can
    reach: points along every edge, outside the other rectangle, footprint clear of the T."""
    points, directions = [], []
    for start, end, normal in _outline():
        length = float(np.linalg.norm(end - start))
        count = max(int(length / CONTACT_SPACING), 1)
        for t in (np.arange(count) + 0.5) / count:
            point = start + t * (end - start)
            if inside_t((point + 0.002 * normal)[None])[0]:  # an edge inside the other box
                continue
            push = -normal
            touching = point - push * PUSHER_HALF_LENGTH
            standoff = touching - push * STANDOFF_GAP
            if _footprint_clear(touching, push) and _footprint_clear(standoff, push):
                points.append(point)
                directions.append(push)
    return np.array(points), np.array(directions)


class PushTExpert:
    """The ``Expert`` for ``robopolicy/PushT-v0`` (see ``sim.experts``)."""

    def __init__(self, env: gym.Env, style: TeleopStyle) -> None:
        self.task = env.unwrapped
        self.motion = HandMotion(env, style)
        self.points, self.directions = contact_candidates()
        c2 = float(np.mean(np.linalg.norm(t_grid(), axis=1))) ** 2
        moment = (
            self.points[:, 0] * self.directions[:, 1] - self.points[:, 1] * self.directions[:, 0]
        )
        scale = 1.0 / (1.0 + moment**2 / c2)
        self.velocity = self.directions * scale[:, None]  # body-frame motion per metre pushed
        self.turn = moment / c2 * scale  # radians per metre pushed
        self.phase = "lift"
        self.contact = 0
        self.yaw = 0.0

    @property
    def mode(self) -> int | None:
        return None

    def reset(self, rng: np.random.Generator) -> None:
        self.motion.reset(rng)
        self.phase = "lift"
        self.contact = int(self._costs(self.task.block_pose()).argmin())
        self.yaw = 0.0

    def _costs(self, pose: np.ndarray) -> np.ndarray:
        """Each candidate's best predicted cost over the push lengths (inf if unreachable)."""
        turn = self.turn[:, None] * PUSH_LENGTHS  # (N, S)
        moved = _rotate(self.velocity[:, None, :], pose[2] + turn / 2) * PUSH_LENGTHS[:, None]
        position = np.linalg.norm(pose[:2] + moved - TARGET_POSE[:2], axis=-1)
        yaw = np.abs((pose[2] + turn - TARGET_POSE[2] + np.pi) % (2 * np.pi) - np.pi)
        cost = (position / POSITION_SCALE) ** 2 + (yaw / YAW_SCALE) ** 2
        standoff = self._world(pose, PUSHER_HALF_LENGTH + STANDOFF_GAP)
        reachable = np.all((standoff >= REACH_LOW) & (standoff <= REACH_HIGH), axis=1)
        return np.where(reachable, cost.min(axis=1), np.inf)

    def _current_cost(self, pose: np.ndarray) -> float:
        position = np.linalg.norm(pose[:2] - TARGET_POSE[:2])
        yaw = abs(wrap_angle(pose[2] - TARGET_POSE[2]))
        return float((position / POSITION_SCALE) ** 2 + (yaw / YAW_SCALE) ** 2)

    def _world(self, pose: np.ndarray, back: float) -> np.ndarray:
        """World xy of every candidate's pusher centre, ``back`` behind its contact point."""
        local = self.points - self.directions * back
        return _rotate(local, pose[2]) + pose[:2]

    def _hand_yaw(self, push: np.ndarray, near: float) -> float:
        """Hand yaw (from home) lining the finger pair up with ``push`` (world xy): of the two
        that do (the pair is symmetric), the one nearer ``near``, within the wrist's reach."""
        raw = float(np.arctan2(-push[0], push[1]))
        return float(np.clip(near + wrap_angle(2.0 * (raw - near)) / 2.0, -MAX_YAW, MAX_YAW))

    def _contact(self, pose: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The current contact point and push direction, world xy."""
        point = _rotate(self.points[self.contact], pose[2]) + pose[:2]
        return point, _rotate(self.directions[self.contact], pose[2])

    def _keep_or_switch(self, pose: np.ndarray, hand: np.ndarray) -> None:
        """While pushing: go back to ``lift`` with the best contact if the pusher slid off the
        current one, or the current one stopped helping, or another is clearly better."""
        costs = self._costs(pose)
        best = int(costs.argmin())
        contact, push = self._contact(pose)
        relative = hand[:2] - contact
        along = float(relative @ push)  # about -PUSHER_HALF_LENGTH while touching
        lateral = abs(float(relative @ np.array([-push[1], push[0]])))
        slid_off = lateral > MAX_LATERAL or along > -PUSHER_HALF_LENGTH + 0.01
        current = costs[self.contact]
        worse = current > costs[best] + SWITCH_COST or current >= self._current_cost(pose)
        if slid_off or worse:
            self.phase, self.contact = "lift", best

    def act(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        pose = self.task.block_pose()
        hand = self.task.eef_pose()[0]
        if self.phase == "push":
            self._keep_or_switch(pose, hand)
        contact, push = self._contact(pose)
        if self.phase == "lift":
            if hand[2] < TRAVEL_HEIGHT - 0.01:
                return self._move([hand[0], hand[1], TRAVEL_HEIGHT], TRAVEL_SPEED)
            self.phase = "travel"
        if self.phase in ("travel", "descend"):
            standoff = contact - push * (PUSHER_HALF_LENGTH + STANDOFF_GAP)
            self.yaw = self._hand_yaw(push, 0.0)
            if self.phase == "travel":
                if np.linalg.norm(hand[:2] - standoff) > 0.008:
                    return self._move([*standoff, TRAVEL_HEIGHT], TRAVEL_SPEED)
                self.phase = "descend"
            if hand[2] > PUSH_HEIGHT + 0.006:
                return self._move([*standoff, PUSH_HEIGHT], TRAVEL_SPEED)
            self.phase = "push"
        self.yaw = self._hand_yaw(push, self.yaw)
        aim = contact + push * (2 * PUSH_SPEED - PUSHER_HALF_LENGTH)  # a little into the T
        return self._move([*aim, PUSH_HEIGHT], PUSH_SPEED)

    def _move(self, goal: list[float], speed: float) -> np.ndarray:
        return self.motion.toward(np.array(goal), self.yaw, GRIPPER_CLOSED, speed)
