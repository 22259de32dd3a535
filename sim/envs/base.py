"""The tabletop gymnasium env that every task subclasses.

A task supplies five small hooks (``add_objects``, ``reset_task``, ``object_state``,
``is_success``, ``dense_reward``) and a workspace box; this class owns the rest: the scene and arm,
the controller loop, seeding, observations (proprioception, object state, camera images), rewards,
termination, and raw simulator state for datasets.

Episode ends: ``terminated`` is True when the task succeeds (if ``terminate_on_success``); the time
limit is *not* handled here but by gymnasium's ``TimeLimit`` wrapper from the registered
``max_episode_steps``, so it shows up as ``truncated``, never as ``terminated``.

Observations (a ``Dict``; low-dimensional entries float32):
  ``joint_pos`` (n,) arm joint angles; ``eef_pos`` (3,) grip-site position, world frame;
  ``eef_quat`` (4,) grip-site orientation, wxyz, with the sign (q and -q are one rotation) that
  puts it in the home orientation's hemisphere, so it does not jump while the hand points down;
  ``gripper_pos`` (2,) the two finger joints;
  ``object_state`` (k,) task-defined; for tasks that define ``object_positions`` (positions
  only, no orientations), ``object_pos`` (m,) those and ``eef_to_object`` (3,) the first
  object's position relative to the grip site (robomimic's ``gripper_to_cube_pos``); for tasks
  that also define ``goal_offset``, ``object_to_goal`` where that object must go, relative to it
  (relative vectors spare a small dataset learning differences of absolute positions); and, unless
  ``obs_mode="state"``, ``<camera>_rgb`` (H, W, 3) uint8 per camera and, with
  ``obs_mode="rgbd"``, ``<camera>_depth`` (H, W, 1) float32 metres. With ``obs_mode="state"``
  no renderer is ever created.

Timing: ``policy_hz`` actions per simulated second (10), ``control_hz`` controller ticks (100),
physics at the model's 2 ms timestep (500 Hz), so each ``step`` runs 10 ticks of 5 substeps.
"""

from __future__ import annotations

from collections.abc import Sequence

import gymnasium as gym
import mujoco
import numpy as np

from sim.controllers.arm_controller import ACTION_SPACES, ArmController
from sim.controllers.ik import orientation_error
from sim.envs.scene import ROBOT_PREFIX, build_scene
from sim.render import CameraRenderer
from sim.robots.arms import ARMS

CAMERAS = {"scene": "scene", "wrist": ROBOT_PREFIX + "eye_in_hand"}
OBS_MODES = ("state", "rgb", "rgbd")
REWARD_TYPES = ("dense", "sparse")
SIM_STATE = mujoco.mjtState.mjSTATE_INTEGRATION  # qpos, qvel, act, ctrl, mocap, warmstart, ...


def _check_choice(key: str, value: object, allowed: Sequence[str]) -> None:
    if value not in allowed:
        raise ValueError(f"{key}={value!r} is not valid; expected one of: {', '.join(allowed)}")


