"""Scripted experts for the robosuite tasks, from privileged object poses.

Every expert is a short sequence of phases (approach above, descend, close, lift, ...). Each phase
names a target for the grip site (position, yaw about the vertical, gripper command) and a test
for when it is done; a proportional servo turns the target into an OSC_POSE delta action:

- position: ``(target - eef) / 0.05``, the controller's metres per unit action, times a gain below
  one, so the arm slows as it arrives instead of overshooting; the norm is capped at a per-episode
  speed so approach speeds vary between demos;
- orientation: the gripper points straight down with its fingers closing along the axis chosen by
  the task (the Panda's fingers close along the grip site's x axis); the error rotation
  ``R_target @ R_eef.T`` as an axis-angle vector, over 0.5 rad per unit action;
- both are expressed in the robot base frame, which OSC_POSE's delta input uses.

Phases advance on reaching their target (or on a step budget for gripper phases, and on a timeout
as a fallback, so a near miss never stalls an episode). Small per-episode offsets (hover height,
grasp depth, speed) drawn from the expert's rng make demos differ beyond the object placement.
``sim.experts.TeleopNoise`` then adds the requested human-like noise and pauses (during a pause
the arm holds still and the gripper keeps the expert's command). Experts read the simulator
through ``env.unwrapped.rs`` (the robosuite environment), never the observation.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import gymnasium as gym
import numpy as np
from scipy.spatial.transform import Rotation

from sim.experts import TeleopNoise, TeleopStyle

POS_SCALE = 0.05  # m per unit action: OSC_POSE output_max for position
ROT_SCALE = 0.5  # rad per unit action: OSC_POSE output_max for rotation
POS_GAIN = 2.0  # position error multiple commanded per step (OSC covers about half a delta)
ROT_GAIN = 1.0  # rotation error multiple commanded per step
OPEN, CLOSED = -1.0, 1.0  # gripper commands
PHASE_TIMEOUT = 80  # steps before a phase gives up waiting for its target and moves on


def _wrap(angle: float) -> float:
    return float((angle + np.pi) % (2 * np.pi) - np.pi)


def _yaw_of(rotation: np.ndarray) -> float:
    """Heading of a frame's x axis in the world's horizontal plane."""
    return float(np.arctan2(rotation[1, 0], rotation[0, 0]))


class _PhaseExpert(ABC):
    """Shared servo, phase bookkeeping and teleop style; subclasses write ``_plan``."""

    def __init__(self, env: gym.Env, style: TeleopStyle):
        self.env = env.unwrapped
        self.rs = self.env.rs
        self.robot = self.rs.robots[0]
        self.site = self.robot.eef_site_id["right"]
        self.noise = TeleopNoise(style, self.env.action_space)
        self.phase = 0
        self.phase_steps = 0

    @property
    def mode(self) -> int | None:
        return None

    def reset(self, rng: np.random.Generator) -> None:
        self.noise.reset(rng)
        self.phase = 0
        self.phase_steps = 0
        self.hover = rng.uniform(0.07, 0.12)  # m above the grasp point before descending
        self.speed = rng.uniform(0.6, 1.0)  # cap on the position action's norm
        self.grasp_dz = rng.uniform(-0.005, 0.005)  # grasp depth jitter
        self.close_steps = int(rng.integers(6, 10))  # steps spent closing or opening

    def act(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        target, yaw, grip = self._plan()
        self.phase_steps += 1
        hold = np.array([0, 0, 0, 0, 0, 0, grip], dtype=np.float32)  # a pause: arm still
        return self.noise(self._servo(target, yaw, grip), hold)

    @abstractmethod
    def _plan(self) -> tuple[np.ndarray, float, float]:
        """(grip-site target position, target yaw, gripper command) for the current phase."""

    def grasp_from_above(
        self, grasp: np.ndarray, yaw: float, hover_tol: float = 0.015, grasp_tol: float = 0.008
    ) -> tuple[np.ndarray, float, float] | None:
        """Phases 0-2, the same for every task: hover above the grasp point (aligned to ``yaw``),
        descend around the object, close. Returns the plan, or None once past phase 2."""
        if self.phase == 0:
            target = grasp + [0.0, 0.0, self.hover]
            self.next_phase_if(self.at(target, hover_tol, yaw))
            return target, yaw, OPEN
        if self.phase == 1:
            self.next_phase_if(self.at(grasp, grasp_tol))
            return grasp, yaw, OPEN
        if self.phase == 2:
            self.next_phase_if(False, budget=self.close_steps)
            return grasp, yaw, CLOSED
        return None

    # -- helpers for subclasses ------------------------------------------------------------------

    @property
    def eef(self) -> np.ndarray:
        return np.array(self.rs.sim.data.site_xpos[self.site])

    @property
    def eef_yaw(self) -> float:
        return _yaw_of(self.rs.sim.data.site_xmat[self.site].reshape(3, 3))

    def body_pos(self, body_id: int) -> np.ndarray:
        return np.array(self.rs.sim.data.body_xpos[body_id])

    def body_yaw(self, body_id: int) -> float:
        return _yaw_of(self.rs.sim.data.body_xmat[body_id].reshape(3, 3))

    def nearest_yaw(self, yaw: float, period: float) -> float:
        """The angle ``yaw + k * period`` closest to the gripper's current yaw (symmetries)."""
        k = np.round(_wrap(self.eef_yaw - yaw) / period)
        return _wrap(yaw + k * period)

    def at(self, target: np.ndarray, tol: float, yaw: float | None = None) -> bool:
        close = np.linalg.norm(target - self.eef) < tol
        aligned = yaw is None or abs(_wrap(yaw - self.eef_yaw)) < 0.08
        return bool(close and aligned)

    def next_phase_if(self, done: bool, budget: int = PHASE_TIMEOUT) -> None:
        if done or self.phase_steps >= budget:
            self.phase += 1
            self.phase_steps = 0

    def holding(self, grasp_point: np.ndarray) -> bool:
        """Whether the object's grasp point is still between the fingers."""
        return bool(np.linalg.norm(grasp_point - self.eef) < 0.03)

    def restart(self) -> None:
        """Go back to the first phase (the object slipped out): open, hover, grasp again."""
        self.phase = 0
        self.phase_steps = 0

    # -- the servo -------------------------------------------------------------------------------

    def _servo(self, target: np.ndarray, yaw: float, grip: float) -> np.ndarray:
        dpos = POS_GAIN * (target - self.eef) / POS_SCALE
        norm = np.linalg.norm(dpos)
        if norm > self.speed:
            dpos *= self.speed / norm
        c, s = np.cos(yaw), np.sin(yaw)
        # Columns: fingers' axis at the target yaw, its complement, and z pointing down.
        r_target = np.array([[c, s, 0.0], [s, -c, 0.0], [0.0, 0.0, -1.0]])
        r_eef = self.rs.sim.data.site_xmat[self.site].reshape(3, 3)
        drot = ROT_GAIN * Rotation.from_matrix(r_target @ r_eef.T).as_rotvec() / ROT_SCALE
        base = self.robot.base_ori
        action = np.concatenate([base.T @ dpos, base.T @ drot, [grip]])
        return np.clip(action, -1.0, 1.0)


