"""Inference runtimes at batch 1: eager torch against the ONNX runtime (sampler.runtime=onnx), per
action chunk, against this machine's compute limit.

    .venv/bin/python bench/bench_runtime.py            # writes bench/results/runtime.json, ~3 min
    .venv/bin/python bench/bench_runtime.py --quick    # smoke run, writes nothing

One torch thread and one onnxruntime intra-op thread (``--threads``). The policies are
bench/bench_policy.py's (horizon 16, 2 observation steps, action 7; state = 23 low-dim floats; 2
cameras = two 96x96 RGB images through ResNet-18 with GroupNorm, 84x84 crops, spatial softmax;
UNet 64-128-256, MLP 512 x 3), each sampled with DDIM-10 (and one flow policy with Euler-10).
For each, the two runtimes' calls are interleaved (eager, onnx, eager, ...) so that a change in
the machine's load hits both; the ratio is of the two medians, and of the two fastest calls (on a
shared, loaded machine the fastest call is the closest to the uncontended figure). FLOPs per
chunk are counted on the eager call by ``torch.utils.flop_counter.FlopCounterMode`` (matmuls and
convolutions, a multiply-add = 2); "of peak" divides the achieved FLOP/s by the best float32
1024x1024 matmul rate measured in the same run on the same threads, and "x of limit" is its
inverse (how many times slower than the compute limit a chunk runs). Export time (the first call
of a checkpoint; later ones load the cached graph) and the largest difference between the two
runtimes' actions are reported too.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime
import torch
from torch.utils.flop_counter import FlopCounterMode

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from bench_policy import batch, make_policy, matmul_peak  # noqa: E402

from robopolicy.policies.runtime import OnnxPolicy  # noqa: E402

RESULTS = REPO / "bench" / "results" / "runtime.json"
CASES = [  # (observations, policy, backbone, images, sampler options, sampler name)
    ("state", "diffusion", "mlp", False, {"num_steps": 10, "sampler": "ddim"}, "DDIM-10"),
    ("state", "diffusion", "unet", False, {"num_steps": 10, "sampler": "ddim"}, "DDIM-10"),
    ("state", "flow", "unet", False, {"num_steps": 10, "solver": "euler"}, "Euler-10"),
    ("2 cameras", "diffusion", "unet", True, {"num_steps": 10, "sampler": "ddim"}, "DDIM-10"),
]


def interleaved(calls: dict, repeats: int) -> dict[str, list[float]]:
    """Each call's seconds, ``repeats`` times, the calls taking turns (after a warm-up round)."""
    times: dict[str, list[float]] = {name: [] for name in calls}
    for round_ in range(repeats + 1):
        for name, call in calls.items():
            start = time.perf_counter()
            call()
            if round_:
                times[name].append(time.perf_counter() - start)
    return times


def measure(case: tuple, peak: float, repeats: int, cache_dir: Path) -> dict:
    """One row: both runtimes' latency, FLOPs, share of peak, export time, largest difference."""
    obs_name, kind, backbone, images, options, sampler = case
    policy = make_policy(kind, backbone, images)
    obs = batch(images, 1)["obs"]
    noise = torch.randn(1, policy.horizon, policy.action_dim)
    start = time.perf_counter()
    runtime = OnnxPolicy(policy, cache_dir=cache_dir, **options)
    export_s = time.perf_counter() - start
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        eager = policy.predict_action(obs, noise, **options)["action_pred"]
    onnx = runtime.predict_action(obs, noise)["action_pred"]
    with torch.no_grad():
        times = interleaved(
            {
                "eager": lambda: policy.predict_action(obs, noise, **options),
                "onnx": lambda: runtime.predict_action(obs, noise),
            },
            repeats,
        )
    flops = float(counter.get_total_flops())
    row = {
        "obs": obs_name,
        "policy": kind,
        "backbone": backbone,
        "sampler": sampler,
        "gflop_per_chunk": flops / 1e9,
        "export_s": export_s,
        "max_abs_diff": float((eager - onnx).abs().max()),
    }
    for name, values in times.items():
        median, best = float(np.median(values)), float(np.min(values))
        row[f"{name}_ms"], row[f"{name}_best_ms"] = median * 1e3, best * 1e3
        row[f"{name}_of_peak"] = flops / median / peak
        row[f"{name}_best_of_peak"] = flops / best / peak
        row[f"{name}_x_of_limit"] = median * peak / flops
    row["speedup"] = row["eager_ms"] / row["onnx_ms"]
    row["speedup_best"] = row["eager_best_ms"] / row["onnx_best_ms"]
    print(
        f"  {obs_name:9s} {kind:9s} {backbone:4s} {sampler:8s} {flops / 1e9:6.3f} GFLOP  "
        f"eager {row['eager_ms']:7.2f} ms ({row['eager_of_peak']:5.1%})  "
        f"onnx {row['onnx_ms']:7.2f} ms ({row['onnx_of_peak']:5.1%})  "
        f"{row['speedup']:4.2f}x (best {row['onnx_best_ms']:.2f} ms, {row['speedup_best']:4.2f}x)  "
        f"diff {row['max_abs_diff']:.1e}  export {export_s:4.1f} s"
    )
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few repeats, write nothing")
    parser.add_argument("--threads", type=int, default=1, help="torch and onnxruntime threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)  # the session takes torch's thread count
    torch.manual_seed(0)
    repeats = 3 if args.quick else 21
    load_before = os.getloadavg()[0]
    peak = matmul_peak(0.5 if args.quick else 3.0)
    print(f"matmul peak (float32, {args.threads} thread(s)): {peak / 1e9:.1f} GFLOP/s")
    print("batch 1, per action chunk (share of the matmul peak):")
    with tempfile.TemporaryDirectory() as cache_dir:
        rows = [measure(case, peak, repeats, Path(cache_dir)) for case in CASES]
    peak_after = matmul_peak(0.5 if args.quick else 3.0)
    print(f"matmul peak again, after the rows: {peak_after / 1e9:.1f} GFLOP/s")
    if args.quick:
        return
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    machine = {
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "threads": args.threads,
        "load_average_1min_before": load_before,
        "load_average_1min_after": os.getloadavg()[0],
    }
    summary = {
        "machine": machine,
        "torch": torch.__version__,
        "onnxruntime": onnxruntime.__version__,
        "matmul_peak_gflops": peak / 1e9,
        "matmul_peak_after_gflops": peak_after / 1e9,
        "repeats": repeats,
        "rows": rows,
    }
    RESULTS.write_text(json.dumps(summary, indent=2))
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
