"""PushT: push a T-shaped block into a fixed target pose, position *and* orientation.

The Diffusion Policy benchmark (Chi et al., 2023) moved from a 2-D pusher to a 3-D arm: the T
(two boxes on one free body, 3 cm tall) slides on the table and only the closed fingers push it;
the target is a flat green T drawn on the table that nothing collides with.

Geometry (the block's frame, metres): the bar is 10 x 2.5 cm, the stem 2.5 x 7.5 cm hanging
from the bar's middle; the frame's origin is the T's area centroid (its centre of mass), and at
yaw 0 the bar runs along x with the stem pointing to -y.

Success: the T's centre within ``SUCCESS_POSITION`` (2 cm) of the target's and its yaw within
``SUCCESS_YAW`` (10 degrees). The T has no symmetry, so the yaw error is taken over a full turn.
The canonical task scores *coverage* (the fraction of the target covered by the block) and
succeeds above 95%; a pose threshold says the same thing more directly and is what the
scripted expert plans against. Coverage is still computed (``coverage()``, on a 5 mm grid of
points of the T) and is the dense reward, as in the original.

The block has contact priority over the table and fingers, so its own friction (0.5) applies to
its contacts: lower than the table's, so that a push slides it rather than tipping it over.

``object_state`` (10,): the T's position (3), quaternion wxyz (4), target x, y, yaw (3). The
quaternion's sign follows the simulation (a T turned past half a turn shows ``-q`` for the pose
it showed as ``q`` before), so one pose can be seen two ways. ``object_pos`` (the T's position)
and ``object_to_goal`` (target minus T in x and y, then the sine and cosine of the yaw still to
turn) say the same without that ambiguity, and with no jump anywhere on the turn.
"""

from __future__ import annotations

import mujoco
import numpy as np

from sim.envs.base import TabletopEnv
from sim.envs.task_helpers import set_planar_pose, wrap_angle, yaw_of

BAR_HALF = np.array([0.05, 0.0125])  # half length (x) and half width (y) of the bar
STEM_HALF = np.array([0.0125, 0.0375])  # half width (x) and half length (y) of the stem
HALF_HEIGHT = 0.015
MASS = 0.1
# Offsets of the bar's and stem's centres from the T's origin (its area centroid), along y.
_BAR_AREA, _STEM_AREA = np.prod(BAR_HALF), np.prod(STEM_HALF)
BAR_Y = _STEM_AREA * (BAR_HALF[1] + STEM_HALF[1]) / (_BAR_AREA + _STEM_AREA)
STEM_Y = BAR_Y - BAR_HALF[1] - STEM_HALF[1]

TARGET_POSE = np.array([0.0, 0.0, np.pi / 4])  # x, y, yaw of the target (the original's angle)
SUCCESS_POSITION = 0.02
SUCCESS_YAW = np.deg2rad(10.0)
# Where the T is drawn (world xy, metres; yaw uniform over a full turn). Starts closer to the
# target than ``MIN_START_ERROR`` in both position and yaw are drawn again.
SPAWN_LOW = np.array([-0.1, -0.14])
SPAWN_HIGH = np.array([0.08, 0.14])
MIN_START_ERROR = (0.05, np.deg2rad(30.0))
GRID_SPACING = 0.005


def t_rectangles() -> list[tuple[np.ndarray, np.ndarray]]:
    """The T as (centre, half size) rectangles in its own frame."""
    return [(np.array([0.0, BAR_Y]), BAR_HALF), (np.array([0.0, STEM_Y]), STEM_HALF)]


def inside_t(points: np.ndarray, margin: float = 0.0) -> np.ndarray:
    """Which points (N, 2), in the T's frame, lie inside the T grown by ``margin``."""
    inside = np.zeros(len(points), dtype=bool)
    for centre, half in t_rectangles():
        inside |= np.all(np.abs(points - centre) <= half + margin, axis=1)
    return inside


def t_grid() -> np.ndarray:
    """Points (N, 2) on a ``GRID_SPACING`` grid filling the T, in its frame."""
    points = []
    for centre, half in t_rectangles():
        counts = np.round(2 * half / GRID_SPACING).astype(int)
        xs = centre[0] - half[0] + GRID_SPACING * (np.arange(counts[0]) + 0.5)
        ys = centre[1] - half[1] + GRID_SPACING * (np.arange(counts[1]) + 0.5)
        points.append(np.stack(np.meshgrid(xs, ys), axis=-1).reshape(-1, 2))
    return np.concatenate(points)


def to_world(points: np.ndarray, pose: np.ndarray) -> np.ndarray:
    """Points (N, 2) from a planar pose's frame (x, y, yaw) to the world's."""
    c, s = np.cos(pose[2]), np.sin(pose[2])
    return points @ np.array([[c, s], [-s, c]]) + pose[:2]


