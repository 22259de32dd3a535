"""Forward kinematics of an arm's joint vector: where a joint command puts the hand.

The safety layer bounds pose commands by the workspace box directly; a joint command it can only
bound through the arm's forward kinematics. Two kinds, both ``fk(joints) -> (3,)`` hand position
in the arm's base frame:

* ``ForwardKinematics`` (the sim arm) keeps a private ``MjData`` of the arm's model, writes the
  joint angles into it, runs ``mj_kinematics`` (the pose of every body and site from ``qpos``
  alone: no dynamics, a few microseconds) and reads the grip site's position. Only the arm's
  joints move the grip site, so the other ``qpos`` entries (objects, fingers) stay at the
  model's defaults. Not thread-safe (one scratch ``MjData``): ``SafetyLayer`` calls it under
  its lock; give every other user its own instance.
* ``DHKinematics`` (the real arms) chains the manufacturer's Denavit-Hartenberg parameters:
  ``ur5e_kinematics`` (UR5e, standard DH, as Universal Robots publish them; the base frame is
  the controller's, the one ``getActualTCPPose`` reports in) and ``franka_kinematics`` (Panda
  and FR3, which share them; modified DH as in Franka's FCI documentation, base frame ``O``
  of ``O_T_EE``). The hand is the tool point: the flange plus a ``tool_offset`` in the flange
  frame (the TCP offset set on the UR controller, Franka's ``F_T_EE``: 0.1034 m for the Franka
  Hand). Only the point is transformed, from the tip back to the base, in plain floats (a few
  microseconds); stateless, so thread-safe. tests/test_kinematics.py checks both against the
  MuJoCo models of the same arms (robosuite's, which the sim uses) on random configurations.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import mujoco
import numpy as np

FRANKA_HAND_OFFSET = (0.0, 0.0, 0.1034)  # m: Franka Hand's F_T_EE translation (flange -> grip)


class ForwardKinematics:
    """``fk(joints) -> (3,)`` world position of ``site`` for the arm joints ``joints`` (base to
    tip) of ``model``."""

    def __init__(self, model: mujoco.MjModel, site: str, joints: Sequence[str]) -> None:
        self.model = model
        self.site_id = model.site(site).id
        self.qpos_index = np.array([model.jnt_qposadr[model.joint(name).id] for name in joints])
        self._data = mujoco.MjData(model)

    def __call__(self, joints: np.ndarray) -> np.ndarray:
        joints = np.asarray(joints, dtype=np.float64)
        if joints.shape != self.qpos_index.shape:
            raise ValueError(
                f"forward kinematics got joints of shape {joints.shape}; "
                f"the arm has {len(self.qpos_index)} joints"
            )
        self._data.qpos[self.qpos_index] = joints
        mujoco.mj_kinematics(self.model, self._data)
        return self._data.site_xpos[self.site_id].copy()


def sim_arm_kinematics(model: mujoco.MjModel, robot: str) -> ForwardKinematics:
    """The grip-site kinematics of the sim's arm ``robot`` (``sim.robots.arms.ARMS``) in a
    compiled tabletop ``model`` (e.g. ``env.unwrapped.model``)."""
    from sim.envs.scene import ROBOT_PREFIX
    from sim.robots.arms import ARMS

    arm = ARMS[robot]
    site = f"{ROBOT_PREFIX}gripper/{arm.grip_site}"
    return ForwardKinematics(model, site, [ROBOT_PREFIX + name for name in arm.arm_joints])


class DHKinematics:
    """``fk(joints) -> (3,)``: the tool point of a serial arm from Denavit-Hartenberg parameters
    (metres, radians; one entry per joint, base to tip).

    Standard DH (``modified=False``): joint ``i``'s frame is ``Rz(q_i) Tz(d_i) Tx(a_i)
    Rx(alpha_i)`` in the previous one. Modified (Craig) DH: ``Rx(alpha_i) Tx(a_i) Rz(q_i)
    Tz(d_i)``, with ``a_i``, ``alpha_i`` those of the link before joint ``i``. ``tool_point``:
    the hand in the last joint's frame."""

    def __init__(
        self,
        a: Sequence[float],
        d: Sequence[float],
        alpha: Sequence[float],
        tool_point: Sequence[float],
        modified: bool = False,
    ) -> None:
        if not len(a) == len(d) == len(alpha) or len(tool_point) != 3:
            raise ValueError("DHKinematics needs a, d and alpha per joint and a (3,) tool_point")
        self.links = tuple(
            (float(a_i), float(d_i), math.cos(al), math.sin(al))
            for a_i, d_i, al in zip(a, d, alpha, strict=True)
        )
        self.tool_point = tuple(float(value) for value in tool_point)
        self.modified = modified

    def __call__(self, joints: np.ndarray) -> np.ndarray:
        joints = np.asarray(joints, dtype=np.float64)
        if joints.shape != (len(self.links),):
            raise ValueError(
                f"forward kinematics got joints of shape {joints.shape}; "
                f"the arm has {len(self.links)} joints"
            )
        x, y, z = self.tool_point
        for (a, d, cos_alpha, sin_alpha), q in zip(
            reversed(self.links), reversed(joints.tolist()), strict=True
        ):
            cos_q, sin_q = math.cos(q), math.sin(q)
            if self.modified:  # Rx(alpha) Tx(a) Rz(q) Tz(d) applied to the point
                z += d
                x, y = cos_q * x - sin_q * y + a, sin_q * x + cos_q * y
                y, z = cos_alpha * y - sin_alpha * z, sin_alpha * y + cos_alpha * z
            else:  # Rz(q) Tz(d) Tx(a) Rx(alpha) applied to the point
                y, z = cos_alpha * y - sin_alpha * z, sin_alpha * y + cos_alpha * z + d
                x += a
                x, y = cos_q * x - sin_q * y, sin_q * x + cos_q * y
        return np.array([x, y, z])


