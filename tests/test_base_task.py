"""RL fine-tuning runs take their task from the base checkpoint (robopolicy/rl/base_task.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from robopolicy.config import ConfigError
from robopolicy.rl.base_task import adopt_base_task
from robopolicy.training.checkpoint import read_checkpoint_header, save_checkpoint

CONF = str(Path(__file__).resolve().parents[1] / "conf")


def _compose(overrides: list[str]):
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        return compose(config_name="config", overrides=overrides)


@pytest.fixture
def around_obstacle_checkpoint(tmp_path) -> Path:
    """A checkpoint header as a BC run on AroundObstacle writes it (no weights are needed)."""
    task = OmegaConf.to_container(_compose(["task=around_obstacle"]).task, resolve=True)
    env_spec = {"id": task["env_id"], "kwargs": task["env_kwargs"]}
    path = tmp_path / "base.safetensors"
    save_checkpoint(path, {"config": {"task": task}, "env_spec": env_spec, "step": 3})
    return path


def test_the_header_is_read_without_the_tensors(around_obstacle_checkpoint):
    header = read_checkpoint_header(around_obstacle_checkpoint)
    assert header["env_spec"]["id"] == "robopolicy/AroundObstacle-v0" and header["step"] == 3


def test_an_rl_run_takes_the_checkpoints_task_with_the_command_lines_task_overrides(
    around_obstacle_checkpoint,
):
    overrides = [
        "algo=dsrl",
        f"checkpoint={around_obstacle_checkpoint}",
        "task.env_kwargs.obs_mode=state",
        "+task.env_kwargs.required_side=left",
        "~task.env_kwargs.cameras",
        "task.max_episode_steps=90",
    ]
    cfg = _compose(overrides)
    assert cfg.task.env_id == "robopolicy/PushCube-v0"  # the composed default
    adopt_base_task(cfg, overrides)
    assert cfg.task.env_id == "robopolicy/AroundObstacle-v0" and cfg.task.name == "around_obstacle"
    kwargs = cfg.task.env_kwargs
    assert kwargs.obs_mode == "state" and kwargs.required_side == "left"
    assert "cameras" not in kwargs and kwargs.expert_left_prob == 0.5
    assert cfg.task.max_episode_steps == 90


def test_naming_another_task_than_the_checkpoints_stops_the_run(around_obstacle_checkpoint):
    overrides = ["algo=dppo", f"checkpoint={around_obstacle_checkpoint}", "task=pick_lift"]
    cfg = _compose(overrides)
    with pytest.raises(ConfigError, match="was trained on robopolicy/AroundObstacle-v0"):
        adopt_base_task(cfg, overrides)
    same = [
        "algo=dppo",
        f"checkpoint={around_obstacle_checkpoint}",
        "task=around_obstacle",
        "task.env_kwargs.required_side=right",  # a key of that task: no + needed
    ]
    cfg = _compose(same)
    adopt_base_task(cfg, same)  # the checkpoint's own task, named: its config, the overrides
    assert cfg.task.env_kwargs.required_side == "right" and cfg.task.env_kwargs.obs_mode == "rgb"


def test_behaviour_cloning_keeps_the_composed_task(around_obstacle_checkpoint):
    overrides = [f"checkpoint={around_obstacle_checkpoint}"]
    cfg = _compose(overrides)
    adopt_base_task(cfg, overrides)
    assert cfg.task.env_id == "robopolicy/PushCube-v0"
