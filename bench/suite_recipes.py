"""How bench/suite.py reads a recipe: composing it, its collection plan, its task changes.

The contract a recipe follows is in bench/suite.py's docstring; this module implements it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from robopolicy.config.locate import conf_dir

ROOT = Path(__file__).resolve().parents[1]
CONF_DIR = conf_dir()
EXCLUDED_TASK_KEYS = ("name", "dataset_path", "obs_keys")  # task.* keys never passed to collect


class RecipeError(ValueError):
    """A recipe's ``collect`` key does not follow the contract in bench/suite.py's docstring."""


def compose(overrides: list[str], conf_dir: Path = CONF_DIR):
    """train.py's config (conf/config.yaml) with ``overrides``, as Hydra composes it."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    with initialize_config_dir(config_dir=str(Path(conf_dir).resolve()), version_base="1.3"):
        return hydra_compose("config", overrides=overrides)


@dataclass(frozen=True)
class CollectionRun:
    n_episodes: int  # successful demos this collect.py call writes
    overrides: tuple[str, ...] = ()  # its own collect.py overrides


def collection_run(spec: Any, default_n_episodes: int, where: str) -> CollectionRun:
    if not isinstance(spec, dict):
        raise RecipeError(f"{where}: expected a mapping of n_episodes and overrides, got {spec!r}")
    unknown = sorted(set(spec) - {"n_episodes", "overrides"})
    if unknown:
        raise RecipeError(f"{where}: unknown key(s) {unknown}; expected n_episodes, overrides")
    n_episodes = spec.get("n_episodes", default_n_episodes)
    if isinstance(n_episodes, bool) or not isinstance(n_episodes, int) or n_episodes < 1:
        raise RecipeError(f"{where}.n_episodes={n_episodes!r}: expected an integer >= 1")
    overrides = spec.get("overrides") or []
    if not isinstance(overrides, list) or not all(isinstance(o, str) for o in overrides):
        raise RecipeError(f"{where}.overrides={overrides!r}: expected a list of override strings")
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
            raise RecipeError("collect: an empty list; give at least one run")
        return [
            collection_run(run, default_n_episodes, f"collect[{index}]")
            for index, run in enumerate(spec)
        ]
    return [collection_run(spec, default_n_episodes, "collect")]


def flatten(node: dict, prefix: str) -> dict[str, Any]:
    leaves: dict[str, Any] = {}
    for key, value in node.items():
        path = f"{prefix}.{key}"
        if isinstance(value, dict) and value:
            leaves.update(flatten(value, path))
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
        return flatten(kept, "task")

    recipe, plain = leaves(recipe_config), leaves(plain_config)
    return [
        f"{'' if key in plain else '+'}{key}={json.dumps(value)}"
        for key, value in recipe.items()
        if key not in plain or plain[key] != value
    ]


def dataset_path(config) -> Path:
    path = Path(str(config.task.dataset_path))
    return path if path.is_absolute() else ROOT / path


def staging_path(dataset: Path) -> Path:
    """Where collection writes before the dataset is complete: ``<stem>.incomplete.zarr``."""
    name = dataset.name
    for suffix in (".zarr.zip", ".zarr"):
        if name.endswith(suffix):
            return dataset.with_name(name.removesuffix(suffix) + ".incomplete" + suffix)
    return dataset.with_name(name + ".incomplete")


def recipe_settings(config, dataset: Path) -> dict:
    """What the recipe chose (for the results table), and the demos the dataset holds."""
    args = config.policy.args
    n_demos = None
    if dataset.exists():
        from robopolicy.data import ReplayBuffer

        n_demos = ReplayBuffer.open(dataset).n_episodes
    return {
        "policy": str(config.policy.kind),
        "backbone": str(config.backbone.name),
        "horizon": int(args.horizon),
        "n_obs_steps": int(args.n_obs_steps),
        "n_action_steps": int(args.n_action_steps),
        "num_steps": int(config.algo.num_steps),
        "obs_keys": [str(key) for key in config.obs_keys],
        "dataset": relative(dataset),
        "n_demos": n_demos,
    }


def relative(path: Path) -> str:
    resolved = Path(path).resolve()
    return str(resolved.relative_to(ROOT) if resolved.is_relative_to(ROOT) else resolved)