def to_local(points: np.ndarray, pose: np.ndarray) -> np.ndarray:
    """Points (N, 2) from the world frame into a planar pose's frame (x, y, yaw)."""
    c, s = np.cos(pose[2]), np.sin(pose[2])
    return (points - pose[:2]) @ np.array([[c, -s], [s, c]])


class PushTEnv(TabletopEnv):
    """Franka Panda (by default) pushes a T block onto a T target; ``ee_delta`` at 10 Hz."""

    object_state_size = 10
    object_positions_size = 3  # the T's position
    goal_offset_size = 4  # target minus T in x, y; sin and cos of the yaw still to turn

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.grid = t_grid()

    def add_objects(self, spec: mujoco.MjSpec) -> None:
        block = spec.worldbody.add_body(name="tblock", pos=[0.0, 0.0, HALF_HEIGHT])
        block.add_freejoint(name="tblock_joint")
        target = spec.worldbody.add_body(
            name="target", pos=[*TARGET_POSE[:2], 0.0], euler=[0.0, 0.0, TARGET_POSE[2]]
        )
        total = _BAR_AREA + _STEM_AREA
        parts = zip(t_rectangles(), ("bar", "stem"), (_BAR_AREA, _STEM_AREA), strict=True)
        for (centre, half), part, area in parts:
            block.add_geom(
                name=f"tblock_{part}",
                type=mujoco.mjtGeom.mjGEOM_BOX,
                size=[half[0], half[1], HALF_HEIGHT],
                pos=[centre[0], centre[1], 0.0],
                rgba=[0.45, 0.55, 0.75, 1.0],
                mass=MASS * area / total,
                friction=[0.5, 0.005, 0.0001],
                priority=1,
            )
            target.add_geom(
                name=f"target_{part}",
                type=mujoco.mjtGeom.mjGEOM_BOX,
                size=[half[0], half[1], 0.0005],
                pos=[centre[0], centre[1], 0.0006],
                rgba=[0.2, 0.75, 0.3, 0.8],
                contype=0,
                conaffinity=0,
            )

    def reset_task(self) -> None:
        while True:
            xy = self.np_random.uniform(SPAWN_LOW, SPAWN_HIGH)
            yaw = self.np_random.uniform(-np.pi, np.pi)
            position_error = np.linalg.norm(xy - TARGET_POSE[:2])
            yaw_error = abs(wrap_angle(yaw - TARGET_POSE[2]))
            if position_error > MIN_START_ERROR[0] or yaw_error > MIN_START_ERROR[1]:
                break
        set_planar_pose(self.model, self.data, "tblock_joint", [*xy, HALF_HEIGHT], yaw)

    def block_pose(self) -> np.ndarray:
        """The T's planar pose: x, y, yaw."""
        body = self.data.body("tblock")
        return np.array([body.xpos[0], body.xpos[1], yaw_of(body.xquat)])

    def object_state(self) -> np.ndarray:
        body = self.data.body("tblock")
        return np.concatenate([body.xpos, body.xquat, TARGET_POSE])

    def object_positions(self) -> np.ndarray:
        return self.data.body("tblock").xpos.copy()

    def goal_offset(self) -> np.ndarray:
        pose = self.block_pose()
        yaw_to_turn = wrap_angle(TARGET_POSE[2] - pose[2])
        return np.array([*(TARGET_POSE[:2] - pose[:2]), np.sin(yaw_to_turn), np.cos(yaw_to_turn)])

    def pose_error(self) -> tuple[float, float]:
        """Distance (m) and absolute yaw difference (rad) between the T and the target."""
        pose = self.block_pose()
        position = float(np.linalg.norm(pose[:2] - TARGET_POSE[:2]))
        return position, abs(wrap_angle(pose[2] - TARGET_POSE[2]))

    def coverage(self) -> float:
        """Fraction of the target T that the block covers (both have the same area)."""
        in_target = to_local(to_world(self.grid, self.block_pose()), TARGET_POSE)
        return float(inside_t(in_target).mean())

    def is_success(self) -> bool:
        position, yaw = self.pose_error()
        return bool(position < SUCCESS_POSITION and yaw < SUCCESS_YAW)

    def dense_reward(self) -> float:
        """0.1 for bringing the hand to the block, 0.9 x coverage; exactly 1 on success."""
        if self.is_success():
            return 1.0
        hand = self.eef_pose()[0][:2]
        reach = 1.0 - np.tanh(10.0 * max(np.linalg.norm(hand - self.block_pose()[:2]) - 0.05, 0))
        return float(0.1 * reach + 0.9 * self.coverage()) * 0.99
