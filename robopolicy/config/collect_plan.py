"""How an experiment's demonstrations are made: its ``collect`` key as collect.py commands.

An experiment config (conf/experiment/<name>.yaml) may carry a top-level ``collect`` key (the
contract: bench/suite.py's docstring), one run or a list of runs made in order into the same
dataset::

    collect:
      - n_episodes: 2000                  # successful demos (absent: the caller's default)
        overrides: [store_sim_state=false]  # more collect.py overrides (conf/collect.yaml)
      - n_episodes: 1000
        overrides: [seed=50000, injected_noise_std=0.2]

``collect_commands`` turns it into collect.py's argument lists: bench/suite.py runs them when a
recipe's dataset is absent, and train.py names them, ready to paste, when it finds no dataset
(``missing_dataset_hint``).
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from robopolicy.config.checks import ConfigError
from robopolicy.config.collect import CollectConfig
from robopolicy.config.locate import conf_dir, conf_options

EXCLUDED_TASK_KEYS = ("name", "dataset_path", "obs_keys")  # task.* keys never passed to collect
DEFAULT_N_EPISODES: int = CollectConfig.n_episodes  # a run that names no count: collect.py's own
COLLECT_PROGRAM = "robopolicy-collect"  # the console script (pyproject.toml) a hint names


class RecipeError(ConfigError):
    """A recipe's ``collect`` key does not follow the contract in bench/suite.py's docstring."""


@dataclass(frozen=True)
class CollectionRun:
    n_episodes: int  # successful demos this collect.py call writes
    overrides: tuple[str, ...] = ()  # its own collect.py overrides


def compose(config_name: str, overrides: list[str], conf: Path | None = None):
    """``<conf>/<config_name>.yaml`` with ``overrides`` as Hydra composes it (``conf``: the
    config tree ``conf_dir()`` finds); inside a running Hydra program (train.py), whose tree is
    that one, through the program's own Hydra."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    if conf is None and GlobalHydra.instance().is_initialized():
        return hydra_compose(config_name, overrides=overrides)
    tree = str(Path(conf or conf_dir()).resolve())
    with initialize_config_dir(config_dir=tree, version_base="1.3"):
        return hydra_compose(config_name, overrides=overrides)


def collection_run(spec: Any, default_n_episodes: int, where: str) -> CollectionRun:
    if not isinstance(spec, dict):
        raise RecipeError(where, spec, "expected a mapping of n_episodes and overrides")
    unknown = sorted(set(spec) - {"n_episodes", "overrides"})
    if unknown:
        raise RecipeError.line(f"{where}: unknown key(s) {unknown}; expected n_episodes, overrides")
    n_episodes = spec.get("n_episodes", default_n_episodes)
    if isinstance(n_episodes, bool) or not isinstance(n_episodes, int) or n_episodes < 1:
        raise RecipeError(f"{where}.n_episodes", n_episodes, "expected an integer >= 1")
    overrides = spec.get("overrides") or []
    if not isinstance(overrides, list) or not all(isinstance(o, str) for o in overrides):
        raise RecipeError(f"{where}.overrides", overrides, "expected a list of override strings")
    return CollectionRun(n_episodes, tuple(overrides))


def collection_plan(config: Any, default_n_episodes: int) -> list[CollectionRun]:
    """The collect.py runs that make a recipe's demos, from its ``collect`` key (a mapping, or
    a list of mappings); one run of ``default_n_episodes`` when the recipe has no such key."""
    from omegaconf import OmegaConf

    spec = config.get("collect")
    if spec is None:
        return [CollectionRun(default_n_episodes)]
    if OmegaConf.is_config(spec):
        spec = OmegaConf.to_container(spec, resolve=True)
    if isinstance(spec, list):
        if not spec:
            raise RecipeError("collect", [], "expected at least one run")
        return [
            collection_run(run, default_n_episodes, f"collect[{index}]")
            for index, run in enumerate(spec)
        ]
    return [collection_run(spec, default_n_episodes, "collect")]


def _flatten(node: dict, prefix: str) -> dict[str, Any]:
    leaves: dict[str, Any] = {}
    for key, value in node.items():
        path = f"{prefix}.{key}"
        if isinstance(value, dict) and value:
            leaves.update(_flatten(value, path))
        else:
            leaves[path] = value
    return leaves


def task_changes(recipe_config, plain_config) -> list[str]:
    """The ``task.*`` values the recipe changes from its task config, as collect.py overrides
    (JSON values, which Hydra's override grammar reads; a key new to the task gets ``+``)."""
    from omegaconf import OmegaConf

    def leaves(config) -> dict[str, Any]:
        task = OmegaConf.to_container(config.task, resolve=True)
        kept = {key: value for key, value in task.items() if key not in EXCLUDED_TASK_KEYS}
        return _flatten(kept, "task")

    recipe, plain = leaves(recipe_config), leaves(plain_config)
    return [
        f"{'' if key in plain else '+'}{key}={json.dumps(value)}"
        for key, value in recipe.items()
        if key not in plain or plain[key] != value
    ]


def collect_commands(
    config,
    task_selection: list[str],
    plain_task_config,
    out: str | Path,
    n_workers: int | None = None,
    default_n_episodes: int = DEFAULT_N_EPISODES,
) -> list[list[str]]:
    """collect.py's argument lists that make ``config``'s dataset at ``out``, in order: each has
    ``task_selection`` (``task=<task config>`` and any overrides that pick the task), every
    ``task.*`` value the recipe changes from ``plain_task_config`` (that selection composed
    alone), ``n_episodes``, ``n_workers`` (``None``: collect.py's default), ``out``,
    ``append=true`` for every run after the first, then the run's own overrides."""
    changes = task_changes(config, plain_task_config)
    workers = [] if n_workers is None else [f"n_workers={n_workers}"]
    return [
        [
            *task_selection,
            *changes,
            f"n_episodes={run.n_episodes}",
            *workers,
            f"out={out}",
            *(["append=true"] if index else []),
            *run.overrides,
        ]
        for index, run in enumerate(collection_plan(config, default_n_episodes))
    ]


def task_config_name(cfg) -> str | None:
    """The conf/task/ config ``cfg``'s task came from: ``task.name`` where a task config has that
    name, else the choice Hydra recorded in a running program; None when neither tells."""
    from hydra.core.hydra_config import HydraConfig

    name = str(cfg.task.name)
    if name in conf_options("task"):
        return name
    if HydraConfig.initialized():
        return HydraConfig.get().runtime.choices.get("task")
    return None


def missing_dataset_hint(cfg) -> str:
    """What makes train.py's missing dataset (``cfg.task.dataset_path``): the collect commands
    of its recipe, one line joined with `` && `` to paste."""
    elsewhere = "(in the repository: python datasets/collect.py)"
    name = task_config_name(cfg)
    if name is None:
        return f"make one with: {COLLECT_PROGRAM} task=<task config> {elsewhere}"
    selection = [f"task={name}"]
    try:
        commands = collect_commands(
            cfg, selection, compose("config", selection), cfg.task.dataset_path
        )
    except RecipeError as error:
        return f"the recipe's collect key cannot make one: {error}"
    pasted = " && ".join(shlex.join([COLLECT_PROGRAM, *command]) for command in commands)
    return f"make one with: {pasted} {elsewhere}"
