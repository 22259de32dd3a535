"""Data-parallel step time on a CPU, 2 ranks over gloo: DistributedDataParallel against the
hand-rolled flat all-reduce it replaced.

Run: ``.venv/bin/python bench/bench_ddp.py [--rounds 6] [--steps 4]`` (about two minutes on 2
shared cores). It collects a 24-episode PushCube dataset (state observations) unless given one,
then spawns 2 ranks (one torch thread each) that build the main job's state policy with the UNet
denoiser (``+experiment=main_job backbone=unet1d``: down dims 64-128-256, horizon 16; batch 128
per rank, 256 in all) twice with ``robopolicy.algos.bc._build_run``, and time them in
alternating rounds of ``--steps`` steps, each round between two barriers. Both step over the same
full batches of the rank's share, drawn once (the data loader is not what is compared):

- ``flat``: the reference, the loop as it was before DDP, reproduced here: rank 0's weights
  broadcast once, then per step ``policy.compute_loss``, backward, and one all-reduce of all the
  gradients flattened into one buffer, after the backward pass;
- ``ddp``: ``bc._train_step`` as train.py runs it under torchrun, the policy inside
  ``DistributedDataParallel`` (buckets of ``algo.ddp_bucket_mb``, all-reduced during backward).

Both steps also clip, step AdamW and the schedule and update the EMA, as training does. Each row
gives the seconds per step (the best round, and the mean over rounds), and whether the two ranks
ended with identical weights; ``ratio_ddp_over_flat`` is DDP's step time over the reference's
(below 1: DDP is faster). Results go to ``bench/results/ddp.json`` (docs/distributed.md).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from hydra import compose, initialize_config_dir

from robopolicy.algos import bc
from robopolicy.config.locate import conf_dir
from robopolicy.training.distributed import SINGLE_PROCESS, Distributed, weights_digest
from robopolicy.utils.machine import machine_facts

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "ddp.json"
WORLD_SIZE = 2
EPISODES = 24  # collected when no --dataset is given: ~600 samples, 2 full batches per rank
BATCHES = 2  # full batches of each rank's share that both variants cycle through
RECIPE = ["+experiment=main_job", "backbone=unet1d", "policy.args.horizon=16"]
RECIPE += ["data.batch_size=128", "data.val_ratio=0", "algo.eval_every=0", "progress=false"]
RECIPE += ["data.preflight_decode_images_mb=0", "logger=none"]


def flat_average_gradients(parameters: list[torch.nn.Parameter]) -> None:
    """The reference: every gradient replaced by its mean over the ranks, one all-reduce of one
    flat buffer once the backward pass has finished."""
    grads = [p.grad for p in parameters if p.grad is not None]
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= dist.get_world_size()
    offset = 0
    for grad in grads:
        grad.copy_(flat[offset : offset + grad.numel()].view_as(grad))
        offset += grad.numel()


def step_flat(run: bc.BCRun, batches) -> None:
    """One training step of the loop before DDP (module docstring)."""
    batch = next(batches)
    losses = run.policy.compute_loss(batch)
    run.optimizer.zero_grad(set_to_none=True)
    losses["loss"].backward()
    flat_average_gradients(run.parameters)
    torch.nn.utils.clip_grad_norm_(run.parameters, run.grad_clip, foreach=True)
    run.optimizer.step()
    run.scheduler.step()
    run.ema.update(run.policy)


def step_ddp(run: bc.BCRun, batches) -> None:
    bc._train_step(run, batches, nullcontext(), {"wait": 0.0, "compute": 0.0}, sync=False)


def build(dataset: Path, run_dir: Path, ranks: Distributed) -> bc.BCRun:
    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        cfg = compose(config_name="config", overrides=[f"task.dataset_path={dataset}", *RECIPE])
    torch.manual_seed(cfg.seed)
    run = bc._build_run(cfg, run_dir, torch.device("cpu"), ranks)
    run.policy.train()
    return run


def full_batches(run: bc.BCRun, count: int) -> list[dict]:
    """The first ``count`` batches of this rank's share, each of the configured size."""
    batches = list(itertools.islice(iter(run.loader), count))
    size = run.loader.loader.batch_size
    sizes = [len(batch["action"]) for batch in batches]
    if sizes != [size] * count:
        raise SystemExit(f"need {count} full batches of {size} per rank, got {sizes}: more data")
    return batches


