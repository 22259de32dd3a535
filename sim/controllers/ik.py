"""Damped-least-squares differential IK: an end-effector pose target -> arm joint targets.

Why this and not operational-space control (OSC): the arms are driven by MuJoCo position
actuators with gravity compensation (see ``sim.robots.arms``), so the low-level loop that makes
the arm stiff runs inside the physics step, implicitly integrated and stable at any control rate.
The controller above it only needs to turn a Cartesian target into joint targets, which is one
Jacobian and one 6x6 solve per control tick, cheap in numpy. OSC would instead need the mass
matrix and its inverse every physics step, hand-tuned impedance gains per robot, and a torque
loop in Python at the physics rate (500 Hz), which is what makes robosuite slow. The same joint
targets are what a real arm's position interface accepts, so sim and hardware share a contract.

Each tick solves, with J the 6 x n site Jacobian (translation over rotation) and e the pose error
(position error, and the rotation vector taking the current orientation to the target, both in
the world frame)::

    dq = J^T (J J^T + damping^2 I)^-1 e  +  (I - J^T (J J^T)^-1 J) k_null (q_home - q)

The damping keeps dq bounded near singularities; the second term uses a redundant arm's spare
degree(s) of freedom to stay close to its home posture (it is zero for a 6-joint arm away from
singularities). The projector uses the undamped pseudo-inverse: with the damped one it leaks
into the task space, and the posture pull then leaves a centimetre-sized steady-state error.
dq is clipped per tick, added to the measured joint angles, and clipped to the joint limits.
"""

from __future__ import annotations

import mujoco
import numpy as np


def orientation_error(target_quat: np.ndarray, current_quat: np.ndarray) -> np.ndarray:
    """World-frame rotation vector that rotates ``current_quat`` onto ``target_quat`` (wxyz)."""
    current_inverse = np.empty(4)
    mujoco.mju_negQuat(current_inverse, current_quat)
    difference = np.empty(4)
    mujoco.mju_mulQuat(difference, target_quat, current_inverse)
    if difference[0] < 0.0:  # the short way round
        difference = -difference
    rotation = np.empty(3)
    mujoco.mju_quat2Vel(rotation, difference, 1.0)
    return rotation


_NULLSPACE_REGULARIZATION = 1e-8  # keeps J J^T factorizable at an exact singularity


def _solve_spd(matrix: np.ndarray, vector: np.ndarray) -> np.ndarray:
    """Solve a small symmetric positive-definite system with MuJoCo's Cholesky routines.

    numpy.linalg.solve goes through a threaded LAPACK whose per-call overhead (0.5 ms on a
    loaded 2-core machine) would dominate the whole physics step.
    """
    factor = np.array(matrix, dtype=np.float64)
    mujoco.mju_cholFactor(factor, 0.0)
    solution = np.empty(len(vector))
    mujoco.mju_cholSolve(solution, factor, np.asarray(vector, dtype=np.float64))
    return solution


class DifferentialIK:
    """Joint targets that move a site toward a pose target; one call per control tick."""

    def __init__(
        self,
        model: mujoco.MjModel,
        site_id: int,
        joint_ids: np.ndarray,
        home_qpos: np.ndarray,
        damping: float = 0.05,
        nullspace_gain: float = 0.2,
        max_joint_step: float = 0.3,
    ) -> None:
        self.model = model
        self.site_id = site_id
        self.qpos_index = model.jnt_qposadr[joint_ids]
        self.dof_index = model.jnt_dofadr[joint_ids]
        self.joint_low = model.jnt_range[joint_ids, 0]
        self.joint_high = model.jnt_range[joint_ids, 1]
        self.home_qpos = np.asarray(home_qpos, dtype=np.float64)
        self.nullspace_gain = nullspace_gain
        self.max_joint_step = max_joint_step
        self._jacobian = np.zeros((6, model.nv))  # rows: translation (3), rotation (3)
        self._site_quat = np.empty(4)
        self._damping_matrix = damping**2 * np.eye(6)
        self._regularization_matrix = _NULLSPACE_REGULARIZATION * np.eye(6)

    def site_pose(self, data: mujoco.MjData) -> tuple[np.ndarray, np.ndarray]:
        """Current site position and orientation quaternion (wxyz), world frame."""
        mujoco.mju_mat2Quat(self._site_quat, data.site_xmat[self.site_id])
        return data.site_xpos[self.site_id].copy(), self._site_quat.copy()

    def joint_targets(
        self, data: mujoco.MjData, target_pos: np.ndarray, target_quat: np.ndarray
    ) -> np.ndarray:
        """Joint angles one damped Gauss-Newton step closer to the target pose."""
        position, quat = self.site_pose(data)
        error = np.concatenate([target_pos - position, orientation_error(target_quat, quat)])
        mujoco.mj_jacSite(self.model, data, self._jacobian[:3], self._jacobian[3:], self.site_id)
        jacobian = self._jacobian[:, self.dof_index]

        qpos = data.qpos[self.qpos_index]
        gram = jacobian @ jacobian.T
        step = jacobian.T @ _solve_spd(gram + self._damping_matrix, error)
        posture = self.nullspace_gain * (self.home_qpos - qpos)
        step += posture - jacobian.T @ _solve_spd(
            gram + self._regularization_matrix, jacobian @ posture
        )

        step = np.clip(step, -self.max_joint_step, self.max_joint_step)
        return np.clip(qpos + step, self.joint_low, self.joint_high)
