"""``validate``: the start-up check of a composed config, run by train.py, eval.py and
datasets/collect.py before any dataset, env or model work.

Hydra has already checked the types while composing (the schemas are structured configs). Here:

1. no key was added to a schema node with ``+key=value`` (Hydra allows it; the key would be
   ignored);
2. every interpolation resolves and no mandatory value (``???``) is left unset;
3. every node's ``check()`` holds, a node's parts before the node: ranges, choices and
   cross-field rules, each failure one ``ConfigError`` line ``<key>=<value>: <what is
   expected>`` with the key from the root.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from robopolicy.config.checks import ConfigError
from robopolicy.config.errors import config_error
from robopolicy.config.run import TrainConfig


def validate(cfg: DictConfig) -> Any:
    """Check ``cfg`` (module doc); return it as its schema's dataclass, or raise ConfigError."""
    _check_keys(cfg, "")
    if OmegaConf.get_type(cfg) is TrainConfig:
        _check_obs(cfg)
    try:
        config = OmegaConf.to_object(cfg)
    except OmegaConfBaseException as error:
        raise config_error(error) from None
    _check_tree(config, cfg, "")
    return config


def _check_keys(node: DictConfig, path: str) -> None:
    """Raise for a key of a schema node that the schema does not declare."""
    schema = OmegaConf.get_type(node)
    declared = [f.name for f in dataclasses.fields(schema)] if _is_schema(schema) else None
    for key in node:
        where = f"{path}.{key}" if path else str(key)
        if declared is not None and key not in declared:
            value = OmegaConf.to_container(node, resolve=False)[key]
            raise ConfigError(where, value, f"no such key; expected one of {', '.join(declared)}")
        if OmegaConf.is_missing(node, key) or OmegaConf.is_interpolation(node, key):
            continue
        child = node[key]
        if isinstance(child, DictConfig):
            _check_keys(child, where)


def _check_obs(cfg: DictConfig) -> None:
    """``obs`` names one of the task's observation-key sets (``obs_keys`` interpolates it)."""
    sets = list(cfg.task.obs_keys)
    if OmegaConf.is_interpolation(cfg, "obs_keys") and cfg.obs not in sets:
        raise ConfigError(
            "obs", cfg.obs, f"expected one of the task's observation-key sets: {', '.join(sets)}"
        )


def _check_tree(node: Any, source: DictConfig, path: str) -> None:
    """Every schema node below ``node`` checked, then ``node.check()`` (its cross-field rules
    may rely on its parts); ``source`` is ``node``'s config, where a node that only interpolates
    another (``${backbone.kwargs}``) is skipped: it is checked where it is defined."""
    for field in dataclasses.fields(node):
        child = getattr(node, field.name)
        if _is_schema(type(child)) and not OmegaConf.is_interpolation(source, field.name):
            where = f"{path}.{field.name}" if path else field.name
            _check_tree(child, source[field.name], where)
    check = getattr(node, "check", None)
    if check is not None:
        try:
            check()
        except ConfigError as error:
            raise error.under(path) from None


def _is_schema(cls: Any) -> bool:
    return isinstance(cls, type) and dataclasses.is_dataclass(cls)
