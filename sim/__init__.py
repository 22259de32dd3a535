"""robopolicy's simulation package: MuJoCo tabletop tasks as gymnasium envs, and their experts.

Stands alone on MuJoCo and gymnasium (it never imports ``robopolicy``). Importing ``sim`` only
registers env ids and expert factories; MuJoCo, the robot models and the env classes load when
an env is made (``gym.make("robopolicy/PushCube-v0")``).

``MUJOCO_GL`` defaults to ``egl`` (headless rendering) unless already set, because mujoco reads
it once, at its first import.
"""

import os

import gymnasium as gym

os.environ.setdefault("MUJOCO_GL", "egl")

from sim.experts import TeleopStyle, register_expert  # noqa: E402

PUSH_CUBE_ID = "robopolicy/PushCube-v0"


def _push_cube_expert(env, style: TeleopStyle):
    from sim.envs.push_cube_expert import PushCubeExpert

    return PushCubeExpert(env, style)


if PUSH_CUBE_ID not in gym.registry:
    gym.register(
        id=PUSH_CUBE_ID,
        entry_point="sim.envs.push_cube:PushCubeEnv",
        max_episode_steps=100,  # 10 s at 10 Hz; the scripted expert needs about 30-60 steps
    )
register_expert(PUSH_CUBE_ID, _push_cube_expert)

import sim.envs.register_tasks  # noqa: E402, F401  (the other tabletop tasks: PickLift, Stack, ...)
import sim.suites  # noqa: E402, F401  (robosuite / metaworld wrappers register their ids)
