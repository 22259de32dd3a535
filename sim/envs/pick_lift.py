"""PickLift: grasp a 4 cm cube with the gripper and lift it above a height.

The first grasping task: a cube lies on the table at a random position and yaw; the robot must
close its fingers on it and raise it. Success: the cube's centre is at least ``LIFT_HEIGHT``
(10 cm) above the table *and* both fingers touch it, so a cube tossed up by a push or balanced on
a closed gripper does not count.

Grasps hold without jitter: the cube is light (50 g), the Panda's finger pads have high friction
(2.0), the cube has torsional friction (condim 4), so it does not spin between the pads, and
friction constraints are made stiff (``firm_grasps``): held still for 3 s, the cube creeps about
1 mm relative to the hand.

``object_state`` (7,): cube position (3) and orientation quaternion wxyz (4).
"""

from __future__ import annotations

import mujoco
import numpy as np

from sim.envs.base import TabletopEnv
from sim.envs.task_helpers import GraspCheck, add_box_body, firm_grasps, set_planar_pose

CUBE_HALF_SIZE = 0.02
CUBE_MASS = 0.05
LIFT_HEIGHT = 0.1
# Where the cube is drawn (world xy, metres): in front of the arm, inside easy reach.
SPAWN_LOW = np.array([-0.12, -0.15])
SPAWN_HIGH = np.array([0.08, 0.15])


class PickLiftEnv(TabletopEnv):
    """Franka Panda (by default) picks a cube up off the table; ``ee_delta`` at 10 Hz."""

    object_state_size = 7

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.grasp = GraspCheck(self.model, self.arm.finger_bodies)
        self.cube_geom = self.model.geom("cube_geom").id

    def add_objects(self, spec: mujoco.MjSpec) -> None:
        firm_grasps(spec)
        add_box_body(spec, "cube", CUBE_HALF_SIZE, [0.85, 0.2, 0.15, 1.0], CUBE_MASS)

    def reset_task(self) -> None:
        xy = self.np_random.uniform(SPAWN_LOW, SPAWN_HIGH)
        yaw = self.np_random.uniform(-np.pi, np.pi)
        set_planar_pose(self.model, self.data, "cube_joint", [*xy, CUBE_HALF_SIZE], yaw)

    def cube_pose(self) -> tuple[np.ndarray, np.ndarray]:
        body = self.data.body("cube")
        return body.xpos.copy(), body.xquat.copy()

    def object_state(self) -> np.ndarray:
        return np.concatenate(self.cube_pose())

    def is_grasped(self) -> bool:
        return self.grasp.holding(self.data, self.cube_geom)

    def is_success(self) -> bool:
        return bool(self.cube_pose()[0][2] >= LIFT_HEIGHT and self.is_grasped())

    def dense_reward(self) -> float:
        """0.25 for bringing the hand to the cube, 0.25 for holding it, 0.5 for lifting it
        (in proportion to the height reached while held); exactly 1 on success."""
        if self.is_success():
            return 1.0
        cube = self.cube_pose()[0]
        reach = 1.0 - np.tanh(10.0 * np.linalg.norm(self.eef_pose()[0] - cube))
        reward = 0.25 * reach
        if self.is_grasped():
            lift = np.clip((cube[2] - CUBE_HALF_SIZE) / (LIFT_HEIGHT - CUBE_HALF_SIZE), 0.0, 1.0)
            reward += 0.25 + 0.5 * lift
        return float(reward) * 0.99
