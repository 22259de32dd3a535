"""Behaviour-cloning training steps per second: the loop as it is against the loop as it was.

Run: ``.venv/bin/python bench/bench_train_step.py [--rounds 3]`` (about five minutes on 2 shared
cores). For each recipe it builds the run twice with ``robopolicy.algos.bc._build_run`` on the
same dataset (datasets/data/push_cube.zarr, or ``--dataset``) and times them in alternating
rounds, one thread each:

- ``before``: the step as it was before issue 18, reproduced here: ``policy.train()`` and
  ``policy.parameters()`` listed at every step, AdamW's per-tensor loop (``for_loop``), an EMA
  that loops over parameters and buffers in Python, a CUDA synchronisation at every step, and
  images decoded per sample from the compressed chunks (``data.decoded_cache_mb=0``);
- ``after``: ``bc._train_step`` with the defaults (fused AdamW, the batched EMA, no per-step
  synchronisation, images decoded into RAM at start).

Recipes: the UNet (down dims 64-128-256, horizon 16) and the main job's MLP on the state keys at
batch 256, and the MLP on two cameras plus proprioception (the image recipe, ResNet-18 encoder;
batch 64, so that a round stays short on a CPU). Each row gives steps/s of wall-clock time (the
best round), steps per CPU-second (all rounds), the share of step time spent waiting for data
(``train/data_wait_share``'s meaning), and the after/before ratios, all from one run. Results go
to ``bench/results/train_step.json``, which docs/benchmarks.md quotes.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir

from robopolicy.algos import bc
from robopolicy.config.locate import conf_dir
from robopolicy.utils.machine import machine_facts

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "train_step.json"
DATASET = ROOT / "datasets" / "data" / "push_cube.zarr"
COMMON = ["logger=none", "algo.eval_every=0", "data.val_ratio=0", "torch_threads=1"]
COMMON += ["data.preflight_decode_images_mb=0"]  # the pre-flight decode is not what is timed
IMAGE_KEYS = (
    "obs_keys=${task.obs_keys.image}"  # main_job sets obs_keys itself: obs=image is not enough
)
RECIPES = {  # name: (overrides, steps per round)
    "state_unet_64_128_256_b256": (["backbone=unet1d", "policy.args.horizon=16"], 3),
    "state_mlp_main_job_b256": (["+experiment=main_job"], 40),
    "images_mlp_two_cameras_b64": (["+experiment=main_job", IMAGE_KEYS, "data.batch_size=64"], 2),
}
BEFORE = ["algo.optimizer_impl=for_loop", "data.decoded_cache_mb=0"]


class LoopEMA:
    """The EMA update as it was: a Python loop over parameters and buffers at every step."""

    def __init__(self, ema):
        self.ema = ema

    @torch.no_grad()
    def update(self, model) -> None:
        ema, decay = self.ema, self.ema.decay()
        for averaged, current in zip(ema.averaged.parameters(), model.parameters(), strict=True):
            averaged.lerp_(current.detach(), 1.0 - decay)
        for averaged, current in zip(ema.averaged.buffers(), model.buffers(), strict=True):
            averaged.copy_(current)
        ema.step += 1


def step_before(run: bc.BCRun, batches, seconds: dict) -> None:
    """One training step of the loop before issue 18 (module docstring)."""
    start = time.perf_counter()
    batch = next(batches)
    fetched = time.perf_counter()
    policy = run.policy
    policy.train()
    losses = policy.compute_loss(batch)
    run.optimizer.zero_grad(set_to_none=True)
    losses["loss"].backward()
    torch.nn.utils.clip_grad_norm_(policy.parameters(), run.grad_clip)
    run.optimizer.step()
    run.scheduler.step()
    run.ema.update(policy)
    if policy.device.type == "cuda":
        torch.cuda.synchronize()
    seconds["wait"] += fetched - start
    seconds["compute"] += time.perf_counter() - fetched


def step_after(run: bc.BCRun, batches, seconds: dict) -> None:
    bc._train_step(run, batches, nullcontext(), seconds, sync=False)


def build(dataset: Path, overrides: list[str], run_dir: Path) -> bc.BCRun:
    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        cfg = compose(
            config_name="config", overrides=[f"task.dataset_path={dataset}", *COMMON, *overrides]
        )
    run = bc._build_run(cfg, run_dir, torch.device("cpu"), bc.SINGLE_PROCESS)
    run.policy.train()
    return run


def bench_recipe(dataset: Path, overrides: list[str], steps: int, rounds: int, tmp: Path) -> dict:
    variants = {
        "before": (build(dataset, [*overrides, *BEFORE], tmp / "before"), step_before),
        "after": (build(dataset, overrides, tmp / "after"), step_after),
    }
    variants["before"][0].ema = LoopEMA(variants["before"][0].ema)
    batches = {name: bc._endless(run.loader) for name, (run, _) in variants.items()}
    seconds = {name: {"wait": 0.0, "compute": 0.0} for name in variants}
    best = dict.fromkeys(variants, 0.0)
    cpu = dict.fromkeys(variants, 0.0)
    for name, (run, step) in variants.items():  # warm-up: allocator, first batches
        step(run, batches[name], {"wait": 0.0, "compute": 0.0})
    for _ in range(rounds):
        for name, (run, step) in variants.items():
            wall, used = time.perf_counter(), time.process_time()
            for _ in range(steps):
                step(run, batches[name], seconds[name])
            best[name] = max(best[name], steps / (time.perf_counter() - wall))
            cpu[name] += time.process_time() - used
    table = {}
    for name in variants:
        spent = seconds[name]
        table[name] = {
            "steps_per_s": round(best[name], 3),
            "steps_per_cpu_s": round(rounds * steps / cpu[name], 3),
            "data_wait_share": round(spent["wait"] / (spent["wait"] + spent["compute"]), 4),
        }
    table["ratio_after_before"] = {
        "steps_per_s": round(best["after"] / best["before"], 3),
        "steps_per_cpu_s": round(cpu["before"] / cpu["after"], 3),
    }
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", type=Path, default=DATASET)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--recipes", nargs="*", default=list(RECIPES), choices=list(RECIPES))
    args = parser.parse_args()
    torch.set_num_threads(1)
    started, load = time.perf_counter(), round(os.getloadavg()[0], 2)
    results = {}
    with tempfile.TemporaryDirectory(prefix="bench_train_step_") as tmp:
        for name in args.recipes:
            overrides, steps = RECIPES[name]
            results[name] = bench_recipe(args.dataset, overrides, steps, args.rounds, Path(tmp))
            row = results[name]
            print(f"[{name}] " + json.dumps(row))
    report = {
        "command": "python bench/bench_train_step.py",
        "dataset": str(args.dataset),
        "rounds": args.rounds,
        "recipes": {name: RECIPES[name][0] for name in args.recipes},
        "machine": machine_facts(load),
        "results": results,
        "total_seconds": round(time.perf_counter() - started, 1),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {RESULTS} ({report['total_seconds']}s)")


if __name__ == "__main__":
    main()
