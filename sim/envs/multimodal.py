"""AroundObstacle: carry a cube past a post to a target, around the post's left or right side.

A task whose demonstrations are genuinely multimodal. The cube starts behind a post (nearer the
robot, ``x < POST_X``), the target lies beyond it, both near the centre line ``y = 0``, so going
round the left (+y) and round the right (-y) are equally good. The post is taller than a held
cube can be lifted (the task's workspace box caps the hand's height at ``POST_HEIGHT``), so
there is no third way over the top, while the hand itself (its underside 2.6 cm above the grip
site) clears the post at the experts' hover height of 10 cm. A
policy that averages the two modes steers into the post, which is the point of the task.

Why carrying, not pushing: pushing a cube along a curved path needs many corrective re-contacts,
which would make the expert, not the task, the hard part; a carried cube follows the hand.

Success: the cube rests on the table (not held in the air) with its centre within
``SUCCESS_RADIUS`` of the target's. The dense reward measures the remaining path *around* the
post (via the nearer side's passing point), so that shaping does not pull the cube into it.

``required_side`` (``any`` by default, ``left`` or ``right``) makes one mode the only right one:
success then also needs the cube to have passed the post on that side, the dense reward's path
goes through that side's passing point, and it is 0 once the cube has passed on the other side
(the mode is the first pass, so success is then out of reach). A policy cloned from two-sided
demos then succeeds only when its noise picks the required side: the task for steering a
multimodal base (DSRL).

Mode detection: ``info["mode"]`` is -1 until the cube first crosses the post's x, then 0 if it
passed on the left (+y) and 1 on the right (-y); evaluation counts modes from it. It is tracked
across ``step`` calls (like gymnasium's time limit), not part of the simulator state. The scripted
expert picks a side per episode, left with probability ``expert_left_prob`` (an env argument
so that collection configs can set it; the env itself ignores it), and reports it as ``mode``.

``object_state`` (9,): cube position (3), cube quaternion wxyz (4), target xy (2). The post is
fixed, so it needs no entry. ``object_pos`` (5,): cube position, target xy; ``eef_to_object``:
cube minus hand; ``object_to_goal`` (2,): target minus cube, xy.
"""

from __future__ import annotations

import mujoco
import numpy as np

from sim.envs.base import TabletopEnv
from sim.envs.task_helpers import (
    GraspCheck,
    add_box_body,
    add_target_disc,
    firm_grasps,
    set_planar_pose,
)

CUBE_HALF_SIZE = 0.02
CUBE_MASS = 0.05
POST_X = -0.03  # the post stands at (POST_X, 0)
POST_RADIUS = 0.02
POST_HEIGHT = 0.11  # above a held cube's bottom at any reachable height, below the hand's
PASS_Y = 0.11  # |y| of the points beside the post that a carried cube passes through
SUCCESS_RADIUS = 0.03
TARGET_DISC_RADIUS = 0.04
RESTING_HEIGHT = CUBE_HALF_SIZE + 0.005  # cube centre height that counts as on the table
# Where the cube and the target are drawn (world xy, metres): either side of the post, the cube
# far enough from it that the Panda's hand (21 cm across) can descend on it turned any way.
CUBE_LOW, CUBE_HIGH = np.array([-0.2, -0.05]), np.array([-0.17, 0.05])
TARGET_LOW, TARGET_HIGH = np.array([0.08, -0.05]), np.array([0.11, 0.05])
LEFT, RIGHT, UNDECIDED = 0, 1, -1
PASSING_POINTS = {LEFT: np.array([POST_X, PASS_Y]), RIGHT: np.array([POST_X, -PASS_Y])}
SIDES = {
    "any": (LEFT, RIGHT),
    "left": (LEFT,),
    "right": (RIGHT,),
}  # required_side: modes that count


