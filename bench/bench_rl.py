"""RL fine-tuning cost: DPPO's iteration split and DSRL's env steps/s, against the bare envs.

    .venv/bin/python bench/bench_rl.py --base outputs/base/diffusion_pushcube/checkpoints/\
latest.safetensors                 # ~5 minutes on 2 cores; writes bench/results/rl.json

The base is any state-based diffusion checkpoint for PushCube (the main job writes the one
above). Everything is measured in this one run, each part alone on the machine:

* ``reference``: the chunked vector env of the RL algorithms (``make_chunked_vector_env``,
  worker processes, same-step autoreset) stepped with random action chunks and no policy, with
  DPPO's and with DSRL's number of envs: the most env steps/s either loop could reach;
* ``dppo``: ``train.py algo=dppo`` for a few iterations of the default size (16 envs x 100
  chunks); per iteration after the critic warm-up, the median seconds of rollout (env
  stepping), inference (sampling the denoising chains) and update (PPO epochs), and the
  rollout+inference env steps/s as a fraction of the 16-env reference;
* ``dsrl``: ``train.py algo=dsrl`` for a few thousand env steps (default settings); the median
  env steps/s of the 1000-step windows after the warm-up (SAC updates included), as a fraction
  of the 4-env reference.

Absolute figures move by tens of percent with whatever else shares the cores; the fractions are
taken within one run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402

import sim  # noqa: E402
from robopolicy.policies.registry import load_policy  # noqa: E402
from robopolicy.rl.chunk_env import make_chunked_vector_env  # noqa: E402

RESULTS = REPO / "bench" / "results" / "rl.json"
CRITIC_WARMUP_ITERATIONS = 2  # DPPO's default: these iterations update only the critic, untimed
COMMON = [
    "task.env_kwargs.obs_mode=state",
    "torch_threads=1",
    "logger=none",
    "eval.n_episodes=4",  # train.py's final evaluation: kept short, it is not what is measured
    "eval.n_envs=2",
    "eval.video_episodes=0",
]


def reference_env_steps_per_s(
    n_envs: int, n_obs_steps: int, act_steps: int, seconds: float, seed: int = 0
) -> float:
    """Env steps/s (summed over envs) of the chunked vector env under random action chunks."""
    envs = make_chunked_vector_env(
        sim.PUSH_CUBE_ID, {"obs_mode": "state"}, n_envs, n_obs_steps, act_steps
    )
    try:
        envs.reset(seed=seed)
        envs.action_space.seed(seed)
        envs.step(envs.action_space.sample())  # worker start-up stays outside the timing
        chunks, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            envs.step(envs.action_space.sample())
            chunks += 1
        elapsed = time.perf_counter() - start
    finally:
        envs.close()
    return chunks * n_envs * act_steps / elapsed


def train_rows(run_dir: Path, overrides: list[str]) -> list[dict]:
    """Run train.py with ``overrides`` into ``run_dir``; its metrics.jsonl rows."""
    command = [sys.executable, "train.py", *overrides, *COMMON, f"hydra.run.dir={run_dir}"]
    print("$ " + " ".join(command), flush=True)
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"train.py failed ({done.returncode}):\n{done.stderr[-3000:]}")
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def dppo_figures(base: str, run_dir: Path, iterations: int) -> dict:
    rows = train_rows(
        run_dir,
        [
            "algo=dppo",
            f"checkpoint={base}",
            f"algo.n_iterations={iterations}",
            f"algo.n_critic_warmup_itr={CRITIC_WARMUP_ITERATIONS}",
            "algo.eval_every=0",
        ],
    )
    timed = [row for row in rows if "time/rollout_s" in row and "time/update_s" in row]
    after = timed[CRITIC_WARMUP_ITERATIONS:] or timed
    steps = [b["env_steps"] - a["env_steps"] for a, b in zip(timed, timed[1:], strict=False)]
    env_steps_per_iteration = statistics.median(steps) if steps else timed[0]["env_steps"]
    split = {
        part: statistics.median(row[f"time/{part}_s"] for row in after)
        for part in ("rollout", "inference", "update")
    }
    collect_s = split["rollout"] + split["inference"]
    return {
        "iterations_timed": len(after),
        "env_steps_per_iteration": env_steps_per_iteration,
        "median_s": split,
        "share_of_iteration": {part: value / sum(split.values()) for part, value in split.items()},
        "collect_env_steps_per_s": env_steps_per_iteration / collect_s,
    }


def dsrl_figures(base: str, run_dir: Path, env_steps: int) -> dict:
    rows = train_rows(
        run_dir,
        [
            "algo=dsrl",
            f"checkpoint={base}",
            f"algo.total_env_steps={env_steps}",
            "algo.eval_every_env_steps=0",
            "algo.eval_at_start=false",
            "algo.checkpoint_every_env_steps=0",
        ],
    )
    windows = [
        row["time/env_steps_per_s"]
        for row in rows
        if "time/env_steps_per_s" in row and row.get("train/updates", 0) > 0
    ]
    return {"windows_timed": len(windows), "env_steps_per_s": statistics.median(windows)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--base",
        default="outputs/base/diffusion_pushcube/checkpoints/latest.safetensors",
        help="a state-based PushCube diffusion checkpoint (the main job writes the default)",
    )
    parser.add_argument("--dppo-iterations", type=int, default=4, help="2 are critic warm-up")
    parser.add_argument("--dsrl-env-steps", type=int, default=8000, help="2000 are warm-up")
    parser.add_argument("--reference-seconds", type=float, default=20.0)
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args()
    if not Path(args.base).exists():
        raise SystemExit(f"--base {args.base}: no such checkpoint (run the main job first)")
    policy, _ = load_policy(args.base)
    n_obs_steps, act_steps = policy.n_obs_steps, policy.n_action_steps
    with tempfile.TemporaryDirectory(prefix="bench_rl_") as scratch:
        reference = {
            f"{n_envs}_envs": reference_env_steps_per_s(
                n_envs, n_obs_steps, act_steps, args.reference_seconds
            )
            for n_envs in (16, 4)
        }
        print(f"reference (no policy), env steps/s: {reference}", flush=True)
        dppo = dppo_figures(args.base, Path(scratch) / "dppo", args.dppo_iterations)
        dppo["collect_vs_reference"] = dppo["collect_env_steps_per_s"] / reference["16_envs"]
        print(f"dppo: {json.dumps(dppo)}", flush=True)
        dsrl = dsrl_figures(args.base, Path(scratch) / "dsrl", args.dsrl_env_steps)
        dsrl["vs_reference"] = dsrl["env_steps_per_s"] / reference["4_envs"]
        print(f"dsrl: {json.dumps(dsrl)}", flush=True)
    results = {
        "command": " ".join(["python", "bench/bench_rl.py", *sys.argv[1:]]),
        "base": args.base,
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "torch": torch.__version__,
            "cuda": torch.cuda.is_available(),
        },
        "reference_env_steps_per_s": reference,
        "dppo": dppo,
        "dsrl": dsrl,
    }
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    print(
        f"DPPO iteration ({dppo['env_steps_per_iteration']:.0f} env steps): rollout "
        f"{dppo['median_s']['rollout']:.1f} s, inference {dppo['median_s']['inference']:.1f} s, "
        f"update {dppo['median_s']['update']:.1f} s; collection at "
        f"{dppo['collect_vs_reference']:.0%} of the bare envs' {reference['16_envs']:.0f} env "
        f"steps/s. DSRL {dsrl['env_steps_per_s']:.0f} env steps/s with updates, "
        f"{dsrl['vs_reference']:.0%} of the bare envs' {reference['4_envs']:.0f}. -> {args.out}"
    )


if __name__ == "__main__":
    main()
