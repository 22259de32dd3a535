"""robopolicy against its peers, LeRobot's DiffusionPolicy and (optionally) diffusion_policy's
ConditionalUnet1D with a diffusers scheduler, at one architecture (bench/peer_policies.py), in one
process on one torch thread. Not part of CI: it needs the peers' own virtualenv.

    bash scripts/make_peers_venv.sh                        # builds .venv-peers/ (once, ~2 min)
    .venv-peers/bin/python bench/bench_peers.py            # writes bench/results/peers.json
    .venv-peers/bin/python bench/bench_peers.py --quick    # smoke run, writes nothing
    DIFFUSION_POLICY_SRC=/path/to/diffusion_policy .venv-peers/bin/python bench/bench_peers.py

Rows: inference per action chunk at batch 1 (state DDIM-10, state DDPM-100, two cameras DDIM-10),
training steps (AdamW, synthetic batch in memory; state batch 256, two cameras batch 64) and
sequence sampling (our zarr SequenceDataset against LeRobotDataset, bench/peer_data.py). Where
the code it runs has them, our DDIM rows get two more entries: ``robopolicy_onnx``
(``runtime="onnx"``, robopolicy/policies/runtime.py) and ``robopolicy_bf16`` (bfloat16 autocast,
``autocast_dtype="bf16"``); the other branches' options it uses are printed and recorded. Within a
row the peers alternate, each repetition in a rotated order, and each figure is the median over
repetitions of wall-clock time (time.perf_counter) and of this process's CPU time
(time.process_time). Ratios are robopolicy / peer: latency for inference (below 1 is faster),
samples per second for training and sampling (above 1 is faster). FLOPs per call are counted by
torch's FlopCounterMode (matmuls and convolutions, a multiply-add = 2); "of peak" divides the
achieved FLOPs per CPU-second by a float32 1024x1024 matmul's, on the same thread in this run
(CPU time on both sides: on a shared machine wall-clock time includes waiting for the core).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results" / "peers.json"
VENV_HINT = (
    "build it with `bash scripts/make_peers_venv.sh`, "
    "then run `.venv-peers/bin/python bench/bench_peers.py`"
)

if importlib.util.find_spec("lerobot") is None:
    print(f"bench_peers: lerobot is not importable from {sys.executable}; {VENV_HINT}")
    sys.exit(0)
os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")  # a bar per episode written

import numpy as np  # noqa: E402
import peer_data  # noqa: E402
import peer_policies as pp  # noqa: E402
import torch  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402


def matmul_peak(seconds: float) -> float:
    """Best float32 1024x1024 matmul FLOPs per CPU-second over a few timed rounds (the compute
    reference; CPU time, so that other jobs sharing the core do not lower it)."""
    a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
    best, deadline = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        start = time.process_time()
        for _ in range(5):
            a @ b
        best = max(best, 5 * 2 * 1024**3 / max(time.process_time() - start, 1e-9))
    return best


def interleaved(calls: dict, repeats: int) -> dict:
    """Each call's FLOPs (one counted call, also the warm-up) and median wall and CPU seconds
    over ``repeats`` rounds, the calls alternated in an order rotated every round."""
    out = {}
    for name, call in calls.items():
        with FlopCounterMode(display=False) as counter:
            call()
        out[name] = {"flops": float(counter.get_total_flops()), "wall": [], "cpu": []}
    names = list(calls)
    for turn in range(repeats):
        for name in names[turn % len(names) :] + names[: turn % len(names)]:
            start, cpu = time.perf_counter(), time.process_time()
            calls[name]()
            out[name]["wall"].append(time.perf_counter() - start)
            out[name]["cpu"].append(time.process_time() - cpu)
    return {
        name: {
            "wall_s": float(np.median(m["wall"])),
            "cpu_s": float(np.median(m["cpu"])),
            "flops": m["flops"],
        }
        for name, m in out.items()
    }


def observations(images: bool, batch: int) -> tuple[dict, dict]:
    """The same random observation history for ours ``(B, To, ...)`` and LeRobot (one step,
    ``(B, ...)``: select_action keeps the history; after a reset it repeats the first step)."""
    ours = {
        "robot_state": torch.randn(batch, pp.N_OBS, pp.ROBOT_STATE),
        "env_state": torch.randn(batch, pp.N_OBS, pp.ENV_STATE),
    }
    theirs = {
        "observation.state": ours["robot_state"][:, -1],
        "observation.environment_state": ours["env_state"][:, -1],
    }
    if images:
        for camera in pp.CAMERAS:
            frames = torch.randint(0, 256, (batch, pp.N_OBS, pp.IMAGE, pp.IMAGE, 3)).byte()
            ours[camera] = frames
            theirs[f"observation.images.{camera}"] = frames[:, -1]
    return ours, theirs


def lerobot_chunk(policy, obs: dict):
    """One action chunk through LeRobot's public API: reset, then select_action (which runs the
    whole chunk); uint8 HWC frames become float CHW in [0, 1] as LeRobot's env wrappers do."""
    batch = {
        key: value.permute(0, 3, 1, 2).float() / 255 if value.dtype == torch.uint8 else value
        for key, value in obs.items()
    }
    policy.reset()
    return policy.select_action(batch)


