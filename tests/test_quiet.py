"""Quiet by default (robopolicy/utils/quiet.py): robosuite's, PyOpenGL's and Meta-World's
warnings and INFO lines stay off the terminal unless ``verbose=true``, in the program's process
and in its worker processes; robopolicy's own messages and warnings always show."""

from __future__ import annotations

import logging
import multiprocessing
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from robopolicy.utils.quiet import VERBOSE_VARIABLE, inheriting, set_verbosity, verbose_requested

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "MUJOCO_GL": "egl"}
NOISE = ("[robosuite", "[OpenGL")  # how each third-party line measured starts: "[robosuite
#   WARNING] ..." (robosuite's own handler, stderr), "[robosuite_logs] ..." and
#   "[OpenGL.acceleratesupport] ..." (the program's console handler, stdout)
LIFT_DEMO = (  # one state-only robosuite Lift demonstration (about 10 s)
    "task=robosuite_lift",
    "n_episodes=1",
    "task.env_kwargs.cameras=[]",
    "task.env_kwargs.obs_mode=state",
    "store_sim_state=false",
)
CONTROLLER_INFO = "Loading controller configuration from"  # robosuite INFO line, each env built


def _run(*args: str) -> subprocess.CompletedProcess:
    done = subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, f"{args[0]} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


def _noise(done: subprocess.CompletedProcess) -> list[str]:
    """The lines of stdout and stderr that come from robosuite or PyOpenGL."""
    return [line for line in (done.stdout + done.stderr).splitlines() if line.startswith(NOISE)]


@pytest.fixture(scope="module")
def lift_demo(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """The demonstration, collected by datasets/collect.py at its defaults (quiet)."""
    out = tmp_path_factory.mktemp("lift") / "lift.zarr"
    done = _run("datasets/collect.py", *LIFT_DEMO, f"out={out}", f"hydra.run.dir={out}.run")
    return out, done


@pytest.mark.parametrize("program", ["eval.py", "train.py", "datasets/collect.py"])
def test_help_prints_no_third_party_lines(program):
    done = _run(program, "--help")
    assert done.stdout.startswith(f"usage: {Path(program).name} ")
    assert _noise(done) == [] and done.stderr == ""


def test_eval_help_names_the_results_file():
    done = _run("eval.py", "--help")
    assert "eval.json goes to the run directory" in " ".join(done.stdout.split())
    assert "results.json" not in done.stdout


def test_a_robosuite_collect_prints_no_third_party_lines(lift_demo):
    out, done = lift_demo
    assert _noise(done) == [], done.stdout + done.stderr  # neither this process nor its worker
    assert f"[collect] wrote 1 episodes (0 failed attempts discarded) to {out}" in done.stdout


def test_verbose_shows_robosuite_lines(tmp_path):
    out = tmp_path / "lift.zarr"
    run_dir = f"hydra.run.dir={tmp_path}"
    done = _run("datasets/collect.py", *LIFT_DEMO, f"out={out}", run_dir, "verbose=true")
    assert f"[robosuite INFO] {CONTROLLER_INFO}" in done.stderr  # robosuite's own handler
    assert f"[robosuite_logs] {CONTROLLER_INFO}" in done.stdout  # the program's console
    assert f"[collect] wrote 1 episodes (0 failed attempts discarded) to {out}" in done.stdout


def test_robopolicy_warnings_show_when_quiet(lift_demo, tmp_path):
    """train.py warns when a chunk longer than the episodes' ends leaves steps never trained
    on (robopolicy/algos/bc.py); robosuite, built for the final evaluation, stays silent."""
    dataset, _ = lift_demo
    done = _run(
        "train.py",
        "task=robosuite_lift",
        f"task.dataset_path={dataset}",
        "task.env_kwargs.cameras=[]",
        "task.env_kwargs.obs_mode=state",
        "obs=state",
        "backbone=mlp",
        "backbone.kwargs.hidden_dims=[32,32]",
        "policy.args.horizon=16",
        "data.end_padding=action_steps",  # the last 14 steps of the episode: never conditioned on
        "algo.num_steps=2",
        "algo.warmup_steps=1",
        "algo.eval_every=0",
        "data.batch_size=4",
        "eval.n_episodes=1",
        "eval.n_envs=1",
        "eval.video_episodes=0",
        "task.max_episode_steps=4",
        "torch_threads=1",
        "logger=none",
        f"hydra.run.dir={tmp_path}",
    )
    assert "[train] WARNING: only " in done.stdout
    assert "[train] final evaluation: " in done.stdout
    assert _noise(done) == [], done.stdout + done.stderr


@pytest.mark.parametrize(
    "argv, verbose",
    [
        ([], False),
        (["verbose=true"], True),
        (["task=push_cube", "verbose=True"], True),
        (["++verbose=yes"], True),
        (["verbose=false"], False),
        (["verbose=true", "verbose=false"], False),  # the last one counts, as in Hydra
        (["task.env_kwargs.verbose=true"], False),  # another key's
    ],
)
def test_verbose_is_read_from_the_command_line(argv, verbose):
    assert verbose_requested(argv) is verbose


def test_quiet_drops_third_party_records_below_error_only(caplog, monkeypatch):
    monkeypatch.setenv(VERBOSE_VARIABLE, "1")  # restored after the test
    names = ("robosuite_logs", "OpenGL.acceleratesupport", "train")
    robosuite, opengl, ours = (logging.getLogger(name) for name in names)
    metaworld = "metaworld.policies.policy"
    try:
        with caplog.at_level(logging.INFO), warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            set_verbosity(False)  # twice, as a program does: at start and with its config
            set_verbosity(False)
            assert os.environ[VERBOSE_VARIABLE] == "0"  # what its worker processes inherit
            robosuite.warning("third-party warning")
            opengl.info("third-party info")
            robosuite.error("third-party error")
            ours.warning("our warning")
            for module in (metaworld, "robopolicy.algos.bc"):
                warnings.warn_explicit(f"from {module}", UserWarning, "x.py", 1, module=module)
            set_verbosity(True)
            robosuite.warning("third-party warning, verbose")
            warnings.warn_explicit(
                "from metaworld, verbose", UserWarning, "x.py", 2, module=metaworld
            )
    finally:
        set_verbosity(True)
    shown = [(record.name, record.getMessage()) for record in caplog.records]
    assert shown == [
        ("robosuite_logs", "third-party error"),
        ("train", "our warning"),
        ("robosuite_logs", "third-party warning, verbose"),
    ]
    assert [str(warning.message) for warning in caught] == [
        "from robopolicy.algos.bc",
        "from metaworld, verbose",
    ]


def _drops_robosuite_warnings() -> bool:
    """Whether this process drops a warning of robosuite's logger."""
    record = logging.makeLogRecord({"name": "robosuite_logs", "levelno": logging.WARNING})
    return not logging.getLogger("robosuite_logs").filter(record)


@pytest.mark.parametrize("verbose", [False, True])
def test_worker_processes_inherit_the_programs_choice(monkeypatch, verbose):
    """A spawned process starts unfiltered; its entry point wrapped by ``inheriting`` (the
    collect pool's initializer, a vector env's factory) applies the choice the program made."""
    monkeypatch.setenv(VERBOSE_VARIABLE, "1" if verbose else "0")  # set_verbosity(verbose)
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        assert pool.apply(_drops_robosuite_warnings) is False
        assert pool.apply(inheriting(_drops_robosuite_warnings)) is not verbose
