"""Small helpers shared by the PushT, PickLift, Stack and AroundObstacle tasks and their experts.

Env side: placing a free body at a planar pose, reading a body's yaw, a cube to grasp and the
physics option that keeps grasps firm, and ``GraspCheck`` (is the gripper holding a geom: both
fingers touching it). Expert side: a hand orientation turned about
the vertical, a rate limit on hand motion, and ``HandMotion``, which turns a Cartesian hand goal
into one action of the env's action space with a ``TeleopStyle`` applied.

These would belong in ``sim/envs/base.py`` (the grasp check and pose helpers) and
``sim/experts.py`` (``HandMotion``) once those files are open for changes.
"""

from __future__ import annotations

import gymnasium as gym
import mujoco
import numpy as np

from sim.controllers.arm_controller import compose
from sim.envs.scene import ROBOT_PREFIX
from sim.experts import TeleopNoise, TeleopStyle

GRIPPER_OPEN = -1.0
GRIPPER_CLOSED = 1.0


def wrap_angle(angle: float) -> float:
    """The angle in [-pi, pi)."""
    return float((angle + np.pi) % (2.0 * np.pi) - np.pi)


def yaw_of(quat: np.ndarray) -> float:
    """Rotation about the world z axis of a body that stays upright (wxyz quaternion)."""
    w, x, y, z = quat
    return float(np.arctan2(2.0 * (w * z + x * y), 1.0 - 2.0 * (y * y + z * z)))


def set_planar_pose(
    model: mujoco.MjModel, data: mujoco.MjData, joint: str, pos: np.ndarray, yaw: float
) -> None:
    """Put a free joint's body at ``pos`` (x, y, z), turned ``yaw`` about the vertical, at rest."""
    free = model.joint(joint)
    qpos_adr, dof_adr = free.qposadr[0], free.dofadr[0]
    data.qpos[qpos_adr : qpos_adr + 3] = pos
    data.qpos[qpos_adr + 3 : qpos_adr + 7] = [np.cos(yaw / 2), 0.0, 0.0, np.sin(yaw / 2)]
    data.qvel[dof_adr : dof_adr + 6] = 0.0


def add_box_body(
    spec: mujoco.MjSpec,
    name: str,
    half_size: float,
    rgba: list[float],
    mass: float,
) -> None:
    """A free cube for grasping, resting on the table. Torsional friction (condim 4) keeps a held
    cube from spinning about the axis between the finger pads; the pads' own friction (2.0, the
    larger of the pair, which MuJoCo uses) sets the grip."""
    body = spec.worldbody.add_body(name=name, pos=[0.0, 0.0, half_size])
    body.add_freejoint(name=f"{name}_joint")
    body.add_geom(
        name=f"{name}_geom",
        type=mujoco.mjtGeom.mjGEOM_BOX,
        size=[half_size] * 3,
        rgba=rgba,
        mass=mass,
        friction=[1.0, 0.01, 0.0001],
        condim=4,
    )


def add_target_disc(spec: mujoco.MjSpec, radius: float) -> None:
    """A flat green disc on the table marking the goal, on a mocap body named ``target`` (its
    position is part of the simulator state, so a stored state re-renders it in place). Visual
    only: it collides with nothing."""
    target = spec.worldbody.add_body(name="target", mocap=True, pos=[0.0, 0.0, 0.0])
    target.add_geom(
        name="target_disc",
        type=mujoco.mjtGeom.mjGEOM_CYLINDER,
        size=[radius, 0.0005, 0.0],
        pos=[0.0, 0.0, 0.0006],
        rgba=[0.2, 0.75, 0.3, 0.8],
        contype=0,
        conaffinity=0,
    )


def firm_grasps(spec: mujoco.MjSpec) -> None:
    """Make friction constraints stiffer than normal ones (MuJoCo's ``impratio``, scene-wide), so
    a held cube does not creep out of the fingers: with the default 1 a still grasp lets a 50 g
    cube slide 6-7 mm in 3 s (MuJoCo's soft contacts), with 10 about 1 mm, at a few percent of
    the step time. The cone stays pyramidal (elliptic holds tighter still but costs more)."""
    spec.option.impratio = 10.0


class GraspCheck:
    """Tells whether the gripper holds a geom: each of the two fingers (any collision geom on the
    finger body or its children, e.g. the pads) is in contact with it."""

    def __init__(self, model: mujoco.MjModel, finger_bodies: tuple[str, str]) -> None:
        self.model = model
        self.fingers = [self._subtree_geoms(ROBOT_PREFIX + "gripper/" + b) for b in finger_bodies]

    def _subtree_geoms(self, body_name: str) -> np.ndarray:
        root = self.model.body(body_name).id
        bodies = {root}
        for body in range(root + 1, self.model.nbody):  # children come after their parent
            if self.model.body_parentid[body] in bodies:
                bodies.add(body)
        return np.flatnonzero(np.isin(self.model.geom_bodyid, list(bodies)))

    def touching(self, data: mujoco.MjData, geom: int) -> list[bool]:
        """For each finger, whether it touches ``geom``."""
        pairs = data.contact.geom[: data.ncon]
        other = np.where(
            pairs[:, 0] == geom, pairs[:, 1], np.where(pairs[:, 1] == geom, pairs[:, 0], -1)
        )
        return [bool(np.isin(other, finger).any()) for finger in self.fingers]

    def holding(self, data: mujoco.MjData, geom: int) -> bool:
        return all(self.touching(data, geom))

    def released(self, data: mujoco.MjData, geom: int) -> bool:
        return not any(self.touching(data, geom))


def limit_step(step: np.ndarray, max_norm: float) -> np.ndarray:
    """``step`` shortened to at most ``max_norm``."""
    norm = float(np.linalg.norm(step))
    return step if norm <= max_norm else step * (max_norm / norm)


class HandMotion:
    """Turns "move the hand toward this pose" into an action, as a person at a spacemouse would:
    at most ``speed`` metres per policy step, the hand pointing down and turned by ``yaw`` about
    the vertical, plus the ``TeleopStyle``'s noise and pauses (a pause holds the hand where it is
    and keeps the gripper command)."""

    def __init__(self, env: gym.Env, style: TeleopStyle) -> None:
        self.task = env.unwrapped
        self.noise = TeleopNoise(style, env.action_space)

    def reset(self, rng: np.random.Generator) -> None:
        self.noise.reset(rng)

    def hand_quat(self, yaw: float) -> np.ndarray:
        return compose(np.array([0.0, 0.0, yaw]), self.task.home_quat)

    def toward(self, goal: np.ndarray, yaw: float, gripper: float, speed: float) -> np.ndarray:
        hand, quat = self.task.eef_pose()
        step_goal = hand + limit_step(np.asarray(goal, dtype=np.float64) - hand, speed)
        action = self.task.action_for_pose(step_goal, self.hand_quat(yaw), gripper)
        hold = self.task.action_for_pose(hand, quat, gripper)
        return self.noise(action, hold)
