"""Meta-World 3.1.1 single tasks (MT1 setting) behind our gymnasium interface.

Meta-World's own ``Meta-World/MT1`` id wraps the task in its task-sampling, auto-terminating,
episode-statistics wrappers and draws goals from a fixed list of 50 pre-sampled tasks. We build the
task class directly and keep what matters for comparison with published MT1 numbers:

- **Goal observable** (``_partially_observable = False``), as in MT1: the 39-D state ends with the
  goal position. It is the ``state`` key of a Dict observation, float32. ``agent_pos`` is its
  proprioceptive part alone (hand position and gripper opening, the first 4 entries), for image
  policies that must not see object poses; camera images join as ``<camera>_image`` (uint8 HWC)
  when asked for, unless ``obs_mode="state"`` (as for our own tasks: no camera is rendered, so
  ``task.env_kwargs.obs_mode=state`` evaluates a state policy on any task). Meta-World's
  cameras: ``corner``, ``corner2``, ``corner3``, ``corner4``, ``topview``, ``behindGripper``,
  ``gripperPOV``.
- **Object and goal positions** are drawn at every reset from the task's own random-reset box
  (the same distribution MT1's 50 goals were drawn from), by Meta-World's ``seeded_rand_vec``
  path with its generator re-seeded from gymnasium's ``np_random``: equal seeds, equal episodes.
- **Success** is Meta-World's ``info["success"]``; with ``terminate_on_success`` the episode
  ends there (``terminated=True``). The horizon is Meta-World's 500 steps, applied by gymnasium's
  ``TimeLimit`` from the id's ``max_episode_steps``.
- **Images** come from our own ``mujoco.Renderer`` with a 1024 shadow map (MuJoCo's 4096 default
  is slow on CPU) and no reflections unless asked for, rather than Meta-World's 480x480 renderer, so
  several cameras and sizes can coexist. On a loaded 2-core CPU one 84x84 camera renders at
  about 5-10 frames/s (shadows halve it; reflections barely matter here), state-only steps run
  at 200-2,000 steps/s.

The action is Meta-World's: 4-D in [-1, 1], end-effector position delta (x 1 cm) and gripper effort.
"""

from __future__ import annotations

import gymnasium as gym
import mujoco
import numpy as np
from gymnasium import spaces
from metaworld.env_dict import ALL_V3_ENVIRONMENTS

SHADOW_MAP_SIZE = 1024  # MuJoCo's default 4096 caps rendering near 40 frames/s on llvmpipe
# Meta-World's corner cameras were set up for mujoco-py, which returned images bottom row first;
# rendered correctly they show the scene upside down, so we flip them back to what Meta-World's
# authors (and datasets recorded with mujoco-py) saw. topview, behindGripper, gripperPOV are fine.
FLIPPED_CAMERAS = frozenset({"corner", "corner2", "corner3", "corner4"})
CAMERAS = ("corner", "corner2", "corner3", "corner4", "topview", "behindGripper", "gripperPOV")
OBS_MODES = ("state", "rgb")  # state: no camera images (``cameras`` ignored) | rgb: ``cameras``


