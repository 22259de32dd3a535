"""Stack: pick up cube A and set it down on cube B: a multi-stage, long-horizon task.

Stages: reach A, grasp it, lift it clear of B, carry it over B, lower it, let go. Cube A (red,
4 cm) is smaller than cube B (blue, 5 cm), so that a placement a little off centre still rests
on B's top face.

Success, all at once:

* A rests on B: A's centre within ``ALIGN_RADIUS`` (2 cm) of B's in the table plane, and A's
  height within ``HEIGHT_TOLERANCE`` of B's top plus A's half size;
* released: neither finger touches A;
* stable: A and B move slower than ``REST_SPEED``. This stands in for "stable for a few steps" and
  keeps success a function of the simulator state alone (no counter that ``set_sim_state``
  would not restore): a policy step is 0.1 s, so a cube still settling or tipping off is moving
  faster than that.

``object_state`` (14,): A's position (3) and quaternion wxyz (4), then B's. ``object_pos`` (6,):
A's position, then B's; ``eef_to_object``: A minus hand; ``object_to_goal`` (3,): where A's
centre rests when stacked (B's top centre plus A's half size) minus A's centre.
"""

from __future__ import annotations

import mujoco
import numpy as np

from sim.envs.base import TabletopEnv
from sim.envs.task_helpers import GraspCheck, add_box_body, firm_grasps, set_planar_pose

CUBE_A_HALF_SIZE = 0.02
CUBE_B_HALF_SIZE = 0.025
CUBE_A_MASS = 0.05
CUBE_B_MASS = 0.2  # heavier, so that setting A down does not shove it
ALIGN_RADIUS = 0.02
HEIGHT_TOLERANCE = 0.008
REST_SPEED = 0.02  # m/s
# Where the cubes are drawn (world xy, metres), and how far apart their centres are at least.
SPAWN_LOW = np.array([-0.12, -0.15])
SPAWN_HIGH = np.array([0.08, 0.15])
MIN_START_DISTANCE = 0.1


class StackEnv(TabletopEnv):
    """Franka Panda (by default) stacks a red cube on a blue one; ``ee_delta`` at 10 Hz."""

    object_state_size = 14
    object_positions_size = 6
    goal_offset_size = 3

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.grasp = GraspCheck(self.model, self.arm.finger_bodies)
        self.cube_geom = self.model.geom("cube_a_geom").id

    def add_objects(self, spec: mujoco.MjSpec) -> None:
        firm_grasps(spec)
        add_box_body(spec, "cube_a", CUBE_A_HALF_SIZE, [0.85, 0.2, 0.15, 1.0], CUBE_A_MASS)
        add_box_body(spec, "cube_b", CUBE_B_HALF_SIZE, [0.2, 0.35, 0.85, 1.0], CUBE_B_MASS)

    def reset_task(self) -> None:
        a_xy = self.np_random.uniform(SPAWN_LOW, SPAWN_HIGH)
        b_xy = self.np_random.uniform(SPAWN_LOW, SPAWN_HIGH)
        while np.linalg.norm(b_xy - a_xy) < MIN_START_DISTANCE:
            b_xy = self.np_random.uniform(SPAWN_LOW, SPAWN_HIGH)
        yaws = self.np_random.uniform(-np.pi, np.pi, 2)
        set_planar_pose(self.model, self.data, "cube_a_joint", [*a_xy, CUBE_A_HALF_SIZE], yaws[0])
        set_planar_pose(self.model, self.data, "cube_b_joint", [*b_xy, CUBE_B_HALF_SIZE], yaws[1])

    def cube_pos(self, name: str) -> np.ndarray:
        return self.data.body(name).xpos.copy()

    def object_state(self) -> np.ndarray:
        a, b = self.data.body("cube_a"), self.data.body("cube_b")
        return np.concatenate([a.xpos, a.xquat, b.xpos, b.xquat])

    def object_positions(self) -> np.ndarray:
        return np.concatenate([self.cube_pos("cube_a"), self.cube_pos("cube_b")])

    def goal_offset(self) -> np.ndarray:
        resting = self.cube_pos("cube_b") + [0.0, 0.0, CUBE_B_HALF_SIZE + CUBE_A_HALF_SIZE]
        return resting - self.cube_pos("cube_a")

    def is_grasped(self) -> bool:
        return self.grasp.holding(self.data, self.cube_geom)

    def placement_error(self) -> tuple[float, float]:
        """A's offset from resting on B: distance in the table plane, and height error."""
        a, b = self.cube_pos("cube_a"), self.cube_pos("cube_b")
        stacked_z = b[2] + CUBE_B_HALF_SIZE + CUBE_A_HALF_SIZE
        return float(np.linalg.norm(a[:2] - b[:2])), float(a[2] - stacked_z)

    def at_rest(self) -> bool:
        speeds = [np.linalg.norm(self.data.body(n).cvel[3:]) for n in ("cube_a", "cube_b")]
        return max(speeds) < REST_SPEED

    def is_success(self) -> bool:
        planar, height = self.placement_error()
        on_b = planar < ALIGN_RADIUS and abs(height) < HEIGHT_TOLERANCE
        return bool(on_b and self.grasp.released(self.data, self.cube_geom) and self.at_rest())

    def dense_reward(self) -> float:
        """Staged: 0.1 reach A, +0.15 grasp A, +0.2 lift A above B's top, +0.35 bring A over B
        (less the remaining distance), +0.1 A on B, +0.1 released and at rest (= success, 1)."""
        if self.is_success():
            return 1.0
        a = self.cube_pos("cube_a")
        hand = self.eef_pose()[0]
        planar, height = self.placement_error()
        on_b = planar < ALIGN_RADIUS and abs(height) < HEIGHT_TOLERANCE
        reward = 0.1 * (1.0 - np.tanh(10.0 * np.linalg.norm(hand - a)))
        if self.is_grasped() or on_b:
            reward = 0.25
            clear = np.clip(height / 0.02 + 1.0, 0.0, 1.0)  # A's bottom up to B's top and more
            reward += 0.2 * clear + 0.35 * (1.0 - np.tanh(10.0 * (planar + max(height, 0.0))))
            reward += 0.1 * on_b
        return float(reward) * 0.99
