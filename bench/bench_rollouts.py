"""RL rollout throughput across env worker processes, with and without the policy's inference.

    MUJOCO_GL=egl .venv/bin/python bench/bench_rollouts.py          # ~3 minutes on 2 cores
    MUJOCO_GL=egl .venv/bin/python bench/bench_rollouts.py --checkpoint outputs/base/\
diffusion_pushcube/checkpoints/latest.safetensors --workers 1 2 4

The env is the RL loops' own (DPPO, ReinFlow, DSRL): PushCube with state observations in
``ChunkedEnv`` (one step = one executed action chunk), batched by ``make_chunked_vector_env``
with gymnasium's ``AsyncVectorEnv``, one worker process per env (robopolicy/rl/chunk_env.py).
Measured in this one run, in interleaved rounds (whatever else loads the machine spreads over
every setting alike), each for ``--seconds``:

* ``bare``: one ``ChunkedEnv`` stepped in this process, no vector env: the baseline;
* ``in_process_<n>``: gymnasium's ``SyncVectorEnv`` of n envs (in this process);
* ``workers_<n>``: ``AsyncVectorEnv`` of n envs, one worker process each (what the loops run
  with for ``algo.n_envs`` = n > 1);

each with random action chunks (``envs``: the envs alone) and with the policy choosing every
chunk (``policy``: ``predict_action`` on the batch of observation histories, then the step; the
loops do the same, plus their critic). Env steps/s count executed env steps over all envs; the
policy's share is the fraction of the wall-clock spent in its inference. Then the policy's
inference alone at batch sizes up to 64, against one env's time for one chunk: with a free core
per worker the envs step in parallel, so past the batch where inference takes longer than a
chunk, the policy rather than the envs limits the rollout. Writes
bench/results/rollouts.json; the figures are in docs/sweeps.md ("RL rollouts across worker
processes").

The policy: ``--checkpoint`` (any state-observation checkpoint for PushCube), or by default a
small one made here (4 demos collected, 20 training steps of the MLP denoiser at the default
horizon 16 and 8 executed actions): its inference costs what a trained one of that size does.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import gymnasium as gym  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

import sim  # noqa: E402
from robopolicy.eval.envs import make_env, make_vector_env  # noqa: E402
from robopolicy.eval.vector_info import step_values  # noqa: E402
from robopolicy.policies.registry import load_policy  # noqa: E402
from robopolicy.rl.chunk_env import ChunkedEnv, make_chunked_vector_env  # noqa: E402

RESULTS = REPO / "bench" / "results" / "rollouts.json"
INFERENCE_BATCHES = (1, 2, 4, 8, 16, 32, 64)  # batch sizes (n_envs) inference is timed at
INFERENCE_REPEATS = 20  # calls per batch size; the median is reported
ENV_KWARGS = {"obs_mode": "state"}
SMALL_POLICY = [  # the default policy's chunking (horizon 16, 8 executed), an MLP denoiser
    "task.env_kwargs.obs_mode=state",
    "backbone=mlp",
    "algo.num_steps=20",
    "algo.warmup_steps=2",
    "algo.eval_every=0",
    "algo.checkpoint_every=20",
    "data.batch_size=16",
    "eval.n_episodes=1",
    "eval.n_envs=1",
    "eval.video_episodes=0",
    "torch_threads=1",
    "logger=none",
    "progress=false",
]


def small_checkpoint(scratch: Path) -> Path:
    """Collect 4 demos and train the small policy on them (``SMALL_POLICY``); its checkpoint."""
    dataset, run_dir = scratch / "push.zarr", scratch / "train"
    commands = [
        ["datasets/collect.py", "n_episodes=4", f"out={dataset}", "task.env_kwargs.obs_mode=state"],
        ["train.py", f"task.dataset_path={dataset}", *SMALL_POLICY],
    ]
    for command, out in zip(commands, (scratch / "collect", run_dir), strict=True):
        done = subprocess.run(
            [sys.executable, *command, f"hydra.run.dir={out}"],
            cwd=REPO,
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            raise SystemExit(f"{command[0]} failed:\n{done.stderr[-3000:]}")
    return run_dir / "checkpoints" / "latest.safetensors"


class Bare:
    """One chunked env in this process, shaped like a vector env of one (batch axis first)."""

    num_envs = 1

    def __init__(self, n_obs_steps: int, act_steps: int):
        wrapper = functools.partial(ChunkedEnv, n_obs_steps=n_obs_steps, act_steps=act_steps)
        self.env = make_env(sim.PUSH_CUBE_ID, ENV_KWARGS, wrapper=wrapper)
        self.action_space = gym.vector.utils.batch_space(self.env.action_space, 1)

    def reset(self, seed: int):
        obs, _ = self.env.reset(seed=seed)
        return {key: value[None] for key, value in obs.items()}

    def step(self, chunks: np.ndarray):
        obs, _, terminated, truncated, info = self.env.step(chunks[0])
        if terminated or truncated:
            obs, _ = self.env.reset()
        return {key: value[None] for key, value in obs.items()}, info["env_steps"]

    def close(self) -> None:
        self.env.close()


class Vector:
    """A vector env of the RL loops' kind (``make_chunked_vector_env``, same-step autoreset)."""

    def __init__(self, envs: gym.vector.VectorEnv):
        self.envs, self.num_envs, self.action_space = envs, envs.num_envs, envs.action_space

    def reset(self, seed: int):
        return self.envs.reset(seed=[seed + j for j in range(self.num_envs)])[0]

    def step(self, chunks: np.ndarray):
        obs, _, terminated, truncated, info = self.envs.step(chunks)
        executed = step_values(info, "env_steps", self.num_envs, 0, terminated | truncated)
        return obs, int(executed.sum())

    def close(self) -> None:
        self.envs.close()


