"""Multirun sweeps (``train.py -m``): jobs through hydra-submitit-launcher's local executor (the
same path as SLURM), one bad job among good ones, and resume inside a sweep."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra.conf import HydraConf
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import OmegaConf
from tiny_runs import TINY_TRAINING

from robopolicy.utils.run_dir import continue_in, jobs_continuing

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "MUJOCO_GL": "egl", "OMP_NUM_THREADS": "1"}
TINY_SWEEP = [*TINY_TRAINING, "progress=false", "eval.video_episodes=0"]


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=600
    )


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("sweep") / "push.zarr"
    collected = _run(
        "datasets/collect.py",
        "n_episodes=4",
        f"out={path}",
        "task.env_kwargs.obs_mode=state",
        f"hydra.run.dir={path.parent / 'collect'}",
    )
    assert collected.returncode == 0, collected.stderr[-3000:]
    return path


def _finished(run_dir: Path) -> dict:
    """The final evaluation of a run that trained to its last step in ``run_dir``."""
    assert (run_dir / "checkpoints" / "latest.safetensors").is_file(), sorted(run_dir.iterdir())
    steps = [json.loads(line).get("step") for line in (run_dir / "metrics.jsonl").open()]
    assert max(step for step in steps if step is not None) == 20
    return json.loads((run_dir / "eval.json").read_text())


@pytest.mark.slow
def test_a_two_seed_sweep_runs_each_job_through_submitit_to_its_own_finished_run(dataset, tmp_path):
    sweep = tmp_path / "sweep"
    done = _run(
        "train.py",
        "-m",
        "hydra/launcher=local",
        "seed=0,1",
        f"task.dataset_path={dataset}",
        *TINY_SWEEP,
        f"hydra.sweep.dir={sweep}",
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Submitit 'local' sweep output dir" in done.stdout + done.stderr
    runs = {seed: sweep / f"{seed}_push_cube_diffusion_seed{seed}" for seed in (0, 1)}
    for seed, run_dir in runs.items():
        assert _finished(run_dir)["n_episodes"] == 2
        assert OmegaConf.load(run_dir / ".hydra" / "config.yaml").seed == seed
    # each job ran in a process of its own, started by submitit: its pickled job, its result
    # and its output (the job's own log lines, naming its run directory) under .submitit/<id>/
    jobs = sorted(path for path in (sweep / ".submitit").iterdir() if path.name.isdigit())
    assert len(jobs) == 2
    logged = []
    for job in jobs:
        assert (job / f"{job.name}_submitted.pkl").is_file()
        assert (job / f"{job.name}_0_result.pkl").is_file()
        logged.append((job / f"{job.name}_0_log.out").read_text())
    for run_dir in runs.values():
        assert sum(f"results in {run_dir}" in text for text in logged) == 1
    hydra = OmegaConf.load(runs[0] / ".hydra" / "hydra.yaml").hydra
    assert hydra.launcher._target_.endswith("submitit_launcher.LocalLauncher")


@pytest.mark.slow
def test_a_bad_job_fails_alone_and_leaves_no_directory_while_the_others_finish(dataset, tmp_path):
    """In-process jobs (Hydra's basic launcher): the bad first job used to end the sweep with
    its exit, before the second ran."""
    sweep = tmp_path / "sweep"
    missing = tmp_path / "absent.zarr"
    done = _run(
        "train.py",
        "-m",
        f"task.dataset_path={missing},{dataset}",
        *TINY_SWEEP,
        f"hydra.sweep.dir={sweep}",
    )
    assert done.returncode == 2, done.stderr[-3000:]
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("train.py: error: sweep job #0 (0_push_cube_diffusion_seed0)")
    assert f"dataset {missing}: no dataset here" in last and "Traceback" not in done.stderr
    assert not (sweep / "0_push_cube_diffusion_seed0").exists()  # discarded: nothing written
    _finished(sweep / "1_push_cube_diffusion_seed0")
    assert (sweep / "multirun.yaml").is_file()  # the sweep's own directory stays


# ------------------------------------------------------------------------------ resume
def _as_sweep_job(sweep: Path, arguments: list[str], job_dir: str = "0_job") -> Path:
    """This process as job 0 of a sweep of ``arguments`` into ``sweep`` (what Hydra sets up
    before a job runs: multirun.yaml, the job's directory, its Hydra config)."""
    config = OmegaConf.create({"hydra": OmegaConf.structured(HydraConf)})
    config.hydra.mode = RunMode.MULTIRUN
    config.hydra.job.name = "train"
    config.hydra.sweep.dir = str(sweep)
    config.hydra.sweep.subdir = job_dir
    config.hydra.runtime.output_dir = str(sweep / job_dir)
    config.hydra.overrides.task = arguments
    (sweep / job_dir / ".hydra").mkdir(parents=True)
    OmegaConf.save(config, sweep / "multirun.yaml")
    HydraConfig.instance().set_config(config)
    return sweep / job_dir


def _stopped_run(path: Path) -> Path:
    """A run directory as a stopped training leaves it."""
    (path / "checkpoints").mkdir(parents=True)
    (path / "checkpoints" / "latest.safetensors").write_bytes(b"")
    (path / "checkpoints" / "step10.safetensors").write_bytes(b"")
    (path / "metrics.jsonl").write_text('{"step": 10}\n')
    return path


@pytest.fixture
def runs(tmp_path):
    yield _stopped_run(tmp_path / "a"), _stopped_run(tmp_path / "b")
    HydraConfig.instance().cfg = None


def test_a_sweep_resuming_one_run_from_several_jobs_is_refused(runs, tmp_path):
    a, _ = runs
    latest = a / "checkpoints" / "latest.safetensors"
    fresh = _as_sweep_job(tmp_path / "sweep", [f"resume={latest}", "seed=0,1", "algo.lr=1,2,3"])
    assert jobs_continuing(a) == 6
    with pytest.raises(ValueError, match="6 jobs of this sweep would continue the run"):
        continue_in(a)
    assert fresh.is_dir() and (a / "metrics.jsonl").read_text() == '{"step": 10}\n'


def test_a_sweep_over_one_checkpoint_per_run_continues_each_in_its_own(runs, tmp_path):
    a, b = runs
    checkpoints = ",".join(str(run / "checkpoints" / "latest.safetensors") for run in (a, b))
    fresh = _as_sweep_job(tmp_path / "sweep", [f"resume={checkpoints}", "eval.n_episodes=5"])
    assert jobs_continuing(a) == jobs_continuing(b) == 1
    assert continue_in(a) == a
    assert not fresh.exists()  # only Hydra's files: removed, as outside a sweep


def test_two_checkpoints_of_one_run_in_a_sweep_would_share_it(runs, tmp_path):
    a, _ = runs
    both = [str(a / "checkpoints" / name) for name in ("latest.safetensors", "step10.safetensors")]
    _as_sweep_job(tmp_path / "sweep", [f"resume={','.join(both)}"])
    assert jobs_continuing(a) == 2
    with pytest.raises(ValueError, match="2 jobs of this sweep"):
        continue_in(a)


# ------------------------------------------------------------------------------ launcher configs
@pytest.mark.parametrize("name", ["local", "slurm"])
def test_a_launcher_config_composes_on_the_plugins_schema_and_restates_none_of_it(name):
    from hydra import compose, initialize_config_dir
    from hydra_plugins.hydra_submitit_launcher.config import LocalQueueConf, SlurmQueueConf

    schema = {"local": LocalQueueConf, "slurm": SlurmQueueConf}[name]
    path = ROOT / "conf" / "hydra" / "launcher" / f"{name}.yaml"
    values = OmegaConf.to_container(OmegaConf.load(path))
    values.pop("defaults")
    defaults = OmegaConf.to_container(OmegaConf.structured(schema), resolve=False)
    assert values and set(values) <= set(defaults)
    assert not [key for key, value in values.items() if defaults[key] == value]
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        config = compose("config", [f"hydra/launcher={name}"], return_hydra_config=True)
    assert config.hydra.launcher._target_ == schema._target_
    assert config.hydra.launcher.gpus_per_node == values["gpus_per_node"]


def test_a_cluster_job_that_died_without_a_result_is_one_line_naming_it():
    from submitit.core.utils import UncompletedJobError

    from robopolicy.utils.cli import JobFailed
    from robopolicy_cli.command import _reporting_cluster_jobs

    def sweep():  # what hydra-submitit-launcher raises for a job killed by SLURM
        raise UncompletedJobError(
            "Job 4242 (task: 0) with path /s/.submitit/4242/4242_0_result.pkl\n"
            "has not produced any output (state: TIMEOUT)\nError stream produced:\n"
            "----------------------------------------\nstep 900\nslurmstepd: CANCELLED DUE TO "
            "TIME LIMIT\n"
        )

    with pytest.raises(JobFailed) as failed:
        _reporting_cluster_jobs(sweep)
    assert str(failed.value) == (
        "Job 4242 (task: 0) with path /s/.submitit/4242/4242_0_result.pkl has not produced any "
        "output (state: TIMEOUT); its last line: slurmstepd: CANCELLED DUE TO TIME LIMIT"
    )
    with pytest.raises(KeyError):  # anything else passes through unchanged
        _reporting_cluster_jobs(lambda: {}["x"])
