"""The task an RL fine-tuning run trains and evaluates on: its base checkpoint's.

``python train.py algo=dppo checkpoint=PATH`` fine-tunes the policy in PATH on the task it was
trained on. The checkpoint's resolved config holds that task (``config.task``: env id, kwargs,
fps, time limit); it replaces the composed task, and every ``task.*`` override of the command
line is applied on top of it (``task.env_kwargs.obs_mode=state``). A key the composed default
task (PushCube) lacks is added with ``+`` (``+task.env_kwargs.required_side=left``), or the
checkpoint's task is named (``task=around_obstacle task.env_kwargs.required_side=left``).
Naming a task of another env stops the run in one line, as does a checkpoint of another env
that records no task config (the composed task is then used as it is).
"""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from robopolicy.config.checks import ConfigError
from robopolicy.config.run import TaskConfig
from robopolicy.training.checkpoint import read_checkpoint_header


def adopt_base_task(cfg: DictConfig, command_line: list[str]) -> None:
    """Set ``cfg.task`` to the base checkpoint's task (module docstring); ``command_line`` is
    the run's overrides as Hydra received them. Behaviour cloning runs are left as they are."""
    source = cfg.get("resume") or cfg.get("checkpoint")
    if cfg.algo.name == "bc" or not source:
        return
    header = read_checkpoint_header(source)
    base_env = (header.get("env_spec") or {}).get("id")
    base_task = (header.get("config") or {}).get("task") or {}
    key = "resume" if cfg.get("resume") else "checkpoint"
    if base_env and base_env != cfg.task.env_id:
        if _chooses_task_group(command_line):
            expected = (
                f"{key}={source} was trained on {base_env}; leave task= out to fine-tune on it"
            )
            raise ConfigError("task.env_id", cfg.task.env_id, expected)
        if "env_id" not in base_task:
            expected = (
                f"{key}={source} was trained on {base_env} and records no task config; "
                "name that task with task=<name>"
            )
            raise ConfigError("task.env_id", cfg.task.env_id, expected)
    if "env_id" not in base_task:
        return
    try:
        task = OmegaConf.merge(OmegaConf.structured(TaskConfig), base_task)
    except OmegaConfBaseException as error:
        raise ConfigError(key, source, f"its task config does not load here ({error})") from None
    cfg.task = _with_task_overrides(task, cfg, command_line)


def _chooses_task_group(command_line: list[str]) -> bool:
    return any(_override_key(item) == "task" for item in command_line)


def _override_key(item: str) -> str:
    return item.split("=", 1)[0].lstrip("+~")


def _with_task_overrides(task: DictConfig, cfg: DictConfig, command_line: list[str]) -> Any:
    """``task`` with each ``task.*`` override of the command line: its value as Hydra parsed it
    into ``cfg``, or removed for ``~task.key``."""
    for item in command_line:
        key = _override_key(item)
        if not key.startswith("task."):
            continue
        inner = key.removeprefix("task.")
        if item.startswith("~"):
            parent, _, leaf = inner.rpartition(".")
            node = OmegaConf.select(task, parent) if parent else task
            if isinstance(node, DictConfig) and leaf in node:
                del node[leaf]
            continue
        OmegaConf.update(task, inner, OmegaConf.select(cfg, key), force_add=True)
    return task