def settings(workers: list[int], n_obs_steps: int, act_steps: int) -> dict[str, Callable]:
    """Each setting's name and how to build its envs."""
    chunked = functools.partial(
        make_chunked_vector_env,
        sim.PUSH_CUBE_ID,
        ENV_KWARGS,
        n_obs_steps=n_obs_steps,
        act_steps=act_steps,
        env_modules=["sim"],  # what registers the id, imported in each worker
    )
    made: dict[str, Callable] = {"bare": lambda: Bare(n_obs_steps, act_steps)}
    made["in_process_2"] = lambda: Vector(chunked(2, asynchronous=False))
    for n in workers:
        made[f"workers_{n}"] = functools.partial(lambda n: Vector(chunked(n, asynchronous=True)), n)
    return made


def measure(envs, act: Callable | None, seconds: float, seed: int) -> dict:
    """Env steps/s of ``envs`` for ``seconds``: random chunks (``act`` None) or the policy's."""
    envs.action_space.seed(seed)
    obs = envs.reset(seed)
    obs, _ = envs.step(envs.action_space.sample())  # worker start-up stays outside the timing
    steps, inference_s, batches, start = 0, 0.0, 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        if act is None:
            chunks = envs.action_space.sample()
        else:
            tick = time.perf_counter()
            chunks = act(obs)
            inference_s += time.perf_counter() - tick
            batches += 1
        obs, executed = envs.step(chunks)
        steps += executed
    elapsed = time.perf_counter() - start
    figures = {"env_steps_per_s": steps / elapsed}
    if act is not None:
        figures["inference_share"] = inference_s / elapsed
        figures["inference_ms_per_batch"] = 1000 * inference_s / batches
    return figures


def policy_act(policy) -> Callable:
    keys = list(policy.shape_meta["obs"])

    @torch.no_grad()
    def act(obs: dict[str, np.ndarray]) -> np.ndarray:
        batch = {key: torch.from_numpy(np.ascontiguousarray(obs[key])).float() for key in keys}
        return policy.predict_action(batch)["action"].numpy()

    return act