class LiftExpert(_PhaseExpert):
    """Lift: hover over the cube, descend, close, lift 15 cm (success ends the episode first).
    A cube that slips out is grasped again."""

    def _plan(self):
        cube_id = self.rs.cube_body_id
        cube = self.body_pos(cube_id)
        # A cube looks the same every quarter turn: any face pair will do for the fingers.
        yaw = self.nearest_yaw(self.body_yaw(cube_id), np.pi / 2)
        grasp = cube + [0.0, 0.0, self.grasp_dz]
        if self.phase == 3 and not self.holding(grasp):
            self.restart()  # it slipped out: grasp it again
        plan = self.grasp_from_above(grasp, yaw)  # yaw aligned with the cube's faces
        if plan is not None:
            return plan
        return grasp + [0.0, 0.0, 0.15], self.eef_yaw, CLOSED  # lift


class PickPlaceCanExpert(_PhaseExpert):
    """PickPlaceCan: grasp the can from above, carry it over its bin quadrant, lower, release,
    and withdraw (robosuite counts success only once the gripper is away from the can).

    The can's quadrant is the far corner of the goal bin, at the edge of the Panda's reach: the
    arm, nearly stretched out, cannot servo precisely to the quadrant's centre. Success only needs
    the can anywhere inside the quadrant (19.5 x 24.5 cm), so the drop point is pulled 4 cm
    towards the robot from the centre, jittered per episode.
    """

    CARRY_Z = 1.05  # m: clears the bin walls with the can hanging below the fingers
    RELEASE_Z = 0.93  # m: grip-site height at which the can is let go above the target bin

    def reset(self, rng: np.random.Generator) -> None:
        super().reset(rng)
        self.drop_offset = np.array([-0.04, -0.04]) + rng.uniform(-0.015, 0.015, 2)

    def _plan(self):
        obj = self.rs.objects[self.rs.object_id]
        can = self.body_pos(self.rs.obj_body_id[obj.name])
        drop = self.rs.target_bin_placements[self.rs.object_id][:2] + self.drop_offset
        yaw = self.nearest_yaw(0.0, np.pi / 2)  # a can is round: any yaw, keep it steady
        grasp = can + [0.0, 0.0, 0.01 + self.grasp_dz]
        if 3 <= self.phase <= 5 and not self.holding(grasp):
            self.restart()  # dropped it on the way: start over from wherever it fell
        plan = self.grasp_from_above(grasp, yaw)  # hover above the can, descend, close
        if plan is not None:
            return plan
        if self.phase == 3:  # lift straight up
            target = np.array([self.eef[0], self.eef[1], self.CARRY_Z])
            self.next_phase_if(self.eef[2] > self.CARRY_Z - 0.03)
            return target, yaw, CLOSED
        if self.phase == 4:  # carry over the target quadrant
            target = np.array([*drop, self.CARRY_Z])
            self.next_phase_if(np.linalg.norm(drop - self.eef[:2]) < 0.02)
            return target, yaw, CLOSED
        if self.phase == 5:  # lower into the bin
            self.next_phase_if(self.eef[2] < self.RELEASE_Z + 0.01)
            return np.array([*drop, self.RELEASE_Z]), yaw, CLOSED
        if self.phase == 6:  # release
            self.next_phase_if(False, budget=self.close_steps)
            return np.array([*drop, self.RELEASE_Z]), yaw, OPEN
        return np.array([*drop, self.CARRY_Z]), yaw, OPEN  # withdraw


