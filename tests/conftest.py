"""Shared pytest setup: headless MuJoCo rendering and the tests folder on sys.path for helpers."""

import os
import subprocess
import sys

import pytest

os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("PYOPENGL_PLATFORM", os.environ["MUJOCO_GL"])
sys.path.insert(0, os.path.dirname(__file__))


@pytest.fixture(scope="session")
def pushcube_state_demos(tmp_path_factory):
    """100 state-only PushCube demonstrations from the scripted expert (seeds 0-99), made once
    per test session with datasets/collect.py, so RL tests see the same data on every machine
    (a fresh CI clone has no datasets/data/)."""
    return _collect_state_demos(tmp_path_factory, "push_cube", 100, n_workers=2)


@pytest.fixture(scope="session")
def pushcube_state_demos_few(tmp_path_factory):
    """12 such demonstrations, for tests that train a base policy for a few steps on 10 episodes
    and need no more: one worker (no process start-up), ~5 s instead of the 100's ~15 s."""
    return _collect_state_demos(tmp_path_factory, "push_cube", 12, n_workers=1)


@pytest.fixture(scope="session")
def around_obstacle_state_demos(tmp_path_factory):
    """100 state-only AroundObstacle demonstrations (seeds 0-99), both sides of the post, for
    the DSRL test that steers a two-mode base to one side (~15 s)."""
    return _collect_state_demos(tmp_path_factory, "around_obstacle", 100, n_workers=2)


def _collect_state_demos(tmp_path_factory, task: str, n_episodes: int, n_workers: int):
    out = tmp_path_factory.mktemp(task) / f"{task}_state.zarr"
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    done = subprocess.run(
        [
            sys.executable,
            "datasets/collect.py",
            f"task={task}",
            f"n_episodes={n_episodes}",
            f"n_workers={n_workers}",
            "task.env_kwargs.obs_mode=state",
            "store_sim_state=false",
            f"out={out}",
            f"hydra.run.dir={out.parent / 'collect'}",
        ],
        cwd=repo,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return out
