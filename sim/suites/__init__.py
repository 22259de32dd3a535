"""Third-party task suites (robosuite, Meta-World) behind our gymnasium interface.

Importing this package registers the gymnasium ids and their scripted experts, and nothing more:
entry points are strings and expert factories import their modules on first call, so neither
robosuite nor metaworld (each a few seconds to import) is loaded until an env is made.

Ids:

- ``robosuite/Lift-v0``, ``robosuite/PickPlaceCan-v0``, ``robosuite/NutAssemblySquare-v0``: the
  robomimic benchmark tasks (Panda, OSC_POSE, 20 Hz, 7-D delta actions), horizon 400 as robomimic
  evaluates them. Observations use robomimic's key names.
- ``metaworld/<task>-v3`` for reach, push, pick-place, drawer-open and button-press-topdown:
  Meta-World MT1 tasks (goal observable), horizon 500 as Meta-World's own limit. A task is offered
  only when its scripted expert meets our bar of 95% success over 100 seeds: door-open is left
  out because Meta-World's own door-open policy succeeds 92/100 here (it gets stuck on the
  handle; a longer horizon does not help).

Both take the kwargs ``cameras``, ``image_size``, ``render_mode``, ``render_camera``,
``render_size``, ``terminate_on_success`` and ``reflections``, and offer ``get_sim_state()`` /
``set_sim_state()`` on the unwrapped env. ``python -m sim.suites.measure_experts ID`` measures an
expert's success rate.
"""

from __future__ import annotations

import importlib

import gymnasium as gym

from sim.experts import register_expert

ROBOSUITE_TASKS = {"Lift": 400, "PickPlaceCan": 400, "NutAssemblySquare": 400}  # name: horizon
METAWORLD_TASKS = (
    "reach-v3",
    "push-v3",
    "pick-place-v3",
    "drawer-open-v3",
    "button-press-topdown-v3",
)
METAWORLD_HORIZON = 500  # Meta-World's max_path_length


def _lazy_expert(module: str, name: str, **kwargs):
    """An expert factory that imports ``sim.suites.<module>`` only when an expert is built."""

    def factory(env, style):
        cls = getattr(importlib.import_module(f"sim.suites.{module}"), name)
        return cls(env, style, **kwargs)

    return factory


def _register() -> None:
    for task, horizon in ROBOSUITE_TASKS.items():
        env_id = f"robosuite/{task}-v0"
        if env_id in gym.registry:
            continue
        gym.register(
            env_id,
            entry_point="sim.suites.robosuite_tasks:RobosuiteEnv",
            max_episode_steps=horizon,
            kwargs={"task": task},
        )
        register_expert(env_id, _lazy_expert("robosuite_experts", f"{task}Expert"))
    for task in METAWORLD_TASKS:
        env_id = f"metaworld/{task}"
        if env_id in gym.registry:
            continue
        gym.register(
            env_id,
            entry_point="sim.suites.metaworld_tasks:MetaWorldEnv",
            max_episode_steps=METAWORLD_HORIZON,
            kwargs={"task": task},
        )
        register_expert(env_id, _lazy_expert("metaworld_experts", "MetaWorldExpert"))


_register()