def inference_row(name: str, images: bool, ours_sampler: str, lerobot_scheduler: str, dp, args):
    ours = pp.ours_policy(images).eval()
    lerobot = pp.lerobot_policy(images, lerobot_scheduler).eval()
    steps = 10 if ours_sampler == "ddim" else pp.TRAIN_STEPS
    ours_obs, lerobot_obs = observations(images, 1)
    calls = {
        "robopolicy": lambda: ours.predict_action(ours_obs, num_steps=steps, sampler=ours_sampler),
        "lerobot": lambda: lerobot_chunk(lerobot, lerobot_obs),
    }
    if dp is not None and not images:
        unet = dp(lerobot_scheduler).eval()
        state = torch.cat([ours_obs["robot_state"], ours_obs["env_state"]], -1)
        calls["diffusion_policy"] = lambda: unet.predict_action(state)
    if ours_sampler == "ddim" and pp.has_sampler_option("autocast_dtype"):
        calls["robopolicy_bf16"] = lambda: ours.predict_action(
            ours_obs, num_steps=steps, sampler="ddim", autocast_dtype="bf16"
        )
    onnx = None
    if ours_sampler == "ddim":  # the ONNX runtime unrolls deterministic chains only
        onnx = pp.onnx_predictor(ours, {"num_steps": steps, "sampler": "ddim", "eta": 0.0})
    if onnx is not None:
        predictor, options = onnx
        with torch.no_grad():
            predictor.predict_action(ours_obs, **options)  # exports the graph (cached after)
        calls["robopolicy_onnx"] = lambda: predictor.predict_action(ours_obs, **options)
    with torch.no_grad():
        results = interleaved(calls, args.repeats)
    if "robopolicy_onnx" in results:  # torch's counter sees no ONNX Runtime ops: the same graph
        results["robopolicy_onnx"]["flops"] = results["robopolicy"]["flops"]
    for peer in results.values():
        peer["ms_per_chunk"] = peer["wall_s"] * 1e3
        peer["cpu_ms_per_chunk"] = peer["cpu_s"] * 1e3
        peer["gflop_per_chunk"] = peer["flops"] / 1e9
        peer["of_peak"] = peer["flops"] / peer["cpu_s"] / args.peak
    return {"row": name, "kind": "inference", "batch": 1, "peers": results}


def train_step(loss_fn, optimizer: torch.optim.Optimizer, clip: float | None):
    """One step as each library's training loop takes it: loss, backward, the gradient-norm clip
    of its defaults (when it has one), the optimizer step. No EMA: LeRobot 0.3.2 keeps none."""
    params = [p for group in optimizer.param_groups for p in group["params"]]

    def step():
        loss = loss_fn()
        optimizer.zero_grad()
        loss.backward()
        if clip is not None:
            torch.nn.utils.clip_grad_norm_(params, clip)
        optimizer.step()

    return step


def training_batches(images: bool, batch: int) -> tuple[dict, dict]:
    ours_obs, _ = observations(images, batch)
    action = torch.rand(batch, pp.HORIZON, pp.ACTION_DIM) * 2 - 1
    is_pad = torch.zeros(batch, pp.HORIZON, dtype=torch.bool)
    ours = {"obs": ours_obs, "action": action, "is_pad": is_pad}
    theirs = {
        "observation.state": ours_obs["robot_state"],
        "observation.environment_state": ours_obs["env_state"],
        "action": action,
        "action_is_pad": is_pad,
    }
    if images:
        for camera in pp.CAMERAS:
            frames = ours_obs[camera].permute(0, 1, 4, 2, 3).float() / 255
            theirs[f"observation.images.{camera}"] = frames
    return ours, theirs


