"""How bench/suite.py reads a recipe: composing it, its dataset and the settings it reports.

The contract a recipe follows is in bench/suite.py's docstring; its collection plan and the
collect.py commands it makes are robopolicy/config/collect_plan.py's (train.py names the same
commands when a dataset is missing).
"""

from __future__ import annotations

from pathlib import Path

from robopolicy.config import collect_plan
from robopolicy.config.locate import conf_dir

ROOT = Path(__file__).resolve().parents[1]
CONF_DIR = conf_dir()


def compose(overrides: list[str], conf_dir: Path = CONF_DIR):
    """train.py's config (conf/config.yaml) with ``overrides``, as Hydra composes it."""
    return collect_plan.compose("config", overrides, conf_dir)


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