class TabletopEnv(gym.Env):
    """Base class: one arm at a table; subclasses define the objects and the goal."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}

    # The box the hand's grip site is kept in (world frame, metres); the table top is z = 0.
    workspace_low = np.array([-0.35, -0.35, 0.01])
    workspace_high = np.array([0.2, 0.35, 0.35])
    object_state_size = 0

    def __init__(
        self,
        robot: str = "panda",
        action_space: str = "ee_delta",
        obs_mode: str = "rgb",
        cameras: Sequence[str] = ("scene", "wrist"),
        image_size: int | Sequence[int] = 96,
        reward_type: str = "dense",
        policy_hz: int = 10,
        control_hz: int = 100,
        terminate_on_success: bool = True,
        init_qpos_noise: float = 0.02,
        render_mode: str | None = None,
        render_size: int = 256,
    ) -> None:
        _check_choice("robot", robot, list(ARMS))
        _check_choice("action_space", action_space, ACTION_SPACES)
        _check_choice("obs_mode", obs_mode, OBS_MODES)
        _check_choice("reward_type", reward_type, REWARD_TYPES)
        cameras = tuple(cameras)
        for camera in cameras:
            _check_choice("cameras", camera, list(CAMERAS))
        if render_mode is not None:
            _check_choice("render_mode", render_mode, self.metadata["render_modes"])
        height, width = (image_size, image_size) if isinstance(image_size, int) else image_size

        self.arm = ARMS[robot]
        self.obs_mode = obs_mode
        self.cameras = cameras if obs_mode != "state" else ()
        self.reward_type = reward_type
        self.terminate_on_success = terminate_on_success
        self.init_qpos_noise = init_qpos_noise
        self.render_mode = render_mode
        self.metadata = {**self.metadata, "render_fps": policy_hz}

        self.model = build_scene(self.arm, self.add_objects)
        self.data = mujoco.MjData(self.model)
        physics_hz = round(1.0 / self.model.opt.timestep)
        if physics_hz % control_hz or control_hz % policy_hz:
            raise ValueError(
                f"control_hz={control_hz} must divide the physics rate ({physics_hz} Hz) and be "
                f"a multiple of policy_hz={policy_hz}"
            )
        self.substeps = physics_hz // control_hz
        self.control_ticks = control_hz // policy_hz

        self.controller = ArmController(
            self.model,
            self.arm,
            ROBOT_PREFIX,
            action_space,
            self.workspace_low,
            self.workspace_high,
        )
        self.action_space = self.controller.action_space()
        self.action_hold = self.controller.hold_action()  # see ArmController.hold_action
        self._arm_qpos = self.controller.ik.qpos_index
        self._gripper_qpos = np.array(
            [
                self.model.jnt_qposadr[self.model.joint(f"{ROBOT_PREFIX}gripper/{name}").id]
                for name in self.arm.gripper_joints
            ]
        )
        self.observation_space = self._make_observation_space(height, width)
        framebuffer = self.model.vis.global_  # offscreen buffer: large enough for every image
        framebuffer.offwidth = max(framebuffer.offwidth, width, render_size)
        framebuffer.offheight = max(framebuffer.offheight, height, render_size)
        self._camera_renderer = CameraRenderer(self.model, height, width)
        self._view_renderer = CameraRenderer(self.model, render_size, render_size)

    # ---- task hooks -------------------------------------------------------------------------

    def add_objects(self, spec: mujoco.MjSpec) -> None:
        """Add the task's bodies to the scene spec (before it is compiled)."""

    def reset_task(self) -> None:
        """Place the task's objects for a new episode, drawing from ``self.np_random``."""

    def object_state(self) -> np.ndarray:
        """The task's object state (``object_state_size`` floats)."""
        return np.zeros(0)

    object_positions_size = 0  # > 0: the task defines object_positions (observation object_pos)

    def object_positions(self) -> np.ndarray:
        """Object and goal positions without orientations (``object_positions_size`` floats),
        the first object's xyz first. Orientations a policy need not see (a cube's yaw, which
        the 90-degree symmetry makes ambiguous) stay out, so small datasets cannot latch on them."""
        return np.zeros(0)

    goal_offset_size = 0  # > 0: the task defines goal_offset (observation object_to_goal)

    def goal_offset(self) -> np.ndarray:
        """Where the first object must go, minus where it is (``goal_offset_size`` floats)."""
        return np.zeros(0)

    def is_success(self) -> bool:
        return False

    def dense_reward(self) -> float:
        """A shaped reward in [0, 1]; 1 only on success."""
        return float(self.is_success())

    # ---- gymnasium API ----------------------------------------------------------------------

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        mujoco.mj_resetData(self.model, self.data)
        noise = self.np_random.uniform(
            -self.init_qpos_noise, self.init_qpos_noise, len(self._arm_qpos)
        )
        self.data.qpos[self._arm_qpos] = np.asarray(self.arm.home_qpos) + noise
        self.data.qpos[self._gripper_qpos] = self.arm.gripper_open_ctrl
        self.reset_task()
        mujoco.mj_forward(self.model, self.data)
        self.controller.hold_still(self.data)
        return self._observation(), {"is_success": self.is_success()}

    def step(self, action):
        self.controller.set_action(action, self.data)
        for _ in range(self.control_ticks):
            self.controller.apply(self.data)
            mujoco.mj_step(self.model, self.data, nstep=self.substeps)
        mujoco.mj_forward(self.model, self.data)  # observations from the final state
        success = self.is_success()
        reward = self.dense_reward() if self.reward_type == "dense" else float(success)
        terminated = bool(success and self.terminate_on_success)
        return self._observation(), float(reward), terminated, False, {"is_success": success}

    def render(self):
        if self.render_mode == "rgb_array":
            return self._view_renderer.rgb(self.data, CAMERAS["scene"])
        return None

    def close(self) -> None:
        self._camera_renderer.close()
        self._view_renderer.close()

    # ---- raw simulator state ----------------------------------------------------------------

    def get_sim_state(self) -> np.ndarray:
        """Flat float64 vector of everything that determines the future (MuJoCo's
        ``mjSTATE_INTEGRATION``: time, qpos, qvel, act, warmstart, ctrl, applied forces, mocap
        poses, ...). Restoring it with ``set_sim_state`` and stepping reproduces the trajectory;
        restoring and calling ``observation()`` re-renders the frame."""
        state = np.empty(mujoco.mj_stateSize(self.model, SIM_STATE))
        mujoco.mj_getState(self.model, self.data, state, SIM_STATE)
        return state

    def set_sim_state(self, state: np.ndarray) -> None:
        expected = mujoco.mj_stateSize(self.model, SIM_STATE)
        state = np.asarray(state, dtype=np.float64)
        if state.shape != (expected,):
            raise ValueError(f"sim state has shape {state.shape}; this env expects ({expected},)")
        mujoco.mj_setState(self.model, self.data, state, SIM_STATE)
        mujoco.mj_forward(self.model, self.data)

    def observation(self) -> dict[str, np.ndarray]:
        """The observation of the current simulator state (e.g. after ``set_sim_state``)."""
        return self._observation()

    # ---- helpers for tasks and experts ------------------------------------------------------

    def eef_pose(self) -> tuple[np.ndarray, np.ndarray]:
        """Grip-site position and orientation (wxyz), world frame."""
        return self.controller.ik.site_pose(self.data)

    def action_for_pose(
        self, target_pos: np.ndarray, target_quat: np.ndarray, gripper: float
    ) -> np.ndarray:
        """The action, in this env's action space, that moves the hand toward a pose.

        Lets a scripted expert plan in Cartesian space and act in any action space: ``ee_delta``
        gets the clipped, scaled difference; ``ee_pose`` the pose itself; ``joint_pos`` the joint
        angles of one IK step toward it.
        """
        controller = self.controller
        position, quat = self.eef_pose()
        if controller.kind == "ee_delta":
            delta_pos = (np.asarray(target_pos) - position) / controller.max_delta_pos
            delta_rot = orientation_error(target_quat, quat) / controller.max_delta_rot
            motion = np.clip(np.concatenate([delta_pos, delta_rot]), -1.0, 1.0)
        elif controller.kind == "ee_pose":
            rotation = orientation_error(target_quat, controller.home_quat)
            motion = np.concatenate([target_pos, rotation])
        else:
            clipped = np.clip(target_pos, self.workspace_low, self.workspace_high)
            motion = controller.ik.joint_targets(self.data, clipped, target_quat)
        action = np.concatenate([motion, [gripper]]).astype(np.float32)
        return np.clip(action, self.action_space.low, self.action_space.high)

    @property
    def home_quat(self) -> np.ndarray:
        """The hand orientation at the home posture (pointing down)."""
        return self.controller.home_quat

    # ---- internals --------------------------------------------------------------------------

    def _make_observation_space(self, height: int, width: int) -> gym.spaces.Dict:
        def vector(size: int) -> gym.spaces.Box:
            return gym.spaces.Box(-np.inf, np.inf, (size,), dtype=np.float32)

        spaces = {
            "joint_pos": vector(len(self._arm_qpos)),
            "eef_pos": vector(3),
            "eef_quat": vector(4),
            "gripper_pos": vector(len(self._gripper_qpos)),
            "object_state": vector(self.object_state_size),
        }
        if self.object_positions_size:
            spaces["object_pos"] = vector(self.object_positions_size)
            spaces["eef_to_object"] = vector(3)
        if self.goal_offset_size:
            spaces["object_to_goal"] = vector(self.goal_offset_size)
        for camera in self.cameras:
            spaces[f"{camera}_rgb"] = gym.spaces.Box(0, 255, (height, width, 3), dtype=np.uint8)
            if self.obs_mode == "rgbd":
                spaces[f"{camera}_depth"] = gym.spaces.Box(
                    0.0, np.inf, (height, width, 1), dtype=np.float32
                )
        return gym.spaces.Dict(spaces)

    def _observation(self) -> dict[str, np.ndarray]:
        position, quat = self.eef_pose()
        if quat @ self.home_quat < 0.0:  # q and -q are one rotation: pick the one near home
            quat = -quat
        obs = {
            "joint_pos": self.data.qpos[self._arm_qpos].astype(np.float32),
            "eef_pos": position.astype(np.float32),
            "eef_quat": quat.astype(np.float32),
            "gripper_pos": self.data.qpos[self._gripper_qpos].astype(np.float32),
            "object_state": np.asarray(self.object_state(), dtype=np.float32),
        }
        if self.object_positions_size:
            objects = np.asarray(self.object_positions(), dtype=np.float32)
            obs["object_pos"] = objects
            obs["eef_to_object"] = objects[:3] - obs["eef_pos"]
        if self.goal_offset_size:
            obs["object_to_goal"] = np.asarray(self.goal_offset(), dtype=np.float32)
        for camera in self.cameras:
            obs[f"{camera}_rgb"] = self._camera_renderer.rgb(self.data, CAMERAS[camera])
            if self.obs_mode == "rgbd":
                obs[f"{camera}_depth"] = self._camera_renderer.depth(self.data, CAMERAS[camera])
        return obs
