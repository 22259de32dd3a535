"""The sim robot: a MuJoCo tabletop world stepping in real time behind the robot interfaces.

No real arm is attached here, so the simulated one stands in for it as closely as possible: the
same ``Arm``/``Gripper``/``Camera`` interfaces as a driver, the same absolute commands with target
times, the same safety layer, and a world that moves on its own clock whether or not anybody
sends commands.

``SimWorld`` owns one ``sim.envs.base.TabletopEnv`` (made from a gymnasium id and kwargs, so the
scene, objects, controller gains and workspace box are exactly the env's) and steps it on a
background thread at the env's control rate (100 Hz), each tick scheduled on ``time.monotonic``:

1. the arm's *reference* is evaluated: for a command received at ``t0`` with target time
   ``t1``, the reference moves linearly (joints; or position linearly and orientation by slerp,
   for a pose) from the state measured at ``t0`` to the target, reaching it at ``t1`` and staying
   there (``hold``/``stop`` make the measured joints the reference). The position actuators
   (stiffness ``kp``, damping ``kv``) trail a moving reference by ``kv / kp`` seconds (30-100 ms
   here), so the reference is read that far ahead (per joint; the median for a pose), which is
   velocity feed-forward: the arm itself, not just its reference, arrives at ``t1``;
2. a pose reference goes through the env's differential IK (one step per tick, as the env's own
   controller does), a joint reference is used as is, to give the arm's position actuators their
   targets; the gripper's actuators get the last gripper command;
3. the physics runs the env's substeps (500 Hz), then a snapshot of what a driver would measure
   (joints, hand pose with the sign of ``eef_quat`` the env uses, fingers, the task's
   ``object_state``) is published, stamped with the tick's monotonic time.

If a tick comes more than ``MAX_LAG`` late (a loaded machine), the schedule restarts from now
rather than racing to catch up, so simulated time then runs behind wall time; ``timing()``
counts those resets.

Cameras render on their own thread (rendering takes milliseconds and must not delay the physics;
the OpenGL context stays on that thread): at ``camera_fps`` it copies the physics state, renders
every camera, and publishes frames whose ``capture_time`` is the monotonic time of the tick
rendered and ``receive_time`` the moment rendering finished.

``make_sim_robot`` assembles the ``Robot``: its arm is always a ``SafetyLayer`` (with the arm's
forward kinematics, so joint commands also stay in the box) whose watchdog runs, its gripper a
``GripperGuard``; there is no other way. Its ``task`` is the world (``reset_episode(seed)`` is
``env.reset(seed=seed)``), its ``sensors`` the privileged ``object_state``.
"""

from __future__ import annotations

import inspect
import math
import threading
import time
from dataclasses import dataclass

# isort: off
import sim  # first: it registers the env ids and sets MUJOCO_GL before mujoco loads
import gymnasium as gym
import mujoco
import numpy as np

# isort: on

from hardware.interfaces import (
    Arm,
    ArmCommand,
    ArmState,
    Camera,
    CameraFrame,
    Gripper,
    GripperCommand,
    GripperState,
    Robot,
    Sensor,
    SensorReading,
    TaskControl,
)
from hardware.kinematics import sim_arm_kinematics
from hardware.safety import GripperGuard, SafetyLayer, SafetyLimits
from sim.controllers.arm_controller import compose
from sim.controllers.ik import orientation_error
from sim.envs.base import CAMERAS, TabletopEnv
from sim.envs.scene import ROBOT_PREFIX

MAX_LAG = 0.05  # s: a tick later than this restarts the schedule instead of catching up
FRAME_TIMEOUT = 10.0  # s: how long SimCamera.read waits for a first frame (GL start-up)


@dataclass(frozen=True)
class _Snapshot:
    """What the sensors measured after one tick (arrays are never written again)."""

    time: float  # monotonic
    sim_time: float
    joints: np.ndarray
    joint_velocities: np.ndarray
    ee_position: np.ndarray
    ee_quat: np.ndarray
    fingers: np.ndarray
    objects: dict[str, np.ndarray]  # the env's privileged keys (object_state, object_pos, ...)


