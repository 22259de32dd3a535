"""Arms with parallel grippers, built at run time from the robosuite package's own model files.

We do not copy robosuite's meshes or XML into this repository: the arm and gripper files are read
from the installed ``robosuite`` package (found with ``importlib.util.find_spec``, which locates
the package without importing it) and composed with MuJoCo's ``MjSpec`` API.

What we change on the way in, and why:

* **Actuation.** robosuite drives its arms with raw torque motors and a Python controller. We
  replace those motors with joint *position* actuators (``kp``, ``kv``) whose force limits are the
  removed motors' torque limits, and switch on gravity compensation for every arm and gripper
  body. A controller then only has to hand out joint targets; MuJoCo's implicit integration of the
  actuator damping keeps high gains stable at a 2 ms timestep.
* **Contacts.** The arm links' collision meshes are deleted: collisions cost time and the tasks
  keep the hand above the table through the controller's workspace box. The gripper keeps its
  (convex) collision geoms, since it is what touches objects, and the two fingers do not collide
  with each other (an ``exclude`` pair), which removes the contacts of a closed, empty gripper.
  Gripper joints get a minimum armature (see ``MIN_GRIPPER_ARMATURE``) for stability.
* **Gripper command.** One scalar in [-1, 1]: -1 fully open, +1 fully closed (robosuite's
  convention), mapped linearly onto each gripper actuator's control range.
"""

from __future__ import annotations

import functools
import importlib.util
import os
from dataclasses import dataclass

import mujoco
import numpy as np

from sim.robots.mesh_simplify import simplify_visual_meshes


@dataclass(frozen=True)
class ArmDescription:
    """Everything needed to build one arm + gripper and drive it."""

    name: str
    arm_xml: str  # path inside robosuite/models/assets
    gripper_xml: str  # path inside robosuite/models/assets
    arm_joints: tuple[str, ...]  # actuated arm joints, base to tip
    home_qpos: tuple[float, ...]  # arm joint angles at reset: hand above the table, pointing down
    joint_kp: tuple[float, ...]  # position-actuator stiffness per arm joint (N m / rad)
    joint_damping_ratio: float  # kv = 2 * ratio * sqrt(kp * armature-free inertia estimate)
    gripper_actuators: tuple[str, ...]  # the gripper file's own position actuators (kept as is)
    gripper_open_ctrl: tuple[float, ...]  # control per gripper actuator for command -1
    gripper_closed_ctrl: tuple[float, ...]  # control per gripper actuator for command +1
    gripper_joints: tuple[str, ...]  # joints reported as the observation ``gripper_pos``
    finger_bodies: tuple[str, str]  # the two finger bodies (excluded from colliding)
    fingertip_radius: float  # radius (m) of a vertical cylinder holding the closed fingers
    hand_body: str = "right_hand"  # arm body the gripper is mounted on
    grip_site: str = "grip_site"  # site between the fingertips: the controlled end effector


PANDA = ArmDescription(
    name="panda",
    arm_xml="robots/panda/robot.xml",
    gripper_xml="grippers/panda_gripper.xml",
    arm_joints=tuple(f"joint{i}" for i in range(1, 8)),
    home_qpos=(0.0, 0.2, 0.0, -2.45, 0.0, 2.65, np.pi / 4),
    joint_kp=(1500.0, 1500.0, 1200.0, 1200.0, 600.0, 400.0, 200.0),
    joint_damping_ratio=1.0,
    gripper_actuators=("gripper_finger_joint1", "gripper_finger_joint2"),
    gripper_open_ctrl=(0.04, -0.04),
    gripper_closed_ctrl=(0.0, 0.0),
    gripper_joints=("finger_joint1", "finger_joint2"),
    finger_bodies=("leftfinger", "rightfinger"),
    fingertip_radius=0.02,
)

UR5E = ArmDescription(
    name="ur5e",
    arm_xml="robots/ur5e/robot.xml",
    gripper_xml="grippers/robotiq_gripper_85.xml",
    arm_joints=(
        "shoulder_pan_joint",
        "shoulder_lift_joint",
        "elbow_joint",
        "wrist_1_joint",
        "wrist_2_joint",
        "wrist_3_joint",
    ),
    home_qpos=(-0.266, -1.415, 1.998, -2.11, -1.581, -1.787),
    joint_kp=(2000.0, 2000.0, 1500.0, 400.0, 400.0, 200.0),
    joint_damping_ratio=1.0,
    gripper_actuators=("finger_1", "finger_2"),
    gripper_open_ctrl=(0.0, 0.0),
    gripper_closed_ctrl=(0.8, 0.8),
    gripper_joints=("finger_joint", "right_outer_knuckle_joint"),
    finger_bodies=("left_inner_finger", "right_inner_finger"),
    fingertip_radius=0.05,
)

ARMS: dict[str, ArmDescription] = {arm.name: arm for arm in (PANDA, UR5E)}

# Rotor inertia (kg m^2) given to every gripper joint at least: robosuite's Robotiq 85 has links of
# a few grams held together by stiff tendons, which diverge at a 2 ms timestep without it.
MIN_GRIPPER_ARMATURE = 0.001
HIDDEN_GROUP = 3  # geom group that mujoco.Renderer does not draw by default (it draws 0, 1, 2)
# Rough effective inertia (kg m^2) seen by each joint, used only to pick critical damping.
_EFFECTIVE_INERTIA = 0.5