def inference_ms_by_batch(act: Callable, n_obs_steps: int, act_steps: int, sizes) -> dict:
    """The policy's median milliseconds per ``predict_action`` call, for each batch size (one
    real observation history repeated): where inference outgrows an env chunk's time."""
    bare = Bare(n_obs_steps, act_steps)
    try:
        first = bare.reset(seed=0)
    finally:
        bare.close()
    timings = {}
    for size in sizes:
        batch = {key: np.repeat(value, size, axis=0) for key, value in first.items()}
        act(batch)  # warm-up
        samples = []
        for _ in range(INFERENCE_REPEATS):
            tick = time.perf_counter()
            act(batch)
            samples.append(1000 * (time.perf_counter() - tick))
        timings[str(size)] = statistics.median(samples)
    return timings


def run_rounds(made: dict[str, Callable], act: Callable, args) -> dict:
    """Every setting, envs alone and with the policy, ``--rounds`` times interleaved; the
    median of each figure over the rounds."""
    samples: dict[str, dict[str, list[float]]] = {}
    for round_index in range(args.rounds):
        for name, build in made.items():
            envs = build()
            try:
                for mode, chooser in (("envs", None), ("policy", act)):
                    figures = measure(envs, chooser, args.seconds, seed=round_index)
                    row = samples.setdefault(f"{name}/{mode}", {})
                    for key, value in figures.items():
                        row.setdefault(key, []).append(value)
            finally:
                envs.close()
            print(f"round {round_index}: {name} done", flush=True)
    return {
        label: {key: statistics.median(values) for key, values in row.items()}
        for label, row in samples.items()
    }


def with_ratios(figures: dict) -> dict:
    """Each setting's env steps/s as a multiple of the bare env's, with random chunks."""
    base = figures["bare/envs"]["env_steps_per_s"]
    for row in figures.values():
        row["vs_bare_envs"] = row["env_steps_per_s"] / base
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", help="a state PushCube checkpoint (default: made here)")
    parser.add_argument("--workers", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--seconds", type=float, default=4.0, help="per setting and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args()
    torch.set_num_threads(1)  # as train.py torch_threads=1: the cores go to the env workers
    with tempfile.TemporaryDirectory(prefix="bench_rollouts_") as scratch:
        checkpoint = args.checkpoint or small_checkpoint(Path(scratch))
        policy, _ = load_policy(checkpoint)
    policy.eval()
    make_vector_env(sim.PUSH_CUBE_ID, ENV_KWARGS, 1).close()  # imports and first build, untimed
    made = settings(args.workers, policy.n_obs_steps, policy.n_action_steps)
    act = policy_act(policy)
    figures = with_ratios(run_rounds(made, act, args))
    inference = inference_ms_by_batch(
        act, policy.n_obs_steps, policy.n_action_steps, INFERENCE_BATCHES
    )
    chunk_ms = 1000 * policy.n_action_steps / figures["bare/envs"]["env_steps_per_s"]
    results = {
        "command": " ".join(["python", "bench/bench_rollouts.py", *sys.argv[1:]]),
        "policy": args.checkpoint or "small MLP policy made by the bench (SMALL_POLICY)",
        "chunk": {"n_obs_steps": policy.n_obs_steps, "act_steps": policy.n_action_steps},
        "seconds_per_setting": args.seconds,
        "rounds": args.rounds,
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "load_average_at_end": os.getloadavg(),
            "torch": torch.__version__,
        },
        "figures": figures,
        "inference_ms_by_batch": inference,
        "bare_env_ms_per_chunk": chunk_ms,  # one env executing one chunk, random actions
    }
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    for label, row in figures.items():
        extra = ""
        if "inference_share" in row:
            extra = (
                f", inference {row['inference_ms_per_batch']:.1f} ms/batch "
                f"= {row['inference_share']:.0%} of the time"
            )
        print(
            f"{label:22s} {row['env_steps_per_s']:7.0f} env steps/s "
            f"({row['vs_bare_envs']:.2f}x bare){extra}"
        )
    print(f"one env executes a chunk in {chunk_ms:.1f} ms; inference per batch (ms): {inference}")
    print(f"-> {args.out}")


if __name__ == "__main__":
    main()
