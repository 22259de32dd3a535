"""An experiment's collect commands (robopolicy/config/collect_plan.py): train.py names them, one
line to paste, when the experiment's dataset is missing; every recipe's commands are collect.py
command lines that conf/collect.yaml composes."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose as hydra_compose
from hydra import initialize_config_dir
from omegaconf import OmegaConf

from robopolicy.config.collect_plan import COLLECT_PROGRAM, collect_commands, compose
from robopolicy.config.locate import conf_dir, conf_options

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "MUJOCO_GL": "egl", "OMP_NUM_THREADS": "1"}


def compose_collect(arguments: list[str]):
    """conf/collect.yaml with a collect command's arguments, as collect.py composes it."""
    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        return hydra_compose("collect", overrides=arguments)


def env_kwargs(config) -> dict:
    return OmegaConf.to_container(config.task.env_kwargs, resolve=True)


def commands_in(line: str) -> list[list[str]]:
    """The pasted commands of a missing-dataset error: each program and its arguments."""
    pasted = line.split("make one with: ", 1)[1].split(" (in the repository:", 1)[0]
    return [shlex.split(command) for command in pasted.split(" && ")]


def missing_dataset_line(overrides: list[str], tmp_path: Path) -> str:
    """train.py's one error line for ``overrides`` (whose dataset does not exist)."""
    done = subprocess.run(
        [sys.executable, "train.py", *overrides, f"hydra.run.dir={tmp_path / 'run'}"],
        cwd=ROOT,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=180,
    )
    errors = [line for line in done.stderr.splitlines() if line.startswith("train.py: error:")]
    assert done.returncode == 2 and len(errors) == 1, done.stderr[-3000:]
    assert done.stderr.strip().endswith(errors[0]), done.stderr[-3000:]
    return errors[0]


def test_a_missing_dataset_names_both_collect_runs_of_push_cube_dart(tmp_path):
    dataset = tmp_path / "none.zarr"
    line = missing_dataset_line(
        ["+experiment=push_cube_dart", f"task.dataset_path={dataset}"], tmp_path
    )
    assert line.startswith(f"train.py: error: dataset {dataset}: no dataset here; make one with:")
    commands = commands_in(line)
    assert [command[0] for command in commands] == [COLLECT_PROGRAM, COLLECT_PROGRAM]
    clean, dart = (compose_collect(command[1:]) for command in commands)
    for collect in (clean, dart):
        assert collect.out == str(dataset)
        assert collect.task.name == "push_cube" and collect.task.env_kwargs.obs_mode == "state"
        assert collect.store_sim_state is False
    assert (clean.n_episodes, clean.append, clean.seed, clean.injected_noise_std) == (
        2000,
        False,
        0,
        0.0,
    )
    assert (dart.n_episodes, dart.append, dart.seed, dart.injected_noise_std) == (
        1000,
        True,
        50000,
        0.2,
    )
    assert "n_workers=" not in line  # collect.py's own default applies


def test_a_task_config_known_only_to_hydra_is_named_from_its_choice(tmp_path):
    """Meta-World's task name (mw_push-v3) is no task config: Hydra's record of task=metaworld
    is, and the task it plays is a task change."""
    dataset = tmp_path / "mw.zarr"
    line = missing_dataset_line(
        [
            "+experiment=metaworld",
            "task=metaworld",
            "task.env_kwargs.task=push-v3",
            f"task.dataset_path={dataset}",
        ],
        tmp_path,
    )
    (command,) = commands_in(line)
    assert command[:2] == [COLLECT_PROGRAM, "task=metaworld"]
    collect = compose_collect(command[1:])
    assert collect.task.env_id == "metaworld/push-v3" and collect.out == str(dataset)
    assert collect.n_episodes == 100 and collect.store_sim_state is False  # the recipe's


def test_a_recipe_without_collect_gets_one_run_of_collect_defaults():
    config = compose("config", ["+experiment=main_job"])
    assert config.get("collect") is None
    plain = compose("config", ["task=push_cube"])
    (command,) = collect_commands(config, ["task=push_cube"], plain, "demos.zarr")
    defaults, collect = compose_collect([]), compose_collect(command)
    assert collect.n_episodes == defaults.n_episodes  # conf/collect.yaml's default count
    assert collect.n_workers == defaults.n_workers and not collect.append
    assert collect.task.env_kwargs.obs_mode == "state" and collect.out == "demos.zarr"


@pytest.mark.parametrize("experiment", conf_options("experiment"))
def test_every_recipe_gives_collect_commands_that_compose(experiment):
    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        config = hydra_compose(
            "config", overrides=[f"+experiment={experiment}"], return_hydra_config=True
        )
    selection = [f"task={config.hydra.runtime.choices.task}"]
    commands = collect_commands(config, selection, compose("config", selection), "d.zarr", 2)
    composed = [compose_collect(command) for command in commands]
    assert [collect.append for collect in composed] == [False] + [True] * (len(commands) - 1)
    for collect in composed:
        assert collect.task.env_id == config.task.env_id and collect.n_workers == 2
        assert env_kwargs(collect) == env_kwargs(config)  # demos from the env it evaluates in