@dataclass(frozen=True)
class _Motion:
    """The arm's reference: from ``start`` at ``t0`` to ``target`` at ``t1`` (joints, or a pose
    as (position, quat) pairs)."""

    is_joint: bool
    start: tuple[np.ndarray, ...]
    target: tuple[np.ndarray, ...]
    t0: float
    t1: float

    def fraction(self, now: float | np.ndarray) -> float | np.ndarray:
        if self.t1 <= self.t0:
            return np.ones_like(now)
        return np.clip((now - self.t0) / (self.t1 - self.t0), 0.0, 1.0)


class SimWorld(TaskControl):
    """One tabletop env stepping in real time on a thread; see the module doc."""

    def __init__(
        self,
        env_id: str = sim.PUSH_CUBE_ID,
        env_kwargs: dict | None = None,
        seed: int = 0,
        camera_fps: float | None = None,
    ) -> None:
        kwargs = dict(env_kwargs or {})
        defaults = inspect.signature(TabletopEnv.__init__).parameters
        self.obs_mode = kwargs.get("obs_mode", defaults["obs_mode"].default)
        # the env never renders (its renderer would live on the caller's thread): we do
        env = gym.make(env_id, **{**kwargs, "obs_mode": "state"})
        if not isinstance(env.unwrapped, TabletopEnv):
            raise ValueError(f"env_id={env_id!r} is not a tabletop env; the sim robot needs one")
        self.env_id = env_id
        self.env: TabletopEnv = env.unwrapped
        self.max_episode_steps = env.spec.max_episode_steps if env.spec else None
        cameras = kwargs.get("cameras", defaults["cameras"].default)
        self.camera_names = () if self.obs_mode == "state" else tuple(cameras)
        size = kwargs.get("image_size", defaults["image_size"].default)
        self.image_size = (size, size) if isinstance(size, int) else tuple(size)
        self.camera_fps = float(camera_fps or self.env.metadata["render_fps"])

        env, model = self.env, self.env.model
        controller = env.controller
        self.control_period = env.substeps * model.opt.timestep
        self.joint_low, self.joint_high = controller.joint_low, controller.joint_high
        self.kinematics = sim_arm_kinematics(model, env.arm.name)
        self._ik = controller.ik
        actuators = controller.arm_actuators
        self._lead = -model.actuator_biasprm[actuators, 2] / model.actuator_gainprm[actuators, 0]
        self._dof = controller.ik.dof_index
        self._fingers = np.array(
            [
                model.jnt_qposadr[model.joint(f"{ROBOT_PREFIX}gripper/{name}").id]
                for name in env.arm.gripper_joints
            ]
        )
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._frames: dict[str, CameraFrame] = {}
        self._frames_ready = threading.Condition()
        self._late_resets = 0
        self._ticks = 0
        self._episode = 0  # counts resets: frames rendered from an older episode are dropped
        self.seed = seed
        self.reset_episode(seed)
        self._thread = threading.Thread(target=self._run, name="sim-world", daemon=True)
        self._thread.start()
        self._camera_thread = None
        if self.camera_names:
            self._camera_thread = threading.Thread(
                target=self._render_loop, name="sim-cameras", daemon=True
            )
            self._camera_thread.start()

    # ---- episodes (TaskControl) -------------------------------------------------------------

    def reset_episode(self, seed: int) -> None:
        """``env.reset(seed=seed)``: the same initial state as the gym env's; the arm holds
        there, the gripper opens, and cameras wait for a frame of the new episode."""
        with self._lock:
            self.env.reset(seed=int(seed))
            self.seed = int(seed)
            self._episode += 1
            self._gripper_ctrl = self.env.controller.gripper_control(-1.0)
            self._snapshot = self._measure(time.monotonic())
            self._motion = self._hold_motion()
        with self._frames_ready:
            self._frames = {}

    def task_info(self) -> dict:
        with self._lock:
            return {
                "is_success": bool(self.env.is_success()),
                "dense_reward": float(self.env.dense_reward()),
                "sim_time": float(self.env.data.time),
                "seed": self.seed,
            }

    def timing(self) -> dict:
        """Ticks run and schedule restarts (ticks more than ``MAX_LAG`` late) so far."""
        return {"ticks": self._ticks, "late_resets": self._late_resets}

    def close(self) -> None:
        """Stop the physics and camera threads (the arm keeps its last controls)."""
        self._closing.set()
        for thread in (self._thread, self._camera_thread):
            if thread is not None and thread is not threading.current_thread():
                thread.join()
        self.env.close()

    # ---- what the devices call ------------------------------------------------------------

    def snapshot(self) -> _Snapshot:
        return self._snapshot

    def move_arm(self, command: ArmCommand, now: float) -> None:
        """Start a motion from the measured state to ``command`` at its target time."""
        with self._lock:
            state = self._snapshot
            if command.is_joint:
                if command.joint_positions.shape != state.joints.shape:
                    raise ValueError(
                        f"joint command has {command.joint_positions.shape[0]} joints; "
                        f"the sim arm has {state.joints.shape[0]}"
                    )
                start, target = (state.joints,), (command.joint_positions,)
            else:
                quat = command.ee_quat / np.linalg.norm(command.ee_quat)
                start = (state.ee_position, state.ee_quat)
                target = (command.ee_position, quat)
            self._motion = _Motion(command.is_joint, start, target, now, command.target_time)

    def hold_arm(self) -> None:
        """Make the measured joints the reference: the position actuators brake to rest."""
        with self._lock:
            self._motion = self._hold_motion()

    def set_gripper(self, opening: float) -> None:
        """``opening`` in [0, 1]; the sim's command is ``1 - 2 opening`` (-1 open, +1 closed)."""
        with self._lock:
            self._gripper_ctrl = self.env.controller.gripper_control(1.0 - 2.0 * opening)

    def frame(self, camera: str) -> CameraFrame:
        """The newest frame of ``camera`` in this episode (waits for the first one)."""
        deadline = time.monotonic() + FRAME_TIMEOUT
        with self._frames_ready:
            while True:
                frame = self._frames.get(camera)
                if frame is not None:
                    return frame
                left = deadline - time.monotonic()
                if left <= 0 or self._closing.is_set():
                    raise TimeoutError(f"sim camera {camera!r} sent no frame in {FRAME_TIMEOUT} s")
                self._frames_ready.wait(left)

    # ---- the physics thread -----------------------------------------------------------------

    def _run(self) -> None:
        next_tick = time.monotonic()
        while not self._closing.is_set():
            next_tick += self.control_period
            delay = next_tick - time.monotonic()
            if delay > 0:
                self._closing.wait(delay)
            elif delay < -MAX_LAG:
                self._late_resets += 1
                next_tick = time.monotonic()
            with self._lock:
                self._tick(time.monotonic())

    def _tick(self, now: float) -> None:
        env, data = self.env, self.env.data
        data.ctrl[env.controller.arm_actuators] = self._reference_joints(now)
        data.ctrl[env.controller.gripper_actuators] = self._gripper_ctrl
        mujoco.mj_step(env.model, data, nstep=env.substeps)
        mujoco.mj_forward(env.model, data)
        self._snapshot = self._measure(time.monotonic())
        self._ticks += 1

    def _reference_joints(self, now: float) -> np.ndarray:
        motion = self._motion
        if motion.is_joint:
            (start,), (target,) = motion.start, motion.target
            return start + motion.fraction(now + self._lead) * (target - start)
        fraction = float(motion.fraction(now + np.median(self._lead)))
        (start_pos, start_quat), (target_pos, target_quat) = motion.start, motion.target
        position = start_pos + fraction * (target_pos - start_pos)
        quat = compose(fraction * orientation_error(target_quat, start_quat), start_quat)
        return self._ik.joint_targets(self.env.data, position, quat)

    def _hold_motion(self) -> _Motion:
        joints = self._snapshot.joints
        return _Motion(True, (joints,), (joints,), 0.0, 0.0)

    def _measure(self, now: float) -> _Snapshot:
        env, data = self.env, self.env.data
        position, quat = env.eef_pose()
        if quat @ env.home_quat < 0.0:  # the sign the env's eef_quat uses
            quat = -quat
        return _Snapshot(
            time=now,
            sim_time=float(data.time),
            joints=data.qpos[self._ik.qpos_index].copy(),
            joint_velocities=data.qvel[self._dof].copy(),
            ee_position=position,
            ee_quat=quat,
            fingers=data.qpos[self._fingers].copy(),
            objects=privileged_observation(env, position),
        )

    # ---- the camera thread ------------------------------------------------------------------

    def _render_loop(self) -> None:
        model = self.env.model
        scratch = mujoco.MjData(model)
        renderer = mujoco.Renderer(model, *self.image_size)
        depth = self.obs_mode == "rgbd"
        period = 1.0 / self.camera_fps
        next_frame = time.monotonic()
        try:
            while not self._closing.is_set():
                with self._lock:
                    data = self.env.data
                    scratch.qpos[:], scratch.qvel[:] = data.qpos, data.qvel
                    scratch.mocap_pos[:], scratch.mocap_quat[:] = data.mocap_pos, data.mocap_quat
                    captured, episode = self._snapshot.time, self._episode
                mujoco.mj_forward(model, scratch)
                frames = {}
                for name in self.camera_names:
                    renderer.update_scene(scratch, camera=CAMERAS[name])
                    color = renderer.render().copy()
                    image = None
                    if depth:
                        renderer.enable_depth_rendering()
                        image = renderer.render().astype(np.float32)
                        renderer.disable_depth_rendering()
                    frames[name] = CameraFrame(color, captured, time.monotonic(), image)
                with self._frames_ready:
                    if episode == self._episode:
                        self._frames.update(frames)
                        self._frames_ready.notify_all()
                next_frame = max(next_frame + period, time.monotonic() - period)
                self._closing.wait(max(next_frame - time.monotonic(), 0.0))
        finally:
            renderer.close()


