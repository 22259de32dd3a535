"""Policy speed against this machine's compute limit: inference latency per action chunk, training
throughput, and the share of a training step spent waiting for data.

    .venv/bin/python bench/bench_policy.py            # writes bench/results/policy.json, ~3 min
    .venv/bin/python bench/bench_policy.py --quick    # smoke run, writes nothing

For each configuration the network's floating-point operations are counted with
``torch.utils.flop_counter.FlopCounterMode`` (matrix multiplies and convolutions; a multiply-add
counts 2), and this CPU's dense matmul peak is measured in the same run (float32 1024x1024
matmuls with the same thread count). "of peak" is achieved FLOP/s divided by that peak: the
reference that says how far each figure is from the compute limit.

Configurations (the defaults of conf/policy and conf/backbone unless noted), batch 1 for
inference (one robot), batch 64 for training:

* state policy: 4 low-dim keys (23 floats), action 7, horizon 16, 2 observation steps, UNet
  (64-128-256) or MLP (512 x 3) denoiser;
* image policy: two 96x96 RGB cameras (ResNet-18 with GroupNorm, 84x84 crops, spatial softmax)
  plus the same low-dim keys, UNet denoiser;
* samplers: DDPM 100 steps, DDIM 10 steps (diffusion); Euler 10, 4 and 1 steps (flow).

Training throughput uses synthetic batches already in memory (pure compute), and separately the
real loader over a dataset written to a temporary directory, whose waiting share is reported.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from robopolicy.data.normalizer import Normalizer
from robopolicy.data.torch_dataset import SequenceDataset, make_dataloader
from robopolicy.data.writer import DatasetWriter
from robopolicy.policies.registry import build_policy

RESULTS = Path(__file__).resolve().parent / "results" / "policy.json"
LOW_DIM = {"eef_pos": 3, "eef_quat": 4, "gripper_pos": 2, "object_state": 14}
ACTION_DIM = 7
BACKBONES = {
    "unet": ("unet1d", {"down_dims": [64, 128, 256], "kernel_size": 5, "n_groups": 8}),
    "mlp": ("mlp", {"hidden_dims": [512, 512, 512]}),
}


def shape_meta(images: bool) -> dict:
    obs = {key: {"shape": [dim], "type": "low_dim"} for key, dim in LOW_DIM.items()}
    if images:
        for camera in ("scene_rgb", "wrist_rgb"):
            obs[camera] = {"shape": [96, 96, 3], "type": "rgb"}
    return {"obs": obs, "action": {"shape": [ACTION_DIM]}}


def make_policy(kind: str, backbone: str, images: bool) -> torch.nn.Module:
    meta = shape_meta(images)
    normalizer = Normalizer.from_shape_meta(meta)
    rng = np.random.default_rng(0)
    normalizer.fit(
        {
            key: rng.normal(size=(100, *spec["shape"]))
            for key, spec in meta["obs"].items()
            if spec["type"] == "low_dim"
        }
        | {"action": rng.uniform(-1, 1, (100, ACTION_DIM))}
    )
    name, kwargs = BACKBONES[backbone]
    args = {
        "horizon": 16,
        "n_obs_steps": 2,
        "n_action_steps": 8,
        "backbone": name,
        "backbone_kwargs": kwargs,
        "num_inference_steps": 10,
    }
    if images:
        args["obs_encoder_kwargs"] = {"crop_shape": [84, 84]}
    if kind == "diffusion":
        args["num_train_timesteps"] = 100
    return build_policy(kind, meta, normalizer, args).eval()


def batch(images: bool, size: int) -> dict:
    obs = {key: torch.randn(size, 2, dim) for key, dim in LOW_DIM.items()}
    if images:
        for camera in ("scene_rgb", "wrist_rgb"):
            obs[camera] = torch.randint(0, 256, (size, 2, 96, 96, 3), dtype=torch.uint8)
    return {
        "obs": obs,
        "action": torch.rand(size, 16, ACTION_DIM) * 2 - 1,
        "is_pad": torch.zeros(size, 16, dtype=torch.bool),
    }


def matmul_peak(seconds: float) -> float:
    """Best float32 matmul FLOP/s of a few timed rounds (the compute-limit reference)."""
    a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
    for _ in range(3):
        a @ b
    best = 0.0
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        start = time.perf_counter()
        for _ in range(10):
            a @ b
        best = max(best, 10 * 2 * 1024**3 / (time.perf_counter() - start))
    return best


def timed(fn, repeats: int) -> tuple[float, float]:
    """(median seconds, FLOPs of one call)."""
    with FlopCounterMode(display=False) as counter:
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times)), float(counter.get_total_flops())


def inference_rows(peak: float, repeats: int) -> list[dict]:
    rows = []
    cases = [
        ("state", "diffusion", "unet", False, {"num_steps": 100, "sampler": "ddpm"}, "DDPM-100"),
        ("state", "diffusion", "unet", False, {"num_steps": 10, "sampler": "ddim"}, "DDIM-10"),
        ("state", "diffusion", "mlp", False, {"num_steps": 10, "sampler": "ddim"}, "DDIM-10"),
        ("state", "flow", "unet", False, {"num_steps": 10}, "Euler-10"),
        ("state", "flow", "unet", False, {"num_steps": 4}, "Euler-4"),
        ("state", "flow", "unet", False, {"num_steps": 1}, "Euler-1"),
        ("2 cameras", "diffusion", "unet", True, {"num_steps": 100, "sampler": "ddpm"}, "DDPM-100"),
        ("2 cameras", "diffusion", "unet", True, {"num_steps": 10, "sampler": "ddim"}, "DDIM-10"),
        ("2 cameras", "flow", "unet", True, {"num_steps": 10}, "Euler-10"),
        ("2 cameras", "flow", "unet", True, {"num_steps": 4}, "Euler-4"),
        ("2 cameras", "flow", "unet", True, {"num_steps": 1}, "Euler-1"),
    ]
    policies: dict[tuple, torch.nn.Module] = {}
    for obs, kind, backbone, images, options, sampler in cases:
        key = (kind, backbone, images)
        if key not in policies:
            policies[key] = make_policy(kind, backbone, images)
        policy, obs_batch = policies[key], batch(images, 1)["obs"]
        with torch.no_grad():
            seconds, flops = timed(
                lambda p=policy, o=obs_batch, op=options: p.predict_action(o, **op), repeats
            )
        rows.append(
            {
                "obs": obs,
                "policy": kind,
                "backbone": backbone,
                "sampler": sampler,
                "ms_per_chunk": seconds * 1e3,
                "gflop_per_chunk": flops / 1e9,
                "of_peak": flops / seconds / peak,
            }
        )
        print(
            f"  {obs:9s} {kind:9s} {backbone:4s} {sampler:8s} {seconds * 1e3:9.2f} ms/chunk "
            f"{flops / 1e9:8.3f} GFLOP  {flops / seconds / peak:6.1%} of peak"
        )
    return rows


def training_rows(peak: float, repeats: int) -> list[dict]:
    rows = []
    for obs, images, batch_size in (("state", False, 256), ("2 cameras", True, 64)):
        policy = make_policy("diffusion", "unet", images).train()
        optimizer = torch.optim.AdamW(policy.parameters(), lr=1e-4)
        data = batch(images, batch_size)

        def step(p=policy, o=optimizer, d=data):
            loss = p.compute_loss(d)["loss"]
            o.zero_grad()
            loss.backward()
            o.step()

        seconds, flops = timed(step, repeats)
        rows.append(
            {
                "obs": obs,
                "batch_size": batch_size,
                "samples_per_s": batch_size / seconds,
                "ms_per_step": seconds * 1e3,
                "gflop_per_step": flops / 1e9,
                "of_peak": flops / seconds / peak,
            }
        )
        print(
            f"  {obs:9s} batch {batch_size:3d}: {batch_size / seconds:8.0f} samples/s, "
            f"{seconds * 1e3:8.1f} ms/step, {flops / seconds / peak:6.1%} of peak"
        )
    return rows


def data_wait(steps: int) -> dict:
    """Share of a real training step spent waiting for the loader (2-camera dataset, in memory)."""
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.zarr"
        with DatasetWriter.create(path, shape_meta(True), fps=10) as writer:
            for _ in range(10):
                steps_data = {
                    key: rng.normal(size=(60, dim)).astype(np.float32)
                    for key, dim in LOW_DIM.items()
                }
                for camera in ("scene_rgb", "wrist_rgb"):
                    steps_data[camera] = rng.integers(0, 256, (60, 96, 96, 3), dtype=np.uint8)
                steps_data["action"] = rng.uniform(-1, 1, (60, ACTION_DIM)).astype(np.float32)
                writer.append_episode(steps_data)
        dataset = SequenceDataset.from_path(path, 16, 2, 8, in_memory=True)
        policy = make_policy("diffusion", "unet", True).train()
        optimizer = torch.optim.AdamW(policy.parameters(), lr=1e-4)
        out = {}
        for workers in (0, 1):
            loader = make_dataloader(dataset, 64, num_workers=workers)
            wait = compute = 0.0
            iterator = _endless(loader)
            next(iterator)
            for _ in range(steps):
                start = time.perf_counter()
                data = next(iterator)
                fetched = time.perf_counter()
                loss = policy.compute_loss(data)["loss"]
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                wait += fetched - start
                compute += time.perf_counter() - fetched
            share, rate = wait / (wait + compute), steps * 64 / (wait + compute)
            out[f"{workers}_workers"] = {"wait_share": share, "samples_per_s": rate}
            print(
                f"  2-camera loader, {workers} worker(s): waiting {share:.1%} of the step, "
                f"{rate:.0f} samples/s"
            )
    return out


def _endless(loader):
    while True:
        yield from loader


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few repeats, write nothing")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    repeats = 2 if args.quick else 7
    peak = matmul_peak(0.5 if args.quick else 3.0)
    print(f"matmul peak (float32, {args.threads} threads): {peak / 1e9:.1f} GFLOP/s")
    print("inference, batch 1:")
    inference = inference_rows(peak, repeats)
    print("training step (synthetic batch in memory):")
    training = training_rows(peak, repeats)
    print("training step with the real loader:")
    loader = data_wait(3 if args.quick else 20)
    if args.quick:
        return
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "machine": {
                    "platform": platform.platform(),
                    "cpus": os.cpu_count(),
                    "threads": args.threads,
                    "load_average_1min": os.getloadavg()[0],
                },
                "matmul_peak_gflops": peak / 1e9,
                "inference": inference,
                "training": training,
                "loader": loader,
            },
            indent=2,
        )
    )
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
