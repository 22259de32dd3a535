"""The wheel: built from this tree, installed into a fresh venv, and run from a folder outside the
repository through its console scripts, with nothing of the repository on the path: collect ->
inspect -> train -> eval -> DPPO fine-tuning -> deploy to the sim arm -> convert, at toy sizes.

The venv reuses this machine's local torch wheel (a constraints file pins torch==2.13.0, as
scripts/bootstrap.sh does); the other dependencies come from the package index or pip's cache.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tiny_runs import TINY_BC

from robopolicy.data.reader import ReplayBuffer

ROOT = Path(__file__).resolve().parents[1]
TORCH = "torch==2.13.0"  # the only torch this machine installs without downloading CUDA builds
STATE_TASK = ["task.env_kwargs.obs_mode=state", "task.max_episode_steps=12"]  # no cameras
QUIET = ["torch_threads=1", "logger=none", "eval.n_envs=1", "eval.video_episodes=0"]
TINY_DPPO = [  # two iterations of one env's 4 chunk steps (act_steps <= horizon - To + 1 = 3)
    "algo=dppo",
    "algo.n_iterations=2",
    "algo.n_envs=1",
    "algo.n_steps=4",
    "algo.act_steps=2",
    "algo.n_critic_warmup_itr=0",
    "algo.eval_every=0",
    "algo.ppo.minibatch_size=8",
    "algo.ppo.update_epochs=1",
    "eval.n_episodes=2",
]


def _tracked_tree(destination: Path) -> Path:
    """The files git would commit (tracked, and untracked but not ignored), copied: the wheel
    is built from them alone, not from build outputs or datasets lying in the checkout."""
    listed = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "-z"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    )
    for name in filter(None, listed.stdout.decode().split("\0")):
        source = ROOT / name
        if source.is_file():
            (destination / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, destination / name)
    return destination


# the environment of every command here: nothing of the repository importable (a PYTHONPATH
# naming it would also show pip its egg-info, and pip would skip installing the wheel)
CLEAN_ENV = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}


class Venv:
    """A fresh venv with the wheel installed; runs its console scripts in ``work``."""

    def __init__(self, root: Path, work: Path) -> None:
        self.bin = root / "bin"
        self.work = work
        self.env = {**CLEAN_ENV, "MUJOCO_GL": "egl", "OMP_NUM_THREADS": "1"}
        self.seconds: dict[str, float] = {}

    def run(self, program: str, *args: str, status: int = 0) -> subprocess.CompletedProcess:
        start = time.perf_counter()
        done = subprocess.run(
            [str(self.bin / program), *args],
            cwd=self.work,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        self.seconds[f"{program} {args[0] if args else ''}"] = time.perf_counter() - start
        assert done.returncode == status, (
            f"{program} {args}:\n{done.stdout[-3000:]}\n" + (done.stderr[-3000:])
        )
        return done


@pytest.fixture(scope="module")
def venv(tmp_path_factory) -> Venv:
    """Build the wheel, install it into a new venv; the work folder lies outside the repo."""
    base = tmp_path_factory.mktemp("wheel")
    source = _tracked_tree(base / "source")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation"]
        + [str(source), "-w", str(base / "dist")],
        cwd=base,
        env=CLEAN_ENV,
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = (base / "dist").glob("robopolicy-*.whl")
    subprocess.run(
        [sys.executable, "-m", "venv", str(base / "venv")], env=CLEAN_ENV, check=True, timeout=300
    )
    (base / "constraints.txt").write_text(TORCH + "\n")
    subprocess.run(
        [str(base / "venv" / "bin" / "pip"), "install", "-q", "-c", str(base / "constraints.txt")]
        + [str(wheel)],
        cwd=base,
        env=CLEAN_ENV,
        check=True,
        capture_output=True,
        timeout=900,
    )
    work = base / "work"
    work.mkdir()
    return Venv(base / "venv", work)


@pytest.mark.slow
def test_installed_wheel_runs_the_journey_from_another_folder(venv):
    assert not venv.work.is_relative_to(ROOT)
    where = venv.run(
        "python", "-c", "from robopolicy.config.locate import conf_dir; print(conf_dir())"
    )
    assert Path(where.stdout.strip()).name == "robopolicy_conf"  # the installed configs
    assert "site-packages" in where.stdout and str(ROOT) not in where.stdout

    # every program prints its usage and the registered tasks
    for program in ("train", "eval", "collect", "convert", "inspect", "teleop", "server"):
        shown = venv.run(f"robopolicy-{program}", "--help")
        assert (
            shown.stdout.startswith(f"usage: robopolicy-{program}") and "push_cube" in shown.stdout
        )
    assert "hardware=NAME (conf/hardware/)" in shown.stdout  # the server's: the robots it serves

    # the default task's demos, generated here, where training looks for them by default
    venv.run("robopolicy-collect", "n_episodes=4", "task.env_kwargs.obs_mode=state")
    dataset = venv.work / "datasets" / "data" / "push_cube.zarr"
    assert ReplayBuffer.open(dataset).n_episodes == 4
    shown = venv.run("robopolicy-inspect", f"path={dataset}", f"out={venv.work / 'inspect'}")
    assert "episodes" in shown.stdout

    venv.run("robopolicy-train", *STATE_TASK, *QUIET, *TINY_BC, "hydra.run.dir=run/bc")
    checkpoint = venv.work / "run" / "bc" / "checkpoints" / "latest.safetensors"
    assert checkpoint.is_file()
    assert json.loads((venv.work / "run" / "bc" / "eval.json").read_text())["n_episodes"] == 2

    sim_eval = ["n_envs=1", "max_episode_steps=12", "sampler.num_steps=2", "hydra.run.dir=run/ev"]
    venv.run("robopolicy-eval", f"checkpoint={checkpoint}", "n_episodes=2", *sim_eval)
    results = json.loads((venv.work / "run" / "ev" / "eval.json").read_text())
    assert results["n_episodes"] == 2 and results["sampler"]["num_steps"] == 2

    venv.run(
        "robopolicy-train", f"checkpoint={checkpoint}", *TINY_DPPO, *STATE_TASK, *QUIET,
        "hydra.run.dir=run/dppo",
    )  # fmt: skip
    assert (venv.work / "run" / "dppo" / "checkpoints" / "latest.safetensors").is_file()
    assert json.loads((venv.work / "run" / "dppo" / "eval.json").read_text())["n_episodes"] == 2

    deploy = ["hardware=sim", "n_episodes=2", "max_episode_steps=12", "torch_threads=1"]
    venv.run("robopolicy-eval", f"checkpoint={checkpoint}", *deploy, "hydra.run.dir=run/deploy")
    deployed = json.loads((venv.work / "run" / "deploy" / "eval.json").read_text())
    assert deployed["n_episodes"] == 2 and len(deployed["episodes"]) == 2 and deployed["latency"]

    venv.run("robopolicy-convert", "zarr-to-robomimic", f"src={dataset}", "dst=demos.hdf5")
    assert (venv.work / "demos.hdf5").stat().st_size > 0

    refused = venv.run("robopolicy-train", "policy=difusion", status=2)
    assert refused.stderr.startswith("robopolicy-train: error: policy=difusion: Could not find")
    print("wheel journey seconds:", json.dumps(venv.seconds, indent=1))