def time_variants(variants: dict, batches: list, rounds: int, steps: int) -> dict:
    """Seconds per step of each round, variants alternating, every round between barriers."""
    batches = {name: itertools.cycle(batches) for name in variants}
    for name, (run, step) in variants.items():  # warm-up: allocator, DDP's bucket rebuild
        step(run, batches[name])
    seconds = {name: [] for name in variants}
    for _ in range(rounds):
        for name, (run, step) in variants.items():
            dist.barrier()
            start = time.perf_counter()
            for _ in range(steps):
                step(run, batches[name])
            dist.barrier()
            seconds[name].append((time.perf_counter() - start) / steps)
    return seconds


def rank_main(rank: int, dataset: str, store: str, out: str, rounds: int, steps: int) -> None:
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo", store=dist.FileStore(store, WORLD_SIZE), rank=rank, world_size=WORLD_SIZE
    )
    tmp = Path(out) / f"rank{rank}"
    ddp_run = build(Path(dataset), tmp / "ddp", Distributed(rank, WORLD_SIZE))
    flat_run = build(Path(dataset), tmp / "flat", SINGLE_PROCESS)  # no DDP: the reference's
    for tensor in flat_run.policy.state_dict().values():  # ... own broadcast of rank 0's weights
        dist.broadcast(tensor, src=0)
    variants = {"flat": (flat_run, step_flat), "ddp": (ddp_run, step_ddp)}
    seconds = time_variants(variants, full_batches(ddp_run, BATCHES), rounds, steps)
    digests = {name: weights_digest(run.policy) for name, (run, _) in variants.items()}
    gathered = [None] * WORLD_SIZE
    dist.all_gather_object(gathered, digests)
    if rank == 0:
        parameters = sum(p.numel() for p in ddp_run.parameters)
        report = {name: summary(seconds[name], gathered, name) for name in variants}
        report["parameters"] = parameters
        (Path(out) / "rank0.json").write_text(json.dumps(report))
    dist.destroy_process_group()


def summary(seconds: list[float], digests: list[dict], name: str) -> dict:
    return {
        "seconds_per_step_best": round(min(seconds), 4),
        "seconds_per_step_mean": round(sum(seconds) / len(seconds), 4),
        "replicas_identical": len({digest[name] for digest in digests}) == 1,
    }


def collect_dataset(out: Path) -> Path:
    dataset = out / "push.zarr"
    command = [sys.executable, "datasets/collect.py", f"n_episodes={EPISODES}", f"out={dataset}"]
    command += ["task.env_kwargs.obs_mode=state", f"hydra.run.dir={out / 'collect'}"]
    subprocess.run(command, cwd=ROOT, check=True, capture_output=True)
    return dataset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", type=Path, default=None, help="default: collect some")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--steps", type=int, default=4, help="steps per round")
    args = parser.parse_args()
    started, load = time.perf_counter(), round(os.getloadavg()[0], 2)
    with tempfile.TemporaryDirectory(prefix="bench_ddp_") as tmp:
        dataset = args.dataset or collect_dataset(Path(tmp))
        spawn_args = (str(dataset), str(Path(tmp) / "store"), tmp, args.rounds, args.steps)
        mp.spawn(rank_main, args=spawn_args, nprocs=WORLD_SIZE, join=True)
        results = json.loads((Path(tmp) / "rank0.json").read_text())
    results["ratio_ddp_over_flat"] = {
        key: round(results["ddp"][key] / results["flat"][key], 3)
        for key in ("seconds_per_step_best", "seconds_per_step_mean")
    }
    report = {
        "command": "python bench/bench_ddp.py"
        + (f" --rounds {args.rounds}" if args.rounds != 6 else "")
        + (f" --steps {args.steps}" if args.steps != 4 else ""),
        "recipe": RECIPE,
        "world_size": WORLD_SIZE,
        "backend": "gloo",
        "torch_threads_per_rank": 1,
        "rounds": args.rounds,
        "steps_per_round": args.steps,
        "machine": machine_facts(load),
        "results": results,
        "total_seconds": round(time.perf_counter() - started, 1),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    print(f"wrote {RESULTS} ({report['total_seconds']}s)")


if __name__ == "__main__":
    main()
