"""robosuite 1.5.2 manipulation tasks behind our gymnasium interface, set up the way robomimic is.

The point of this wrapper is comparability with published numbers (robomimic, DPPO report Lift,
PickPlaceCan and NutAssemblySquare): a policy trained on a robomimic dataset converted to our zarr
format must be evaluable here without remapping anything. So:

- **Robot and controller** as in robomimic's datasets: one Panda, OSC_POSE on the arm (robosuite's
  ``BASIC`` composite config, whose arm part is the classic OSC_POSE: kp 150, delta input, at most
  5 cm and 0.5 rad per step), control at 20 Hz. The action is 7-D in [-1, 1]: position delta (3),
  axis-angle rotation delta (3), gripper (-1 open, +1 closed).
- **Observation keys** are robomimic's: ``robot0_eef_pos``, ``robot0_eef_quat`` (xyzw; robosuite
  1.5 still reads it from the hand *body*, as the <=1.4 releases that recorded robomimic's
  datasets did, not from the grip site), ``robot0_gripper_qpos``, ``object`` (robosuite's
  ``object-state``) and, when cameras are asked for, ``<camera>_image`` (uint8 HWC, 84x84 by
  default as in robomimic's image datasets).
- **Images** are rendered by our own ``mujoco.Renderer`` on robosuite's model and data instead of
  robosuite's offscreen context, with robosuite's geom groups (collision geoms hidden). With
  ``reflections=True`` they equal robosuite's renders flipped upright, as robomimic stores them,
  pixel for pixel. Reflections are off by default: on CPU (EGL/llvmpipe) one 84x84 camera then
  renders at about 16 frames/s instead of 5, for a mean pixel change under 1/255.
- **Episodes end** with ``terminated=True`` on task success (robomimic's rollouts stop there too)
  and with ``truncated=True`` at the horizon, applied by gymnasium's ``TimeLimit`` from the id's
  ``max_episode_steps`` (robomimic's evaluation horizon, 400 for all three tasks).
- **Seeding**: robosuite draws every random choice (object placement, joint noise) from one
  ``numpy.random.Generator`` that its placement samplers hold by reference, so we re-seed that
  generator in place from gymnasium's ``np_random`` at each reset; equal seeds give equal episodes.
  ``hard_reset=False`` keeps the compiled model between episodes (robosuite's default rebuilds it
  from XML at every reset, about a second each). The price: what robosuite draws when building
  the model stays fixed for the env's life, which for Lift is the cube's size (robomimic redraws
  it per episode, half-extent 20-22 mm). We build with a fixed seed so every instance, in every
  worker process, has the same cube.
"""

from __future__ import annotations

import gymnasium as gym
import mujoco
import numpy as np
import robosuite
from gymnasium import spaces
from robosuite.controllers import load_composite_controller_config

TASKS = ("Lift", "PickPlaceCan", "NutAssemblySquare")  # robosuite environment names

CONTROL_FREQ = 20  # Hz, robomimic's datasets were recorded at this rate
OBS_MODES = ("state", "rgb")  # state: no camera images (``cameras`` ignored) | rgb: ``cameras``