class SimArm(Arm):
    """The world's arm; reached only through the ``SafetyLayer`` that ``make_sim_robot`` puts
    around it."""

    def __init__(self, world: SimWorld) -> None:
        self.world = world

    def read_state(self) -> ArmState:
        state = self.world.snapshot()
        return ArmState(
            state.joints, state.joint_velocities, state.ee_position, state.ee_quat, state.time
        )

    def forward_kinematics(self, joints: np.ndarray) -> np.ndarray:
        """The grip site at ``joints`` (MuJoCo; not thread-safe: for the arm's safety layer)."""
        return self.world.kinematics(joints)

    def send_command(self, command: ArmCommand) -> None:
        self.world.move_arm(command, time.monotonic())

    def hold(self) -> None:
        self.world.hold_arm()

    def stop(self) -> None:
        """The sim's protective stop is a hold (its actuators brake at the measured joints); the
        next command resumes."""
        self.world.hold_arm()

    def close(self) -> None:
        self.world.hold_arm()


class SimGripper(Gripper):
    """The world's parallel gripper; ``opening`` is read off the finger joints, linearly between
    the closed and open actuator targets."""

    def __init__(self, world: SimWorld) -> None:
        self.world = world
        controller = world.env.controller
        self._open, self._closed = controller.gripper_open, controller.gripper_closed

    def read_state(self) -> GripperState:
        state = self.world.snapshot()
        span = self._open - self._closed
        opening = float(np.clip(np.mean((state.fingers - self._closed) / span), 0.0, 1.0))
        return GripperState(opening, state.time, joint_positions=state.fingers)

    def send_command(self, command: GripperCommand) -> None:
        """Sets the actuators' target at once (the sim gripper's own dynamics do the rest)."""
        opening = float(command.opening)
        if not math.isfinite(opening):
            raise ValueError(f"gripper opening must be finite; got {opening}")
        self.world.set_gripper(min(max(opening, 0.0), 1.0))

    def close(self) -> None:
        """Nothing to release (the world is closed by the robot's task)."""