def training_row(name: str, images: bool, batch: int, dp, args) -> dict:
    ours = pp.ours_policy(images).train()
    lerobot = pp.lerobot_policy(images, "DDPM").train()
    ours_batch, lerobot_batch = training_batches(images, batch)

    calls = {
        "robopolicy": train_step(
            lambda: ours.compute_loss(ours_batch)["loss"], *pp.ours_optimizer(ours)
        ),
        "lerobot": train_step(
            lambda: lerobot.forward(lerobot_batch)[0], *pp.lerobot_optimizer(lerobot)
        ),
    }
    if dp is not None and not images:
        model = dp("DDPM").train()
        obs = ours_batch["obs"]
        state = torch.cat([obs["robot_state"], obs["env_state"]], -1)
        calls["diffusion_policy"] = train_step(
            lambda: model.compute_loss(state, ours_batch["action"]), *model.optimizer()
        )
    results = interleaved(calls, max(2, args.repeats // 2) if images else args.repeats)
    for peer in results.values():
        peer["samples_per_s"] = batch / peer["wall_s"]
        peer["samples_per_cpu_s"] = batch / peer["cpu_s"]
        peer["of_peak"] = peer["flops"] / peer["cpu_s"] / args.peak
    return {"row": name, "kind": "training", "batch": batch, "peers": results}


def sampling_rows(args) -> list[dict]:
    print(peer_data.VIDEO_UNAVAILABLE + "; LeRobot's cameras are stored as PNG images")
    rows = []
    for name, images, count in (
        ("sampling, state", False, 2000),
        ("sampling, 2 cameras", True, 300),
    ):
        data = peer_data.episodes(20, 100, images)
        with tempfile.TemporaryDirectory() as tmp:
            ours = peer_data.write_zarr(Path(tmp) / "bench.zarr", data, images)
            theirs = peer_data.write_lerobot(Path(tmp) / "lerobot", data, images)
            peer_data.check_same_window(ours, theirs)
            samples = count // 10 if args.quick else count
            rates = peer_data.sampling_rates({"robopolicy": ours, "lerobot": theirs}, samples, 10)
        rows.append({"row": name, "kind": "sampling", "batch": 1, "peers": rates})
    return rows


OURS = ("robopolicy", "robopolicy_bf16", "robopolicy_onnx")


def add_ratios(row: dict) -> None:
    """robopolicy / peer for each of our runtimes and each peer: latency (inference) or samples
    per second (training, sampling)."""
    peers, ratios = row["peers"], {}
    measure = ("wall_s", "cpu_s") if row["kind"] == "inference" else None
    for ours_name in [name for name in OURS if name in peers]:
        ours = peers[ours_name]
        for name in [name for name in peers if name not in OURS]:
            peer = peers[name]
            if measure:
                wall, cpu = (ours[key] / peer[key] for key in measure)
            else:
                wall = ours["samples_per_s"] / peer["samples_per_s"]
                cpu = ours["samples_per_cpu_s"] / peer["samples_per_cpu_s"]
            ratios[f"{ours_name}/{name}"] = {"wall": wall, "cpu": cpu}
    row["ratios"] = ratios


def print_row(row: dict) -> None:
    print(f"{row['row']} (batch {row['batch']}):")
    for name, peer in row["peers"].items():
        if row["kind"] == "inference":
            figures = (
                f"{peer['ms_per_chunk']:9.1f} ms/chunk (CPU {peer['cpu_ms_per_chunk']:8.1f})"
                f" {peer['gflop_per_chunk']:7.3f} GFLOP {peer['of_peak']:6.1%} of peak"
            )
        else:
            figures = (
                f"{peer['samples_per_s']:9.1f} samples/s ({peer['samples_per_cpu_s']:9.1f} /CPU-s)"
            )
        print(f"  {name:17s}{figures}")
    for pair, ratio in row["ratios"].items():
        print(f"  ratio {pair}: {ratio['wall']:.2f} wall, {ratio['cpu']:.2f} CPU")


def parameter_table(dp) -> dict:
    """Parameter counts: whole policy, its image encoders (ResNet-18 + spatial softmax +
    projection per camera) and the rest (the UNet, and LeRobot's normalizer statistics)."""
    table = {}
    for images in (False, True):
        label = "2 cameras" if images else "state"
        table[label] = {
            "robopolicy": pp.parameter_counts(
                pp.ours_policy(images), ("obs_encoder.image_encoders",)
            ),
            "lerobot": pp.parameter_counts(
                pp.lerobot_policy(images, "DDIM"), ("diffusion.rgb_encoder",)
            ),
        }
    if dp is not None:
        table["state"]["diffusion_policy"] = pp.parameter_counts(dp("DDIM"), ())
    for label, peers in table.items():
        counts = ", ".join(
            f"{name} {c['total']:,} (encoders {c['image_encoder']:,})" for name, c in peers.items()
        )
        print(f"parameters, {label}: {counts}")
    return table


def versions() -> dict:
    names = ("torch", "lerobot", "torchvision", "diffusers", "numpy", "zarr", "gymnasium")
    return {name: importlib.metadata.version(name) for name in names}


def busy_processes(min_share: float = 20.0) -> list[str]:
    """Other processes holding at least ``min_share`` % of a core, as ps reports it (CPU time
    over each process's lifetime): what this run shared the machine with."""
    listing = subprocess.run(
        ["ps", "-eo", "pid=,pcpu=,args="], capture_output=True, text=True, check=False
    ).stdout
    busy = []
    for line in listing.splitlines():
        pid, share, command = line.split(maxsplit=2)
        if int(pid) != os.getpid() and float(share) >= min_share:
            busy.append(f"{float(share):.0f}% {command[:120]}")
    return busy


def machine(load_start: float, busy_start: list[str], others: str) -> dict:
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "device": "cpu",
        "load_average_1min_start": load_start,
        "load_average_1min_end": os.getloadavg()[0],
        "also_running": others,
        "busy_processes_start": busy_start,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few repeats, write nothing")
    parser.add_argument("--repeats", type=int, default=7, help="interleaved rounds per row")
    parser.add_argument("--also-running", default="", help="what else ran on the machine")
    parser.add_argument("--output", type=Path, default=RESULTS, help="where the JSON goes")
    args = parser.parse_args()
    sys.stdout.reconfigure(line_buffering=True)  # progress shows when the output is a file
    if args.quick:
        args.repeats = 2
    torch.set_num_threads(1)
    torch.manual_seed(0)
    load_start, busy_start = os.getloadavg()[0], busy_processes()
    print(f"load average {load_start:.2f}; busy processes: {busy_start or 'none'}")
    dp_source = pp.diffusion_policy_source()
    dp = pp.DiffusionPolicyUnet if dp_source is not None else None
    if dp is None:
        print("diffusion_policy: skipped (set DIFFUSION_POLICY_SRC to a checkout to include it)")
    print(f"robopolicy options from the other branches: {pp.picked_up() or 'none present'}")
    args.peak = matmul_peak(0.5 if args.quick else 3.0)
    print(f"matmul peak (float32, 1 thread): {args.peak / 1e9:.1f} GFLOP per CPU-second")
    params = parameter_table(dp)
    rows = []
    for build in (
        lambda: [inference_row("state, UNet, DDIM-10", False, "ddim", "DDIM", dp, args)],
        lambda: [inference_row("state, UNet, DDPM-100", False, "ddpm", "DDPM", dp, args)],
        lambda: [inference_row("2 cameras, UNet, DDIM-10", True, "ddim", "DDIM", dp, args)],
        lambda: [training_row("training step, state", False, 256, dp, args)],
        lambda: [training_row("training step, 2 cameras", True, 64, dp, args)],
        lambda: sampling_rows(args),
    ):
        for row in build():
            add_ratios(row)
            print_row(row)
            rows.append(row)
    if args.quick:
        return
    args.output.parent.mkdir(parents=True, exist_ok=True)
    result = {
        "machine": machine(load_start, busy_start, args.also_running),
        "versions": versions(),
        "robopolicy_options": pp.picked_up(),
        "diffusion_policy_source": str(dp_source) if dp_source else None,
        "lerobot_video": peer_data.VIDEO_UNAVAILABLE,
        "matmul_peak_gflop_per_cpu_s": args.peak / 1e9,
        "parameters": params,
        "rows": rows,
    }
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