class RobosuiteEnv(gym.Env):
    """One robosuite task with a Panda under OSC_POSE, robomimic observation keys.

    Args:
        task: robosuite environment name, one of ``TASKS``.
        cameras: robosuite camera names whose images join the observation as ``<name>_image``
            (robomimic uses ``agentview`` and ``robot0_eye_in_hand``). Empty: state only, fast.
        obs_mode: ``"rgb"`` renders ``cameras``; ``"state"`` renders none (whatever ``cameras``),
            as ``obs_mode=state`` does for our own tasks.
        image_size: height and width of camera observations.
        render_mode: ``"rgb_array"`` or None.
        render_camera: camera used by ``render()``.
        render_size: height and width of ``render()`` frames.
        terminate_on_success: end the episode (``terminated=True``) when the task is solved.
        reflections: render reflective surfaces (table, floor). Off by default: on CPU
            (EGL/llvmpipe) the extra pass costs 3x in frame rate for a mean pixel change under
            1/255; turn it on to come closer to robosuite's own renders.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": CONTROL_FREQ}

    def __init__(
        self,
        task: str = "Lift",
        cameras: tuple[str, ...] | list[str] = (),
        obs_mode: str = "rgb",
        image_size: int = 84,
        render_mode: str | None = None,
        render_camera: str = "agentview",
        render_size: int = 256,
        terminate_on_success: bool = True,
        reflections: bool = False,
    ):
        if task not in TASKS:
            raise ValueError(f"task={task!r} is not a robosuite task; expected one of {TASKS}")
        if obs_mode not in OBS_MODES:
            raise ValueError(f"obs_mode={obs_mode!r}; expected one of {', '.join(OBS_MODES)}")
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
        self.task = task
        self.obs_mode = obs_mode
        self.cameras = tuple(cameras) if obs_mode == "rgb" else ()
        self.image_size = int(image_size)
        self.render_mode = render_mode
        self.render_camera = render_camera
        self.render_size = int(render_size)
        self.terminate_on_success = terminate_on_success
        self.reflections = reflections

        controller = load_composite_controller_config(controller="BASIC", robot="Panda")
        self.rs = robosuite.make(
            task,
            robots="Panda",
            controller_configs=controller,
            has_renderer=False,
            has_offscreen_renderer=False,
            use_camera_obs=False,
            use_object_obs=True,
            reward_shaping=False,
            control_freq=CONTROL_FREQ,
            ignore_done=True,  # the horizon is gymnasium's TimeLimit
            hard_reset=False,
            seed=0,  # construction-time draws (Lift's cube size) equal in every instance
        )
        self.model: mujoco.MjModel = self.rs.sim.model._model
        self.data: mujoco.MjData = self.rs.sim.data._data
        self._renderers: dict[int, mujoco.Renderer] = {}
        # As robosuite renders: visual meshes (geom group 1) only, collision geoms (group 0) hidden.
        self._scene_option = mujoco.MjvOption()
        self._scene_option.geomgroup[0] = 0

        state_dims = {k: v.shape for k, v in self._state_obs(self.rs.reset()).items()}
        obs_spaces: dict[str, spaces.Space] = {
            k: spaces.Box(-np.inf, np.inf, shape, np.float32) for k, shape in state_dims.items()
        }
        for cam in self.cameras:
            shape = (self.image_size, self.image_size, 3)
            obs_spaces[f"{cam}_image"] = spaces.Box(0, 255, shape, np.uint8)
        self.observation_space = spaces.Dict(obs_spaces)
        low, high = self.rs.action_spec
        self.action_space = spaces.Box(low.astype(np.float32), high.astype(np.float32))
        # OSC_POSE takes pose deltas (0 holds); the last entry is the absolute gripper command.
        self.action_hold = ["zero"] * (len(low) - 1) + ["last"]

    # -- gymnasium API ---------------------------------------------------------------------------

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        # Re-seed robosuite's generator in place: its placement samplers keep a reference to it.
        sub_seed = int(self.np_random.integers(2**63))
        self.rs.rng.bit_generator.state = np.random.default_rng(sub_seed).bit_generator.state
        raw = self.rs.reset()
        return self._observation(raw), {"is_success": False}

    def step(self, action):
        action = np.clip(np.asarray(action, dtype=np.float64), -1.0, 1.0)
        _, reward, _, _ = self.rs.step(action)
        # robosuite reads its observables right after mj_step, whose kinematics are those before
        # the last substep's integration; a forward pass makes the observation describe exactly
        # the state that get_sim_state returns (and that set_sim_state reproduces).
        self.rs.sim.forward()
        raw = self.rs._get_observations(force_update=True)
        success = bool(self.rs._check_success())
        terminated = success and self.terminate_on_success
        return self._observation(raw), float(reward), terminated, False, {"is_success": success}

    def render(self):
        if self.render_mode != "rgb_array":
            return None
        return self._render_camera(self.render_camera, self.render_size)

    def close(self):
        for renderer in self._renderers.values():
            renderer.close()
        self._renderers.clear()
        self.rs.close()

    # -- simulator state (datasets keep it so observations can be re-rendered) -------------------

    def get_sim_state(self) -> np.ndarray:
        """The flat MuJoCo state (time, qpos, qvel), as robomimic stores it in ``states``."""
        return np.asarray(self.rs.sim.get_state().flatten(), dtype=np.float64)

    def set_sim_state(self, state: np.ndarray) -> dict[str, np.ndarray]:
        """Restore a state from ``get_sim_state`` (or a robomimic dataset); returns its observation.

        The observation matches the one recorded with the state (what re-rendering needs). Stepping
        on from a restored state follows the original run to within a millimetre, not exactly:
        robosuite's Panda gripper slews its command by 0.2 per physics substep, a counter outside
        the MuJoCo state, and MuJoCo's solver warm start is not in the flat state either
        (robomimic's ``reset_to`` has the same gaps).
        """
        self.rs.sim.set_state_from_flattened(np.asarray(state, dtype=np.float64))
        self.rs.sim.forward()
        return self._observation(self.rs._get_observations(force_update=True))

    # -- observations ----------------------------------------------------------------------------

    @staticmethod
    def _state_obs(raw: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {
            "robot0_eef_pos": raw["robot0_eef_pos"].astype(np.float32),
            "robot0_eef_quat": raw["robot0_eef_quat"].astype(np.float32),
            "robot0_gripper_qpos": raw["robot0_gripper_qpos"].astype(np.float32),
            "object": raw["object-state"].astype(np.float32),
        }

    def _observation(self, raw: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        obs = self._state_obs(raw)
        for cam in self.cameras:
            obs[f"{cam}_image"] = self._render_camera(cam, self.image_size)
        return obs

    def _render_camera(self, camera: str, size: int) -> np.ndarray:
        if size not in self._renderers:
            renderer = mujoco.Renderer(self.model, height=size, width=size)
            renderer.scene.flags[mujoco.mjtRndFlag.mjRND_REFLECTION] = self.reflections
            self._renderers[size] = renderer
        renderer = self._renderers[size]
        renderer.update_scene(self.data, camera=camera, scene_option=self._scene_option)
        return renderer.render()
