"""Data-parallel training under torchrun, end to end on this machine (gloo over loopback): two
torchrun launchers as two "nodes" train the same replicas as one launcher with two processes; a
two-process run stopped and resumed ends with the weights of the uninterrupted one; a checkpoint
is resumed only with the world size that wrote it. (One node's two processes from the user's
journey: test_pipeline_e2e.py.)"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from tiny_runs import TINY_TRAINING

from robopolicy.training.checkpoint import load_checkpoint

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "MUJOCO_GL": "egl", "OMP_NUM_THREADS": "1"}
TORCHRUN = str(Path(sys.executable).with_name("torchrun"))
NO_ROLLOUTS = ["algo.eval_every=0", "eval.video_episodes=0"]  # the weights are what is compared
TIMEOUT_S = 600


def _command(launcher: list[str], dataset: Path, run_dir: Path, *overrides: str) -> list[str]:
    training = [f"task.dataset_path={dataset}", *TINY_TRAINING, *NO_ROLLOUTS, *overrides]
    return [*launcher, "train.py", *training, f"hydra.run.dir={run_dir}"]


def _run(command: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        command, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=TIMEOUT_S
    )


def _digests(*stdouts: str) -> dict[str, str]:
    """rank -> the final weights digest that rank logged ("rank R final weights digest D")."""
    return {
        line.split()[2]: line.split()[-1]
        for stdout in stdouts
        for line in stdout.splitlines()
        if "final weights digest" in line
    }


def _torchrun(dataset: Path, run_dir: Path, *overrides: str) -> str:
    """One launcher, two processes; returns the digest both ranks ended with."""
    completed = _run(_command([TORCHRUN, "--nproc_per_node=2"], dataset, run_dir, *overrides))
    assert completed.returncode == 0, completed.stderr[-3000:]
    digests = _digests(completed.stdout)
    assert set(digests) == {"0", "1"} and digests["0"] == digests["1"], completed.stdout[-2000:]
    return digests["0"]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("ddp")
    path = work / "push.zarr"
    collect = [sys.executable, "datasets/collect.py", "n_episodes=4", f"out={path}"]
    collect += ["task.env_kwargs.obs_mode=state", f"hydra.run.dir={work / 'collect'}"]
    completed = _run(collect)
    assert completed.returncode == 0, completed.stderr[-3000:]
    return path


@pytest.fixture(scope="module")
def uninterrupted(dataset, tmp_path_factory) -> str:
    """The final weights digest of a two-process run of all 20 steps."""
    return _torchrun(dataset, tmp_path_factory.mktemp("uninterrupted") / "run")


@pytest.fixture(scope="module")
def stopped(dataset, tmp_path_factory) -> Path:
    """A two-process run's checkpoint at step 10 of 20, copied out of its run directory (so that
    a resume from it starts a run directory of its own and leaves it as it is)."""
    work = tmp_path_factory.mktemp("stopped")
    _torchrun(dataset, work / "run", "algo.stop_after=10")
    copy = work / "step10.safetensors"
    shutil.copy(work / "run" / "checkpoints" / "latest.safetensors", copy)
    return copy


@pytest.mark.slow
def test_two_nodes_over_loopback_train_the_replicas_one_node_trains(
    dataset, uninterrupted, tmp_path
):
    """Two torchrun launchers meet at a c10d rendezvous on 127.0.0.1, one process each: both
    ranks end with the weights of the single launcher's two processes."""
    endpoint = f"127.0.0.1:{_free_port()}"
    nodes = [
        subprocess.Popen(
            _command(
                [
                    TORCHRUN,
                    "--nnodes=2",
                    "--nproc_per_node=1",
                    f"--node_rank={node}",
                    "--rdzv-backend=c10d",
                    f"--rdzv-endpoint={endpoint}",
                    f"--rdzv-id=two-nodes-{os.getpid()}",
                ],
                dataset,
                tmp_path / "run",  # one run directory, as on a cluster's shared filesystem
            ),
            cwd=ROOT,
            env=ENV,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for node in (0, 1)
    ]
    outputs = [node.communicate(timeout=TIMEOUT_S) for node in nodes]
    for node, (_, stderr) in zip(nodes, outputs, strict=True):
        assert node.returncode == 0, stderr[-3000:]
    digests = _digests(*(stdout for stdout, _ in outputs))
    assert digests == {"0": uninterrupted, "1": uninterrupted}, outputs[0][0][-2000:]
    assert (tmp_path / "run" / "eval.json").exists()  # rank 0 evaluated the finished run


@pytest.mark.slow
def test_a_two_process_run_resumes_exactly(dataset, stopped, uninterrupted, tmp_path):
    checkpoint = load_checkpoint(stopped)
    assert checkpoint["step"] == 10 and checkpoint["ranks"]["world_size"] == 2
    resumed = _torchrun(dataset, tmp_path / "resumed", f"resume={stopped}")
    assert resumed == uninterrupted


@pytest.mark.slow
def test_resuming_with_another_world_size_is_refused(dataset, stopped, tmp_path):
    completed = _run(_command([sys.executable], dataset, tmp_path / "one", f"resume={stopped}"))
    assert completed.returncode == 2
    assert completed.stderr.strip().endswith(
        f"checkpoint {stopped}: written by a run with world_size=2, this run has world_size=1: "
        "resume it with 2 processes"
    )
    assert "Traceback" not in completed.stderr
    assert not (tmp_path / "one" / "checkpoints").exists()  # refused before any training
