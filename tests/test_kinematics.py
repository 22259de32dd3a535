"""The real arms' forward kinematics (``hardware.kinematics``: UR5e and Franka Denavit-Hartenberg
parameters) against the MuJoCo models of the same arms (robosuite's, which the sim builds its arms
from), on random joint configurations across the joint ranges.

Frames: robosuite's UR5e base is the controller's base frame turned by pi about z (the ROS
``base_link`` convention), its ``right_hand`` body sits on the flange; the Panda's base is Franka's
frame ``O`` and its ``right_hand`` the flange (0.1065 m past joint 7 where Franka says 0.107).
robosuite rounds the UR5e's dimensions (0.163 for 0.1625 m, ...), so the nominal kinematics agree
with it to a few millimetres; built from the model's own dimensions the same chain agrees to a
micrometre, which checks the chain itself.
"""

from __future__ import annotations

import math
import os

import mujoco
import numpy as np
import pytest

from hardware.kinematics import (
    FRANKA_HAND_OFFSET,
    DHKinematics,
    franka_kinematics,
    ur5e_kinematics,
)
from sim.robots.arms import PANDA, UR5E, robosuite_assets_dir

TURN_Z = np.diag([-1.0, -1.0, 1.0])  # robosuite's UR5e base in the controller's base frame
HALF_PI = math.pi / 2


class MujocoArm:
    """The robosuite model of an arm: its flange (``right_hand``) pose at given joints."""

    def __init__(self, description) -> None:
        path = os.path.join(robosuite_assets_dir(), description.arm_xml)
        self.model = mujoco.MjModel.from_xml_path(path)
        self.data = mujoco.MjData(self.model)
        self.index = [
            self.model.jnt_qposadr[self.model.joint(name).id] for name in description.arm_joints
        ]
        self.low, self.high = self.model.jnt_range[
            [self.model.joint(n).id for n in description.arm_joints]
        ].T
        self.hand = self.model.body("right_hand").id

    def flange(self, joints: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(position, rotation matrix) of the flange body."""
        self.data.qpos[self.index] = joints
        mujoco.mj_kinematics(self.model, self.data)
        return self.data.xpos[self.hand].copy(), self.data.xmat[self.hand].reshape(3, 3).copy()

    def random_joints(self, rng: np.random.Generator, count: int) -> np.ndarray:
        return rng.uniform(self.low, self.high, size=(count, len(self.index)))


@pytest.fixture(scope="module")
def models():
    return {"ur5e": MujocoArm(UR5E), "panda": MujocoArm(PANDA)}


def distances(models, name: str, kinematics, frame: np.ndarray, count: int = 500) -> np.ndarray:
    """|kinematics(q) - frame @ MuJoCo flange(q)| over ``count`` random configurations."""
    arm = models[name]
    joints = arm.random_joints(np.random.default_rng(0), count)
    return np.array([np.linalg.norm(kinematics(q) - frame @ arm.flange(q)[0]) for q in joints])


def millimetres(gaps: np.ndarray) -> str:
    return f"median {np.median(gaps) * 1e3:.2f} mm, max {gaps.max() * 1e3:.2f} mm"


def test_ur5e_kinematics_agree_with_the_mujoco_ur5e(models):
    nominal = distances(models, "ur5e", ur5e_kinematics(), TURN_Z)
    print(f"\nUR5e DH vs MuJoCo: {millimetres(nominal)}")
    assert nominal.max() < 0.003  # robosuite's rounded dimensions: 2.4 mm at most here
    robosuite_dimensions = DHKinematics(  # the same chain with the model's own numbers
        a=(0.0, -0.425, -0.392, 0.0, 0.0, 0.0),
        d=(0.163, 0.0, 0.0, 0.138 - 0.131 + 0.127, 0.1, 0.098),
        alpha=(HALF_PI, 0.0, 0.0, HALF_PI, -HALF_PI, 0.0),
        tool_point=(0.0, 0.0, 0.0),
    )
    assert distances(models, "ur5e", robosuite_dimensions, TURN_Z).max() < 1e-5


def test_franka_kinematics_agree_with_the_mujoco_panda(models):
    flange = franka_kinematics(tool_offset=(0.0, 0.0, 0.0))
    nominal = distances(models, "panda", flange, np.eye(3))
    print(f"\nPanda DH vs MuJoCo: {millimetres(nominal)}")
    assert nominal.max() < 0.001  # the model's flange is 0.5 mm short of Franka's 0.107 m
    assert (
        distances(models, "panda", franka_kinematics((0.0, 0.0, -0.0005)), np.eye(3)).max() < 1e-5
    )


def test_tool_offsets_are_along_the_flange_frame(models):
    arm = models["panda"]
    hand, flange = franka_kinematics(), franka_kinematics(tool_offset=(0.0, 0.0, 0.0))
    for q in arm.random_joints(np.random.default_rng(1), 50):
        _, rotation = arm.flange(q)  # the flange's z axis is its last column
        np.testing.assert_allclose(
            hand(q) - flange(q), rotation[:, 2] * FRANKA_HAND_OFFSET[2], atol=1e-5
        )
    ur_arm = models["ur5e"]
    for q in ur_arm.random_joints(np.random.default_rng(2), 50):
        _, rotation = ur_arm.flange(q)
        moved = ur5e_kinematics((0.0, 0.0, 0.2))(q) - ur5e_kinematics()(q)
        np.testing.assert_allclose(moved, TURN_Z @ rotation[:, 2] * 0.2, atol=1e-3)


def test_known_poses():
    # the UR5e stretched out at zero joints, and the Franka "ready" pose with its hand
    np.testing.assert_allclose(
        ur5e_kinematics()(np.zeros(6)), [-0.8172, -0.2329, 0.0628], atol=1e-9
    )
    ready = np.array([0.0, -math.pi / 4, 0.0, -3 * math.pi / 4, 0.0, math.pi / 2, math.pi / 4])
    np.testing.assert_allclose(franka_kinematics()(ready), [0.3069, 0.0, 0.4869], atol=1e-4)
    with pytest.raises(ValueError, match="the arm has 6 joints"):
        ur5e_kinematics()(np.zeros(7))