def robosuite_assets_dir() -> str:
    """The installed robosuite package's ``models/assets`` folder (robosuite is not imported)."""
    found = importlib.util.find_spec("robosuite")
    if found is None or not found.submodule_search_locations:
        raise ModuleNotFoundError(
            "the robot models are read from the installed 'robosuite' package, which is missing; "
            "install the project's dependencies (pyproject.toml)"
        )
    return os.path.join(list(found.submodule_search_locations)[0], "models", "assets")


def _load_with_absolute_meshes(relative_path: str) -> mujoco.MjSpec:
    """Load a robosuite model file and make its mesh paths absolute, so it survives ``attach``."""
    path = os.path.join(robosuite_assets_dir(), relative_path)
    spec = mujoco.MjSpec.from_file(path)
    folder = os.path.dirname(path)
    seen = set()
    for mesh in list(spec.meshes):
        if mesh.name in seen:  # robotiq_gripper_85.xml names two meshes alike; keep the first
            mesh.delete()
            continue
        seen.add(mesh.name)
        mesh.file = os.path.join(folder, mesh.file)
    return spec


def _add_position_actuator(
    spec: mujoco.MjSpec, name: str, joint: str, kp: float, kv: float, force_limit: float | None
) -> None:
    """A MuJoCo ``<position>`` actuator: force = kp * (ctrl - q) - kv * qdot."""
    actuator = spec.add_actuator()
    actuator.name = name
    actuator.trntype = mujoco.mjtTrn.mjTRN_JOINT
    actuator.target = joint
    actuator.gaintype = mujoco.mjtGain.mjGAIN_FIXED
    actuator.gainprm[0] = kp
    actuator.biastype = mujoco.mjtBias.mjBIAS_AFFINE
    actuator.biasprm[0:3] = [0.0, -kp, -kv]
    actuator.inheritrange = 1.0  # control range = the joint's range
    if force_limit is not None:
        actuator.forcelimited = 1
        actuator.forcerange = [-force_limit, force_limit]


def build_arm_spec(arm: ArmDescription, visual_cell_size: float = 0.01) -> mujoco.MjSpec:
    """The arm with its gripper mounted, position-actuated and gravity-compensated.

    Collision geoms are moved to a geom group renderers do not draw, and visual meshes are
    coarsened to ``visual_cell_size`` metres (0: keep robosuite's full detail); see
    ``sim.robots.mesh_simplify``. Building takes ~2 s (mostly mesh loading), so each process
    builds an arm once and hands out copies.
    """
    return _cached_arm_spec(arm, visual_cell_size).copy()


@functools.cache
def _cached_arm_spec(arm: ArmDescription, visual_cell_size: float) -> mujoco.MjSpec:
    """Build the arm (see ``build_arm_spec``).

    Names keep robosuite's spelling (``joint1``, ``grip_site``, ``eye_in_hand``); the gripper's
    elements get the prefix ``gripper/``. Attach the result to a scene with a prefix of its own.
    """
    spec = _load_with_absolute_meshes(arm.arm_xml)
    torque_limits = {}
    for motor in list(spec.actuators):
        torque_limits[motor.target] = float(motor.ctrlrange[1])
        motor.delete()
    for geom in list(spec.geoms):
        if geom.contype != 0 or geom.conaffinity != 0:  # a collision geom of an arm link
            geom.delete()

    for joint_name, kp in zip(arm.arm_joints, arm.joint_kp, strict=True):
        kv = 2.0 * arm.joint_damping_ratio * np.sqrt(kp * _EFFECTIVE_INERTIA)
        _add_position_actuator(
            spec, f"act_{joint_name}", joint_name, kp, kv, torque_limits.get(joint_name)
        )

    gripper = _load_with_absolute_meshes(arm.gripper_xml)
    for sensor in list(gripper.sensors):  # force/torque sensors we never read
        sensor.delete()
    hand = spec.body(arm.hand_body)
    mount = hand.add_frame()
    mount.attach_body(gripper.worldbody.first_body(), "gripper/", "")

    for body in spec.bodies:
        if body.name != "world":
            body.gravcomp = 1.0
    for joint in spec.joints:
        if joint.name.startswith("gripper/"):
            joint.armature = max(joint.armature, MIN_GRIPPER_ARMATURE)

    exclude = spec.add_exclude()
    exclude.bodyname1 = "gripper/" + arm.finger_bodies[0]
    exclude.bodyname2 = "gripper/" + arm.finger_bodies[1]

    used_meshes = {geom.meshname for geom in spec.geoms}
    for mesh in list(spec.meshes):
        if mesh.name not in used_meshes:  # the deleted arm collision geoms' meshes
            mesh.delete()
    for geom in spec.geoms:
        if geom.contype != 0 or geom.conaffinity != 0:
            geom.group = HIDDEN_GROUP
    if visual_cell_size > 0:
        simplify_visual_meshes(spec, visual_cell_size)
    return spec
