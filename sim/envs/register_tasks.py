"""Registers the PushT, PickLift, Stack and AroundObstacle tasks and their scripted experts.

Entry points are strings and expert factories import their modules when called, so importing
this module imports neither MuJoCo nor the env classes.
"""

from __future__ import annotations

import importlib

import gymnasium as gym

from sim.experts import TeleopStyle, register_expert

# env id -> (env entry point, expert "module:class", time limit in policy steps at 10 Hz)
TASKS = {
    "robopolicy/PushT-v0": (
        "sim.envs.push_t:PushTEnv",
        "sim.envs.push_t_expert:PushTExpert",
        300,  # as in the original benchmark (30 s); the expert needs 75-90 steps on average
    ),
    "robopolicy/PickLift-v0": (
        "sim.envs.pick_lift:PickLiftEnv",
        "sim.envs.pick_lift_expert:PickLiftExpert",
        100,  # the expert needs about 16-18 steps
    ),
    "robopolicy/Stack-v0": (
        "sim.envs.stack:StackEnv",
        "sim.envs.stack_expert:StackExpert",
        200,  # the expert needs about 25-30 steps
    ),
    "robopolicy/AroundObstacle-v0": (
        "sim.envs.multimodal:AroundObstacleEnv",
        "sim.envs.multimodal_expert:AroundObstacleExpert",
        150,  # the expert needs about 30-35 steps
    ),
}


def _lazy_expert(target: str):
    def factory(env: gym.Env, style: TeleopStyle):
        module, name = target.split(":")
        return getattr(importlib.import_module(module), name)(env, style)

    return factory


for _env_id, (_entry_point, _expert, _max_steps) in TASKS.items():
    if _env_id not in gym.registry:
        gym.register(id=_env_id, entry_point=_entry_point, max_episode_steps=_max_steps)
    register_expert(_env_id, _lazy_expert(_expert))
