"""Third-party task suites (robosuite, Meta-World) behind our gymnasium interface.

Importing this package registers the gymnasium ids and their scripted experts, and nothing more:
entry points are strings and expert factories import their modules on first call, so neither
robosuite nor metaworld (each a few seconds to import) is loaded until an env is made.

Ids:

- ``robosuite/Lift-v0``, ``robosuite/PickPlaceCan-v0``, ``robosuite/NutAssemblySquare-v0``: the
  robomimic benchmark tasks (Panda, OSC_POSE, 20 Hz, 7-D delta actions), horizon 400 as robomimic
  evaluates them. Observations use robomimic's key names.
- ``metaworld/<task>-v3`` for every Meta-World v3 task (all 50, ``METAWORLD_TASKS``): MT1 tasks
  (goal observable), horizon 500 as Meta-World's own limit, each with Meta-World's own scripted
  policy as its expert. Some of those policies succeed less than 95% of the time here (door-open
  gets stuck on the handle, for one): bench/results/metaworld_experts.json has every task's
  rate and docs/metaworld.md lists the ones below 95%. collect.py keeps successful episodes only,
  so collecting from a weak expert needs a larger ``max_failures``.

Both take the kwargs ``cameras``, ``obs_mode`` (``rgb``: render ``cameras``; ``state``: render
none, as for our own tasks), ``image_size``, ``render_mode``, ``render_camera``, ``render_size``,
``terminate_on_success`` and ``reflections``, and offer ``get_sim_state()`` /
``set_sim_state()`` on the unwrapped env. ``python -m sim.suites.measure_experts ID`` measures an
expert's success rate.
"""

from __future__ import annotations

import importlib

import gymnasium as gym

from sim.experts import register_expert

ROBOSUITE_TASKS = {"Lift": 400, "PickPlaceCan": 400, "NutAssemblySquare": 400}  # name: horizon
# Every Meta-World v3 task (metaworld.env_dict.ALL_V3_ENVIRONMENTS, here so that registering
# the ids does not import metaworld; tests/test_metaworld_by_name.py checks the two agree).
METAWORLD_TASKS = (
    "assembly-v3",
    "basketball-v3",
    "bin-picking-v3",
    "box-close-v3",
    "button-press-topdown-v3",
    "button-press-topdown-wall-v3",
    "button-press-v3",
    "button-press-wall-v3",
    "coffee-button-v3",
    "coffee-pull-v3",
    "coffee-push-v3",
    "dial-turn-v3",
    "disassemble-v3",
    "door-close-v3",
    "door-lock-v3",
    "door-open-v3",
    "door-unlock-v3",
    "drawer-close-v3",
    "drawer-open-v3",
    "faucet-close-v3",
    "faucet-open-v3",
    "hammer-v3",
    "hand-insert-v3",
    "handle-press-side-v3",
    "handle-press-v3",
    "handle-pull-side-v3",
    "handle-pull-v3",
    "lever-pull-v3",
    "peg-insert-side-v3",
    "peg-unplug-side-v3",
    "pick-out-of-hole-v3",
    "pick-place-v3",
    "pick-place-wall-v3",
    "plate-slide-back-side-v3",
    "plate-slide-back-v3",
    "plate-slide-side-v3",
    "plate-slide-v3",
    "push-back-v3",
    "push-v3",
    "push-wall-v3",
    "reach-v3",
    "reach-wall-v3",
    "shelf-place-v3",
    "soccer-v3",
    "stick-pull-v3",
    "stick-push-v3",
    "sweep-into-v3",
    "sweep-v3",
    "window-close-v3",
    "window-open-v3",
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