def _offset(tool_offset: Sequence[float]) -> tuple[float, float, float]:
    offset = tuple(float(value) for value in tool_offset)
    if len(offset) != 3:
        raise ValueError(f"a tool offset needs 3 entries (m, flange frame); got {len(offset)}")
    return offset


def ur5e_kinematics(tool_offset: Sequence[float] = (0.0, 0.0, 0.0)) -> DHKinematics:
    """The UR5e's tool point (Universal Robots' DH parameters); ``tool_offset``: the TCP in the
    flange frame (the translation of the controller's TCP offset)."""
    half_pi = math.pi / 2
    return DHKinematics(
        a=(0.0, -0.425, -0.3922, 0.0, 0.0, 0.0),
        d=(0.1625, 0.0, 0.0, 0.1333, 0.0997, 0.0996),
        alpha=(half_pi, 0.0, 0.0, half_pi, -half_pi, 0.0),
        tool_point=_offset(tool_offset),
    )


def franka_kinematics(tool_offset: Sequence[float] = FRANKA_HAND_OFFSET) -> DHKinematics:
    """The Panda's / FR3's tool point (Franka's modified DH parameters, flange 0.107 m past
    joint 7 along its axis); ``tool_offset``: the end effector in the flange frame
    (``F_T_EE``'s translation; the Franka Hand's by default)."""
    half_pi = math.pi / 2
    flange_x, flange_y, flange_z = _offset(tool_offset)
    return DHKinematics(
        a=(0.0, 0.0, 0.0, 0.0825, -0.0825, 0.0, 0.088),
        d=(0.333, 0.0, 0.316, 0.0, 0.384, 0.0, 0.0),
        alpha=(0.0, -half_pi, half_pi, half_pi, -half_pi, half_pi, half_pi),
        tool_point=(flange_x, flange_y, flange_z + 0.107),  # the flange frame is joint 7's
        modified=True,
    )