class AroundObstacleEnv(TabletopEnv):
    """Franka Panda (by default) carries a cube around a post; ``ee_delta`` at 10 Hz."""

    object_state_size = 9
    object_positions_size = 5
    goal_offset_size = 2
    workspace_high = np.array([0.2, 0.35, POST_HEIGHT])

    def __init__(self, expert_left_prob: float = 0.5, required_side: str = "any", **kwargs) -> None:
        if not 0.0 <= expert_left_prob <= 1.0:
            raise ValueError(f"expert_left_prob={expert_left_prob} is not a probability")
        if required_side not in SIDES:
            raise ValueError(f"required_side={required_side!r} is not one of {list(SIDES)}")
        super().__init__(**kwargs)
        self.expert_left_prob = expert_left_prob
        self.allowed_modes = SIDES[required_side]
        self.grasp = GraspCheck(self.model, self.arm.finger_bodies)
        self.cube_geom = self.model.geom("cube_geom").id
        self.mode = UNDECIDED
        self._cube_x = 0.0

    def add_objects(self, spec: mujoco.MjSpec) -> None:
        firm_grasps(spec)
        add_box_body(spec, "cube", CUBE_HALF_SIZE, [0.85, 0.2, 0.15, 1.0], CUBE_MASS)
        spec.worldbody.add_geom(
            name="post",
            type=mujoco.mjtGeom.mjGEOM_CYLINDER,
            size=[POST_RADIUS, POST_HEIGHT / 2, 0.0],
            pos=[POST_X, 0.0, POST_HEIGHT / 2],
            rgba=[0.35, 0.35, 0.4, 1.0],
        )
        add_target_disc(spec, TARGET_DISC_RADIUS)

    def reset_task(self) -> None:
        cube_xy = self.np_random.uniform(CUBE_LOW, CUBE_HIGH)
        target_xy = self.np_random.uniform(TARGET_LOW, TARGET_HIGH)
        yaw = self.np_random.uniform(-np.pi, np.pi)
        set_planar_pose(self.model, self.data, "cube_joint", [*cube_xy, CUBE_HALF_SIZE], yaw)
        self.data.mocap_pos[self.model.body("target").mocapid[0]] = [*target_xy, 0.0]
        self.mode = UNDECIDED
        self._cube_x = cube_xy[0]

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        obs, info = super().reset(seed=seed, options=options)
        return obs, {**info, "mode": self.mode}

    def step(self, action):
        obs, reward, terminated, truncated, info = super().step(action)
        cube = self.cube_pose()[0]
        if self.mode == UNDECIDED and self._cube_x < POST_X <= cube[0]:
            self.mode = LEFT if cube[1] >= 0.0 else RIGHT
        self._cube_x = cube[0]
        return obs, reward, terminated, truncated, {**info, "mode": self.mode}

    def cube_pose(self) -> tuple[np.ndarray, np.ndarray]:
        body = self.data.body("cube")
        return body.xpos.copy(), body.xquat.copy()

    def target_xy(self) -> np.ndarray:
        return self.data.mocap_pos[self.model.body("target").mocapid[0], :2].copy()

    def object_state(self) -> np.ndarray:
        return np.concatenate([*self.cube_pose(), self.target_xy()])

    def object_positions(self) -> np.ndarray:
        return np.concatenate([self.cube_pose()[0], self.target_xy()])

    def goal_offset(self) -> np.ndarray:
        return self.target_xy() - self.cube_pose()[0][:2]

    def is_grasped(self) -> bool:
        return self.grasp.holding(self.data, self.cube_geom)

    def remaining_path(self) -> float:
        """Length of the cube's path to the target around the post: through the nearer allowed
        passing point while the cube is still behind the post, straight once past it."""
        cube, target = self.cube_pose()[0][:2], self.target_xy()
        if cube[0] >= POST_X:
            return float(np.linalg.norm(target - cube))
        return min(
            float(
                np.linalg.norm(PASSING_POINTS[mode] - cube)
                + np.linalg.norm(target - PASSING_POINTS[mode])
            )
            for mode in self.allowed_modes
        )

    def is_success(self) -> bool:
        cube = self.cube_pose()[0]
        on_target = np.linalg.norm(cube[:2] - self.target_xy()) < SUCCESS_RADIUS
        allowed_side = len(self.allowed_modes) == 2 or self.mode in self.allowed_modes
        return bool(on_target and cube[2] < RESTING_HEIGHT and allowed_side)

    def dense_reward(self) -> float:
        """0.1 for bringing the hand to the cube, 0.15 for holding it (or having it on the
        target), 0.75 for shortening the path around the post; exactly 1 on success; 0 once the
        cube has passed on a side other than ``required_side`` (success is then out of reach)."""
        if self.is_success():
            return 1.0
        if self.mode not in (UNDECIDED, *self.allowed_modes):
            return 0.0
        cube = self.cube_pose()[0]
        reward = 0.1 * (1.0 - np.tanh(10.0 * np.linalg.norm(self.eef_pose()[0] - cube)))
        if self.is_grasped() or np.linalg.norm(cube[:2] - self.target_xy()) < SUCCESS_RADIUS:
            reward = 0.25
        reward += 0.75 * (1.0 - np.tanh(3.0 * self.remaining_path()))
        return float(reward) * 0.99