class NutAssemblySquareExpert(_PhaseExpert):
    """NutAssemblySquare: grasp the square nut by its handle, lift it above the peg, square it up
    with the peg, lower it over the peg, release and withdraw.

    The handle is a bar along the nut's local x, from the ring's outer edge (4.4 cm) to 7.9 cm;
    robosuite's handle site sits at 5.4 cm, so close to the ring that a finger lands on the ring.
    We grasp at 6.2 cm, the middle of the free part, fingers closing across it (local y). Once
    the nut is held, the servo steers the *nut centre*, not the grip site: the grip-site target is
    ``eef + (nut_target - nut)``, which absorbs wherever on the handle the grasp ended up. While
    carrying, the hand turns the nut square with the peg (6.7 mm clearance per side when aligned),
    waits over the peg until the nut stops swinging, and lowers it only while it is centred.
    A nut that slips out is grasped again where it lies.
    """

    CARRY_Z = 1.02  # m, nut centre: its underside clears the peg top (0.95 m)
    HANDLE_X = 0.062  # m along the nut's x: middle of the handle's part outside the ring
    # Nut headings that square it with the peg. Not 0: the handle (and the hand holding it) would
    # then point away from the robot, where the Panda runs out of reach and cannot servo precisely.
    SQUARE_YAWS = (np.pi / 2, np.pi, -np.pi / 2)
    FINGER_CLEARANCE = 0.012  # m: lowest grip-site height above the table before fingertips touch

    def reset(self, rng: np.random.Generator) -> None:
        super().reset(rng)
        self.last_nut = None  # the nut's position at the previous step, for its speed

    def _plan(self):
        nut = self.rs.nuts[self.rs.nut_id]
        nut_id = self.rs.obj_body_id[nut.name]
        nut_pos = self.body_pos(nut_id)
        nut_rot = self.rs.sim.data.body_xmat[nut_id].reshape(3, 3)
        handle = nut_pos + nut_rot @ [self.HANDLE_X, 0.0, 0.0]
        peg = self.body_pos(self.rs.peg1_body_id)
        # The handle is only 2 cm thick: grasp low on it (the pads reach about 1 cm below the
        # grip site) but keep the fingertips off the table.
        grasp = handle + [0.0, 0.0, -0.004 + self.grasp_dz / 2]
        grasp[2] = max(grasp[2], self.rs.table_offset[2] + self.FINGER_CLEARANCE)
        if 3 <= self.phase <= 5 and not self.holding(grasp):
            self.restart()  # the nut slipped out: grasp it again where it lies
        nut_speed = 0.0 if self.last_nut is None else np.linalg.norm(nut_pos - self.last_nut)
        self.last_nut = nut_pos
        if self.phase <= 2:  # fingers across the handle
            yaw = self.nearest_yaw(self.body_yaw(nut_id) + np.pi / 2, np.pi)
        elif self.phase == 3:  # no turning while the nut may still touch the table
            yaw = self.eef_yaw
        else:  # turn the nut square with the peg, its handle not pointing away from the robot
            nut_yaw = self.body_yaw(nut_id)
            square = min(self.SQUARE_YAWS, key=lambda a: abs(_wrap(a - nut_yaw)))
            yaw = _wrap(self.eef_yaw + _wrap(square - nut_yaw))
        # hover above the handle, descend, close: tighter tolerances for the 2 cm handle
        plan = self.grasp_from_above(grasp, yaw, hover_tol=0.012, grasp_tol=0.006)
        if plan is not None:
            return plan

        def steer_nut(nut_target):
            return self.eef + (nut_target - nut_pos)

        off_centre = np.linalg.norm(peg[:2] - nut_pos[:2])
        if self.phase == 3:  # lift straight up
            self.next_phase_if(nut_pos[2] > self.CARRY_Z - 0.02)
            return steer_nut(np.array([nut_pos[0], nut_pos[1], self.CARRY_Z])), yaw, CLOSED
        if self.phase == 4:  # carry over the peg, square up, and wait for the swing to settle
            aligned = abs(_wrap(square - nut_yaw)) < 0.05
            settled = off_centre < 0.004 and nut_speed < 0.002 and aligned
            self.next_phase_if(settled, budget=120)
            return steer_nut(np.array([peg[0], peg[1], self.CARRY_Z])), yaw, CLOSED
        if self.phase == 5:  # lower in 1 cm steps, only while centred over the peg
            z = nut_pos[2] - 0.01 if off_centre < 0.005 else nut_pos[2]
            self.next_phase_if(nut_pos[2] < self.rs.table_offset[2] + 0.04, budget=120)
            return steer_nut(np.array([peg[0], peg[1], z])), yaw, CLOSED
        if self.phase == 6:  # release
            self.next_phase_if(False, budget=self.close_steps)
            return self.eef, yaw, OPEN
        return np.array([self.eef[0], self.eef[1], self.CARRY_Z + 0.05]), yaw, OPEN  # withdraw