class SimCamera(Camera):
    """One of the world's cameras; ``read`` never returns a frame from before the last
    ``reset_episode``."""

    def __init__(self, world: SimWorld, name: str) -> None:
        self.world = world
        self.name = name

    def read(self) -> CameraFrame:
        return self.world.frame(self.name)

    def close(self) -> None:
        """Nothing to release (the world is closed by the robot's task)."""


def privileged_observation(env, hand_position: np.ndarray) -> dict[str, np.ndarray]:
    """The env's object observations as its ``_observation`` builds them (float64 here)."""
    objects = {"object_state": np.asarray(env.object_state(), dtype=np.float64)}
    if env.object_positions_size:
        positions = np.asarray(env.object_positions(), dtype=np.float64)
        objects["object_pos"] = positions
        objects["eef_to_object"] = positions[:3] - hand_position
    if env.goal_offset_size:
        objects["object_to_goal"] = np.asarray(env.goal_offset(), dtype=np.float64)
    return objects


class SimObjectState(Sensor):
    """One of the task's privileged observations (``object_state``: e.g. the cube's pose and
    the target; ``object_pos``, ``eef_to_object``), as the state-based policies were trained on."""

    def __init__(self, world: SimWorld, key: str = "object_state") -> None:
        self.world = world
        self.key = key

    def read(self) -> SensorReading:
        state = self.world.snapshot()
        return SensorReading(state.objects[self.key], state.time)

    def close(self) -> None:
        """Nothing to release."""