class MetaWorldEnv(gym.Env):
    """One Meta-World v3 task with its goal in the observation.

    Args:
        task: Meta-World task name, e.g. ``"reach-v3"`` (see ``metaworld.ALL_V3_ENVIRONMENTS``).
        cameras: Meta-World camera names whose images join the observation as ``<name>_image``.
        obs_mode: ``"rgb"`` renders ``cameras``; ``"state"`` renders none (whatever ``cameras``).
        image_size: height and width of camera observations.
        render_mode: ``"rgb_array"`` or None.
        render_camera: camera used by ``render()``.
        render_size: height and width of ``render()`` frames.
        terminate_on_success: end the episode (``terminated=True``) when the task is solved.
        reflections: render reflective surfaces. Off by default, as for robosuite (where it
            costs 3x on CPU); turn it on to come closer to Meta-World's own renders.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 80}  # 5 substeps of 2.5 ms

    def __init__(
        self,
        task: str = "reach-v3",
        cameras: tuple[str, ...] | list[str] = (),
        obs_mode: str = "rgb",
        image_size: int = 84,
        render_mode: str | None = None,
        render_camera: str = "corner2",
        render_size: int = 256,
        terminate_on_success: bool = True,
        reflections: bool = False,
    ):
        _check_args(task, tuple(cameras), obs_mode, render_mode, render_camera)
        self.task = task
        self.obs_mode = obs_mode
        self.cameras = tuple(cameras) if obs_mode == "rgb" else ()
        self.image_size = int(image_size)
        self.render_mode = render_mode
        self.render_camera = render_camera
        self.render_size = int(render_size)
        self.terminate_on_success = terminate_on_success
        self.reflections = reflections

        self.mw = ALL_V3_ENVIRONMENTS[task]()
        self.mw._partially_observable = False  # MT1: the goal is part of the state
        del self.mw.sawyer_observation_space  # cached property: recompute for the goal-observable
        self.mw._set_task_called = True
        self.mw._freeze_rand_vec = False
        self.mw.seeded_rand_vec = True  # draw positions from mw.np_random, which we seed
        # The horizon is our TimeLimit's; Meta-World's own limit would raise past 500 steps.
        self.mw.max_path_length = np.iinfo(np.int64).max
        self.model: mujoco.MjModel = self.mw.model
        self.data: mujoco.MjData = self.mw.data
        self.model.vis.quality.shadowsize = SHADOW_MAP_SIZE
        self._renderers: dict[int, mujoco.Renderer] = {}

        state_dim = self.mw.sawyer_observation_space.shape[0]
        obs_spaces: dict[str, spaces.Space] = {
            "state": spaces.Box(-np.inf, np.inf, (state_dim,), np.float32),
            "agent_pos": spaces.Box(-np.inf, np.inf, (4,), np.float32),
        }
        for cam in self.cameras:
            shape = (self.image_size, self.image_size, 3)
            obs_spaces[f"{cam}_image"] = spaces.Box(0, 255, shape, np.uint8)
        self.observation_space = spaces.Dict(obs_spaces)
        self.action_space = spaces.Box(-1.0, 1.0, (4,), np.float32)
        self.action_hold = ["zero"] * 3 + ["last"]  # hand-position deltas, absolute gripper effort

    # -- gymnasium API ---------------------------------------------------------------------------

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self.mw.seed(int(self.np_random.integers(2**31)))
        state, _ = self.mw.reset()
        return self._observation(state), {"is_success": False}

    def step(self, action):
        action = np.clip(np.asarray(action, dtype=np.float32), -1.0, 1.0)
        state, reward, _, _, info = self.mw.step(action)
        success = bool(info["success"])
        terminated = success and self.terminate_on_success
        return self._observation(state), float(reward), terminated, False, {"is_success": success}

    def render(self):
        if self.render_mode != "rgb_array":
            return None
        return self._render_camera(self.render_camera, self.render_size)

    def close(self):
        for renderer in self._renderers.values():
            renderer.close()
        self._renderers.clear()
        self.mw.close()

    # -- simulator state -------------------------------------------------------------------------

    def get_sim_state(self) -> np.ndarray:
        """The flat MuJoCo state: time, qpos, qvel, and the mocap pose that drives the hand."""
        d = self.data
        return np.concatenate([[d.time], d.qpos, d.qvel, d.mocap_pos.ravel(), d.mocap_quat.ravel()])

    def set_sim_state(self, state: np.ndarray) -> dict[str, np.ndarray]:
        """Restore a state from ``get_sim_state``; returns its observation.

        The goal is not part of the MuJoCo state: it stays the current episode's goal. The state's
        previous-frame half equals its current half, as in the first observation of an episode.
        """
        m, d = self.model, self.data
        sizes = [1, m.nq, m.nv, 3 * m.nmocap, 4 * m.nmocap]
        time, qpos, qvel, mocap_pos, mocap_quat = np.split(np.asarray(state), np.cumsum(sizes)[:-1])
        d.time = float(time[0])
        d.qpos[:], d.qvel[:] = qpos, qvel
        d.mocap_pos[:] = mocap_pos.reshape(-1, 3)
        d.mocap_quat[:] = mocap_quat.reshape(-1, 4)
        mujoco.mj_forward(m, d)
        self.mw._prev_obs = self.mw._get_curr_obs_combined_no_goal()  # as after a reset
        return self._observation(self.mw._get_obs())

    # -- observations ----------------------------------------------------------------------------

    def _observation(self, state: np.ndarray) -> dict[str, np.ndarray]:
        state = np.asarray(state, dtype=np.float32)
        obs = {"state": state, "agent_pos": state[:4].copy()}
        for cam in self.cameras:
            obs[f"{cam}_image"] = self._render_camera(cam, self.image_size)
        return obs

    def _render_camera(self, camera: str, size: int) -> np.ndarray:
        if size not in self._renderers:
            renderer = mujoco.Renderer(self.model, height=size, width=size)
            renderer.scene.flags[mujoco.mjtRndFlag.mjRND_REFLECTION] = self.reflections
            self._renderers[size] = renderer
        renderer = self._renderers[size]
        renderer.update_scene(self.data, camera=camera)
        image = renderer.render()
        return np.ascontiguousarray(image[::-1]) if camera in FLIPPED_CAMERAS else image


def _check_args(task, cameras, obs_mode, render_mode, render_camera) -> None:
    """One ``ValueError`` naming the argument, its value and what it may be."""
    if task not in ALL_V3_ENVIRONMENTS:
        raise ValueError(
            f"task={task!r} is not a Meta-World v3 task; expected one of "
            f"{', '.join(sorted(ALL_V3_ENVIRONMENTS))}"
        )
    if obs_mode not in OBS_MODES:
        raise ValueError(f"obs_mode={obs_mode!r}; expected one of {', '.join(OBS_MODES)}")
    unknown = [camera for camera in (*cameras, render_camera) if camera not in CAMERAS]
    if unknown:
        raise ValueError(
            f"camera {unknown[0]!r} (in cameras or render_camera) is not a Meta-World camera; "
            f"expected one of {', '.join(CAMERAS)}"
        )
    if render_mode not in (None, "rgb_array"):
        raise ValueError(f"render_mode={render_mode!r}; expected None or 'rgb_array'")
