"""PushCube: push a 5 cm cube across the table until its centre is on a target disc.

The easy default task: no grasping, a single contact-rich phase, and a goal that is visible both
in the images (a green disc) and in ``object_state``. Success: the cube's centre is within
``SUCCESS_RADIUS`` (3 cm) of the target's centre, in the table plane.

``object_state`` (9,): cube position (3), cube orientation quaternion wxyz (4), target xy (2).
``object_pos`` (5,): cube position (3), target xy (2); ``eef_to_object``: cube minus hand (3);
``object_to_goal`` (2,): target minus cube, xy.

The target is a *mocap* body, so its position is part of the simulator state that
``get_sim_state`` returns, and a stored state re-renders with the target where it was.
"""

from __future__ import annotations

import mujoco
import numpy as np

from sim.envs.base import TabletopEnv
from sim.envs.task_helpers import add_target_disc

CUBE_HALF_SIZE = 0.025
SUCCESS_RADIUS = 0.03
TARGET_DISC_RADIUS = 0.05
# Where cube and target are drawn (world xy, metres), and how far apart they start at least: 0.45
# to 0.65 m in front of the arm's base (at x = -0.55), where a Panda reaches the table top with its
# hand pointing down and its joints well inside their limits.
SPAWN_LOW = np.array([-0.1, -0.18])
SPAWN_HIGH = np.array([0.1, 0.18])
MIN_START_DISTANCE = 0.12


class PushCubeEnv(TabletopEnv):
    """Franka Panda (by default) pushes a cube onto a target region; ``ee_delta`` at 10 Hz."""

    object_state_size = 9
    object_positions_size = 5
    goal_offset_size = 2

    def add_objects(self, spec: mujoco.MjSpec) -> None:
        cube = spec.worldbody.add_body(name="cube", pos=[0.0, 0.0, CUBE_HALF_SIZE])
        cube.add_freejoint(name="cube_joint")
        cube.add_geom(
            name="cube_geom",
            type=mujoco.mjtGeom.mjGEOM_BOX,
            size=[CUBE_HALF_SIZE] * 3,
            rgba=[0.85, 0.2, 0.15, 1.0],
            mass=0.1,
            friction=[0.6, 0.005, 0.0001],
        )
        add_target_disc(spec, TARGET_DISC_RADIUS)

    def reset_task(self) -> None:
        cube_xy = self.np_random.uniform(SPAWN_LOW, SPAWN_HIGH)
        target_xy = self.np_random.uniform(SPAWN_LOW, SPAWN_HIGH)
        while np.linalg.norm(target_xy - cube_xy) < MIN_START_DISTANCE:
            target_xy = self.np_random.uniform(SPAWN_LOW, SPAWN_HIGH)
        yaw = self.np_random.uniform(-np.pi, np.pi)

        joint = self.model.joint("cube_joint")
        qpos = self.data.qpos[joint.qposadr[0] : joint.qposadr[0] + 7]
        qpos[:3] = [cube_xy[0], cube_xy[1], CUBE_HALF_SIZE]
        qpos[3:] = [np.cos(yaw / 2), 0.0, 0.0, np.sin(yaw / 2)]
        mocap = self.model.body("target").mocapid[0]
        self.data.mocap_pos[mocap] = [target_xy[0], target_xy[1], 0.0]

    def cube_pose(self) -> tuple[np.ndarray, np.ndarray]:
        body = self.data.body("cube")
        return body.xpos.copy(), body.xquat.copy()

    def target_xy(self) -> np.ndarray:
        return self.data.mocap_pos[self.model.body("target").mocapid[0], :2].copy()

    def object_state(self) -> np.ndarray:
        position, quat = self.cube_pose()
        return np.concatenate([position, quat, self.target_xy()])

    def object_positions(self) -> np.ndarray:
        return np.concatenate([self.cube_pose()[0], self.target_xy()])

    def goal_offset(self) -> np.ndarray:
        return self.target_xy() - self.cube_pose()[0][:2]

    def cube_to_target(self) -> float:
        return float(np.linalg.norm(self.cube_pose()[0][:2] - self.target_xy()))

    def is_success(self) -> bool:
        return self.cube_to_target() < SUCCESS_RADIUS

    def dense_reward(self) -> float:
        """0.2 for bringing the hand to the cube + 0.8 for bringing the cube to the target;
        exactly 1 on success."""
        if self.is_success():
            return 1.0
        hand = self.eef_pose()[0]
        reach = 1.0 - np.tanh(10.0 * np.linalg.norm(hand - self.cube_pose()[0]))
        push = 1.0 - np.tanh(5.0 * self.cube_to_target())
        return float(0.2 * reach + 0.8 * push) * 0.99