def sim_safety_limits(world: SimWorld, **overrides) -> SafetyLimits:
    """The sim arm's limits: the task's workspace box and the arm model's joint range; velocity
    and step limits that the sim's own expert actions respect at 10 Hz (an ``ee_delta`` action
    moves the hand up to 5 cm per axis and 0.25 rad per axis, a ``joint_pos`` action is one IK
    step of up to 0.3 rad); the watchdog at the control period. ``overrides`` replace fields."""
    values = dict(
        workspace_low=world.env.workspace_low,
        workspace_high=world.env.workspace_high,
        joint_low=world.joint_low,
        joint_high=world.joint_high,
        max_joint_velocity=3.0,  # rad/s
        max_joint_acceleration=30.0,  # rad/s^2
        max_joint_step=0.3,  # rad per command
        max_translation_step=0.1,  # m per command (sqrt(3) * 5 cm is 8.7 cm)
        max_rotation_step=0.5,  # rad per command (sqrt(3) * 0.25 is 0.43)
        control_period=world.control_period,
        watchdog_timeout=0.25,  # s without a valid command: hold
        stop_after=1.0,  # s of holding: stop
        stale_tolerance=0.05,  # s a command's target time may lie in the past
    )
    return SafetyLimits(**{**values, **overrides})


def make_sim_robot(
    env_id: str = sim.PUSH_CUBE_ID,
    env_kwargs: dict | None = None,
    seed: int = 0,
    limits: SafetyLimits | dict | None = None,
    camera_fps: float | None = None,
) -> Robot:
    """The sim robot: arm ``"arm"`` (always behind a running ``SafetyLayer``), gripper
    ``"gripper"``, the env's cameras (none with ``obs_mode="state"``), sensors ``"object_state"``
    (and ``"object_pos"``, ``"eef_to_object"`` where the task defines them),
    task control = the world (started with ``reset_episode(seed)``). ``limits``: a
    ``SafetyLimits``, or a mapping of fields overriding ``sim_safety_limits``; ``camera_fps``
    defaults to the env's policy rate."""
    world = SimWorld(env_id, env_kwargs, seed, camera_fps)
    if not isinstance(limits, SafetyLimits):
        limits = sim_safety_limits(world, **dict(limits or {}))
    layer = SafetyLayer(SimArm(world), limits, forward_kinematics=world.kinematics)
    layer.start()
    env = world.env
    info = {
        "kind": "sim",
        "env_id": env_id,
        "env_kwargs": dict(env_kwargs or {}),
        "fps": env.metadata["render_fps"],
        "control_hz": round(1.0 / world.control_period),
        "max_episode_steps": world.max_episode_steps,
        "home_quat": env.home_quat.tolist(),
        "workspace_low": env.workspace_low.tolist(),
        "workspace_high": env.workspace_high.tolist(),
        "max_delta_pos": env.controller.max_delta_pos,
        "max_delta_rot": env.controller.max_delta_rot,
    }
    return Robot(
        arms={"arm": layer},
        grippers={"gripper": GripperGuard(SimGripper(world))},
        cameras={name: SimCamera(world, name) for name in world.camera_names},
        sensors={key: SimObjectState(world, key) for key in world.snapshot().objects},
        task=world,
        info=info,
    )
