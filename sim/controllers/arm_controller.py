"""Policy actions -> actuator controls, for three action spaces.

The policy acts at the env's rate (10 Hz by default); the controller runs at a higher *control*
rate (100 Hz by default) and the physics at 500 Hz (2 ms). Each policy step the action is parsed
once into a target; each control tick turns that target into joint-position controls (through
``DifferentialIK`` for the pose spaces) and the physics integrates a few substeps.

Action spaces (all ``float32`` Boxes; the last entry is always the gripper command, -1 = fully
open, +1 = fully closed, values in between are partial openings):

``ee_delta`` (7): ``[dx, dy, dz, drx, dry, drz, gripper]`` in [-1, 1]. The first three are
    scaled by ``max_delta_pos`` (metres) and added to the *measured* hand position; the next three
    are a world-frame rotation vector scaled by ``max_delta_rot`` (radians) applied to the
    measured orientation. Measured, not an accumulated target, so that a zero action holds the
    hand where it is and a blocked arm does not wind up.
``ee_pose`` (7): ``[x, y, z, rx, ry, rz, gripper]``: an absolute hand position (world frame,
    metres, inside the workspace box) and an orientation as a world-frame rotation vector
    *relative to the home orientation* (hand pointing down), so the nominal pose is
    ``[0, 0, 0]`` and the representation has no jump near the poses a task uses.
``joint_pos`` (n + 1): absolute arm joint angles (radians, within the joint limits) + gripper.

Targets for the hand position are clipped to the task's workspace box, which is what keeps the
(collision-free) arm links above the table.
"""

from __future__ import annotations

import gymnasium as gym
import mujoco
import numpy as np

from sim.controllers.ik import DifferentialIK
from sim.robots.arms import ArmDescription

ACTION_SPACES = ("ee_delta", "ee_pose", "joint_pos")


def quat_from_rotation_vector(rotation: np.ndarray) -> np.ndarray:
    """Unit quaternion (wxyz) for a rotation vector (axis * angle)."""
    quat = np.empty(4)
    angle = float(np.linalg.norm(rotation))
    if angle < 1e-12:
        return np.array([1.0, 0.0, 0.0, 0.0])
    mujoco.mju_axisAngle2Quat(quat, rotation / angle, angle)
    return quat


def compose(rotation: np.ndarray, quat: np.ndarray) -> np.ndarray:
    """Apply a world-frame rotation vector to an orientation quaternion."""
    result = np.empty(4)
    mujoco.mju_mulQuat(result, quat_from_rotation_vector(rotation), quat)
    return result


class ArmController:
    """Holds the current target and writes ``data.ctrl`` for the arm and gripper each tick."""

    def __init__(
        self,
        model: mujoco.MjModel,
        arm: ArmDescription,
        prefix: str,
        action_space: str,
        workspace_low: np.ndarray,
        workspace_high: np.ndarray,
        max_delta_pos: float = 0.05,
        max_delta_rot: float = 0.25,
    ) -> None:
        if action_space not in ACTION_SPACES:
            raise ValueError(
                f"action_space={action_space!r} is not valid; expected one of: "
                + ", ".join(ACTION_SPACES)
            )
        self.kind = action_space
        self.workspace_low = np.asarray(workspace_low, dtype=np.float64)
        self.workspace_high = np.asarray(workspace_high, dtype=np.float64)
        self.max_delta_pos = max_delta_pos
        self.max_delta_rot = max_delta_rot

        joint_ids = np.array([model.joint(prefix + name).id for name in arm.arm_joints])
        self.arm_actuators = np.array(
            [model.actuator(f"{prefix}act_{j}").id for j in arm.arm_joints]
        )
        self.gripper_actuators = np.array(
            [model.actuator(f"{prefix}gripper/{name}").id for name in arm.gripper_actuators]
        )
        self.gripper_open = np.asarray(arm.gripper_open_ctrl)
        self.gripper_closed = np.asarray(arm.gripper_closed_ctrl)
        self.joint_low = model.jnt_range[joint_ids, 0]
        self.joint_high = model.jnt_range[joint_ids, 1]
        site_id = model.site(prefix + "gripper/" + arm.grip_site).id
        self.ik = DifferentialIK(model, site_id, joint_ids, np.asarray(arm.home_qpos))

        scratch = mujoco.MjData(model)
        scratch.qpos[self.ik.qpos_index] = arm.home_qpos
        mujoco.mj_kinematics(model, scratch)
        _, self.home_quat = self.ik.site_pose(scratch)

        self._target_pos = np.zeros(3)
        self._target_quat = np.array([1.0, 0.0, 0.0, 0.0])
        self._joint_target = np.zeros(len(joint_ids))
        self._gripper_ctrl = self.gripper_open.copy()

    def hold_action(self) -> list[str]:
        """Per action dimension, how to hold still: "zero" (a delta) or "last" (an absolute value).

        Recorded in datasets as ``shape_meta.action.hold``; the sampler pads past an episode's
        end with it. The gripper command is absolute in every space.
        """
        n_arm = self.action_space().shape[0] - 1
        arm = "zero" if self.kind == "ee_delta" else "last"
        return [arm] * n_arm + ["last"]

    def action_space(self) -> gym.spaces.Box:
        if self.kind == "ee_delta":
            low, high = -np.ones(7), np.ones(7)
        elif self.kind == "ee_pose":
            low = np.concatenate([self.workspace_low, -np.pi * np.ones(3), [-1.0]])
            high = np.concatenate([self.workspace_high, np.pi * np.ones(3), [1.0]])
        else:
            low = np.concatenate([self.joint_low, [-1.0]])
            high = np.concatenate([self.joint_high, [1.0]])
        return gym.spaces.Box(low.astype(np.float32), high.astype(np.float32), dtype=np.float32)

    def gripper_control(self, command: float) -> np.ndarray:
        closing = (np.clip(command, -1.0, 1.0) + 1.0) / 2.0
        return self.gripper_open + closing * (self.gripper_closed - self.gripper_open)

    def set_action(self, action: np.ndarray, data: mujoco.MjData) -> None:
        """Parse one policy action into the target held for the next control ticks."""
        action = np.asarray(action, dtype=np.float64)
        self._gripper_ctrl = self.gripper_control(action[-1])
        if self.kind == "joint_pos":
            self._joint_target = np.clip(action[:-1], self.joint_low, self.joint_high)
            return
        if self.kind == "ee_delta":
            delta = np.clip(action[:6], -1.0, 1.0)
            position, quat = self.ik.site_pose(data)
            target_pos = position + self.max_delta_pos * delta[:3]
            self._target_quat = compose(self.max_delta_rot * delta[3:6], quat)
        else:
            target_pos = action[:3]
            self._target_quat = compose(action[3:6], self.home_quat)
        self._target_pos = np.clip(target_pos, self.workspace_low, self.workspace_high)

    def hold_still(self, data: mujoco.MjData) -> None:
        """Write controls that keep the arm where it is, gripper open (at reset)."""
        data.ctrl[self.arm_actuators] = data.qpos[self.ik.qpos_index]
        data.ctrl[self.gripper_actuators] = self.gripper_open

    def apply(self, data: mujoco.MjData) -> None:
        """One control tick: write the actuator controls that chase the current target."""
        if self.kind == "joint_pos":
            joints = self._joint_target
        else:
            joints = self.ik.joint_targets(data, self._target_pos, self._target_quat)
        data.ctrl[self.arm_actuators] = joints
        data.ctrl[self.gripper_actuators] = self._gripper_ctrl
