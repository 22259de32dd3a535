"""Compose a task's MuJoCo model: our tabletop scene + an arm from robosuite's files + objects.

Element names in the compiled model: the arm's under ``robot/`` (``robot/joint1``,
``robot/gripper/grip_site``, ``robot/eye_in_hand``), the scene's and the task's as written.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import mujoco

from sim.robots.arms import ArmDescription, build_arm_spec

TABLETOP_XML = os.path.join(os.path.dirname(os.path.dirname(__file__)), "assets", "tabletop.xml")
ROBOT_PREFIX = "robot/"


def build_scene(
    arm: ArmDescription, add_objects: Callable[[mujoco.MjSpec], None]
) -> mujoco.MjModel:
    """Compile the table, the arm mounted at ``robot_mount``, and the task's objects."""
    scene = mujoco.MjSpec.from_file(TABLETOP_XML)
    arm_spec = build_arm_spec(arm)
    for site in arm_spec.sites:  # robosuite's debug markers (group 1) would show in images
        site.group = 4
    scene.attach(arm_spec, prefix=ROBOT_PREFIX, frame=scene.frame("robot_mount"))
    add_objects(scene)
    return scene.compile()
