"""Sampler throughput against a plain-numpy reference measured in the same run.

Run: ``.venv/bin/python bench/bench_sampler.py`` (two to three minutes on 2 shared cores). It
builds two synthetic datasets in a temporary directory, a low-dim one and one with two 96x96
RGB cameras, and measures samples/s for

- ``reference``: diffusion_policy's fully decompressed in-RAM path (its ``ReplayBuffer`` loaded
  into numpy and its ``SequenceSampler``), written here from its description: every array
  decompressed up front, an index table with each window's buffer rows and padding, a sample is
  a slice per key padded by repeating the edge rows, a batch is the samples stacked (torch's
  default collate). It holds every image decompressed in RAM (the image dataset's 2 x 4800
  frames are 265 MB this way);
- ``SequenceSampler`` on disk and in memory (compressed chunks in RAM), with the fast frame path
  and with plain zarr indexing (``fast_images=False``), and with its images decoded into RAM
  (``decoded_cache_bytes``, train.py's ``data.decoded_cache_mb``), one window at a time and in
  batches of 256 (``get_batch``, what the loader calls); our samplers use diffusion_policy's
  windows (``end_padding="action_steps"``) so that both sample the same set;
- ``make_dataloader`` with 0 and 2 workers, batches of 256, over our sampler and over the
  reference (each loader figure is compared with the reference served the same way).

Two figures per row: samples/s of wall-clock time (the best of 4 rounds, the least disturbed by
other processes) and samples per CPU-second (this process and its loader workers, over all
rounds: the work done, whatever share of the cores the run got). Each is printed with its ratio
to its reference and written to ``bench/results/sampler.json``, which ``docs/benchmarks.md``
quotes. This machine's 2 cores are shared, so absolute figures move by tens of percent between
runs; ratios are taken within one run.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import tempfile
import time
from pathlib import Path

import numcodecs.blosc
import numpy as np
import torch

from robopolicy.data import DatasetWriter, ReplayBuffer
from robopolicy.data.sampler import SequenceSampler
from robopolicy.data.torch_dataset import SequenceDataset, make_dataloader
from robopolicy.utils.machine import machine_facts

HORIZON, N_OBS_STEPS, N_ACTION_STEPS = 16, 2, 8
BATCH_SIZE = 256  # windows per batch, the training default
RESULTS = Path(__file__).parent / "results" / "sampler.json"


def synthetic_frames(rng: np.random.Generator, length: int, phase: float) -> np.ndarray:
    """Camera-like frames: a smooth gradient, a moving square and sensor noise (compressible)."""
    y, x = np.mgrid[0:96, 0:96]
    base = np.stack([x * 2, y * 2, (x + y)], axis=-1).astype(np.int16)
    frames = np.empty((length, 96, 96, 3), dtype=np.uint8)
    for t in range(length):
        frame = base.copy()
        cx = int(40 + 30 * np.sin(phase + t / 10))
        frame[30:50, cx - 10 : cx + 10] = (200, 40, 40)
        frame += rng.integers(-3, 4, size=frame.shape, dtype=np.int16)
        frames[t] = np.clip(frame, 0, 255)
    return frames


def build(path: Path, n_episodes: int, length: int, cameras: int) -> None:
    rng = np.random.default_rng(0)
    obs = {
        "agent_pos": {"shape": [9], "type": "low_dim"},
        "object": {"shape": [14], "type": "low_dim"},
    }
    for camera in range(cameras):
        obs[f"camera{camera}_rgb"] = {"shape": [96, 96, 3], "type": "rgb"}
    meta = {"obs": obs, "action": {"shape": [10]}}
    with DatasetWriter.create(path, meta, fps=10) as writer:
        for episode in range(n_episodes):
            steps = {
                "agent_pos": rng.normal(size=(length, 9)).astype(np.float32),
                "object": rng.normal(size=(length, 14)).astype(np.float32),
                "action": rng.normal(size=(length, 10)).astype(np.float32),
            }
            for camera in range(cameras):
                steps[f"camera{camera}_rgb"] = synthetic_frames(rng, length, episode + camera)
            writer.append_episode(steps)


class ReferenceSampler:
    """diffusion_policy's in-RAM sampling (module docstring), written here: everything in numpy,
    its windows (n_obs_steps - 1 steps before an episode, n_action_steps - 1 after), a sample
    sliced and edge-padded key by key. Observations are read for the first n_obs_steps only, as
    its ``key_first_k`` does."""

    def __init__(self, replay_buffer: ReplayBuffer):
        self.obs_keys = list(replay_buffer.shape_meta["obs"])
        self.arrays = {key: replay_buffer.read_all(key) for key in [*self.obs_keys, "action"]}
        self.windows = []  # the index table: (start, first step, last step) of each window
        begin = 0
        for end in replay_buffer.episode_ends.tolist():
            for start in range(begin - N_OBS_STEPS + 1, end - HORIZON + N_ACTION_STEPS):
                self.windows.append((start, begin, end - 1))
            begin = end

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, index: int) -> dict:
        start, first, last = self.windows[index]
        obs = {key: self._padded(key, start, N_OBS_STEPS, first, last) for key in self.obs_keys}
        steps = np.arange(start, start + HORIZON)
        return {
            "obs": obs,
            "action": self._padded("action", start, HORIZON, first, last),
            "is_pad": (steps < first) | (steps > last),
        }

    def _padded(self, key: str, start: int, length: int, first: int, last: int) -> np.ndarray:
        """Rows ``start .. start + length - 1``, those outside [first, last] repeating the edge."""
        low, high = max(start, first), min(start + length, last + 1)
        sample = self.arrays[key][low:high]
        before, after = low - start, start + length - high
        if not before and not after:
            return sample
        data = np.empty((length, *sample.shape[1:]), dtype=sample.dtype)
        data[:before] = sample[0]
        data[before : length - after] = sample
        data[length - after :] = sample[-1]
        return data

    def get_batch(self, indices) -> dict:
        """The windows stacked, as torch's default collate stacks the samples of a batch."""
        samples = [self[int(index)] for index in indices]
        return {
            "obs": {key: np.stack([s["obs"][key] for s in samples]) for key in self.obs_keys},
            "action": np.stack([s["action"] for s in samples]),
            "is_pad": np.stack([s["is_pad"] for s in samples]),
        }


def cpu_seconds(processes) -> float:
    """User + system CPU time of this process and of ``processes`` (Linux /proc)."""
    total = time.process_time()
    for process in processes:
        with open(f"/proc/{process.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def timed_rounds(step, n_rounds: int, per_round: int, processes=()) -> tuple[float, float]:
    """(best wall-clock samples/s over the rounds, samples per CPU-second over all rounds).

    The machine is shared: the best round is the least disturbed one, and CPU time counts only
    the work done, not the time spent waiting for a core.
    """
    best, cpu = 0.0, cpu_seconds(processes)
    for _ in range(n_rounds):
        begin = time.perf_counter()
        samples = sum(step() for _ in range(per_round))
        best = max(best, samples / (time.perf_counter() - begin))
    return best, n_rounds * samples / (cpu_seconds(processes) - cpu)


def sampler_rates(sampler, n_samples: int) -> tuple[float, float]:
    indices = iter(np.random.default_rng(1).integers(0, len(sampler), size=n_samples + 20))
    for _ in range(20):  # warm-up: file cache, allocator
        sampler[int(next(indices))]

    def step() -> int:
        sampler[int(next(indices))]
        return 1

    return timed_rounds(step, 4, n_samples // 4)


def batch_rates(sampler, n_batches: int) -> tuple[float, float]:
    """The same as ``sampler_rates``, over ``get_batch`` of BATCH_SIZE random windows."""
    rng = np.random.default_rng(3)
    sampler.get_batch(rng.integers(0, len(sampler), size=BATCH_SIZE))  # warm-up

    def step() -> int:
        return len(sampler.get_batch(rng.integers(0, len(sampler), size=BATCH_SIZE))["action"])

    return timed_rounds(step, 4, n_batches // 4)


def loader_rates(dataset, num_workers: int, n_batches: int) -> tuple[float, float]:
    loader = make_dataloader(dataset, batch_size=BATCH_SIZE, seed=0, num_workers=num_workers)
    batches = iter(loader)
    for _ in range(2):  # worker start-up and the first prefetched batches are not timed
        next(batches)

    def step() -> int:
        return len(next(batches)["action"])

    return timed_rounds(step, 4, n_batches // 4, multiprocessing.active_children())


def check_equal(ours, reference, n: int = 50) -> None:
    indices = np.random.default_rng(2).integers(0, len(ours), size=n)
    a, b = ours.get_batch(indices), reference.get_batch(indices)
    assert np.array_equal(a["action"], b["action"]) and np.array_equal(a["is_pad"], b["is_pad"])
    assert all(np.array_equal(a["obs"][k], b["obs"][k]) for k in b["obs"])


def bench_dataset(path: Path, n_samples: int, n_batches: int) -> dict:
    params = {
        "horizon": HORIZON,
        "n_obs_steps": N_OBS_STEPS,
        "n_action_steps": N_ACTION_STEPS,
        "end_padding": "action_steps",  # diffusion_policy's windows, the reference's
    }
    on_disk = ReplayBuffer.open(path)
    in_memory = ReplayBuffer.open(path, in_memory=True)
    reference = ReferenceSampler(on_disk)
    samplers = {
        "sampler_disk": SequenceSampler(on_disk, **params),
        "sampler_memory": SequenceSampler(in_memory, **params),
    }
    has_images = bool(samplers["sampler_disk"].image_keys)
    if has_images:
        samplers["sampler_decoded"] = SequenceSampler(
            in_memory, decoded_cache_bytes=2**40, **params
        )
        assert samplers["sampler_decoded"].images_decoded
        samplers["sampler_disk_plain_zarr"] = SequenceSampler(on_disk, fast_images=False, **params)
        samplers["sampler_memory_plain_zarr"] = SequenceSampler(
            in_memory, fast_images=False, **params
        )
    for sampler in samplers.values():
        assert len(sampler) == len(reference)
        check_equal(sampler, reference)

    rates = {"reference_numpy": sampler_rates(reference, n_samples)}
    baseline = {"reference_numpy": "reference_numpy"}
    for name, sampler in samplers.items():
        rates[name] = sampler_rates(sampler, n_samples)
        baseline[name] = "reference_numpy"
    rates["batch_reference_numpy"] = batch_rates(reference, n_batches)
    baseline["batch_reference_numpy"] = "batch_reference_numpy"
    for name, sampler in samplers.items():
        if "plain_zarr" not in name:
            rates[f"batch_{name}"] = batch_rates(sampler, n_batches)
            baseline[f"batch_{name}"] = "batch_reference_numpy"
    # Loader figures are compared with the reference served by the same loader and workers.
    sources = {"reference": reference, "disk": samplers["sampler_disk"]}
    if has_images:
        sources["memory"] = samplers["sampler_memory"]
        sources["decoded"] = samplers["sampler_decoded"]
    for workers in (0, 2):
        for name, source in sources.items():
            key = f"dataloader_{name}_{workers}_workers"
            rates[key] = loader_rates(SequenceDataset(source), workers, n_batches)
            baseline[key] = f"dataloader_reference_{workers}_workers"
    return {
        "steps": on_disk.n_steps,
        "episodes": on_disk.n_episodes,
        "windows": len(reference),
        "reference_of": baseline,
        "samples_per_s": {name: round(wall) for name, (wall, _) in rates.items()},
        "samples_per_cpu_s": {name: round(cpu) for name, (_, cpu) in rates.items()},
        "ratio_to_reference": {
            name: round(wall / rates[baseline[name]][0], 3) for name, (wall, _) in rates.items()
        },
        "cpu_ratio_to_reference": {
            name: round(cpu / rates[baseline[name]][1], 3) for name, (_, cpu) in rates.items()
        },
    }


def main() -> None:
    # The settings make_dataloader gives its workers, here for the single-process figures too:
    # Blosc's threads only add overhead on 20-30 kB image chunks (about 25% slower here).
    torch.set_num_threads(1)
    numcodecs.blosc.use_threads = False
    started = time.perf_counter()
    load_at_start = round(os.getloadavg()[0], 2)
    results = {}
    with tempfile.TemporaryDirectory(prefix="bench_sampler_") as tmp:
        specs = {
            "low_dim": (Path(tmp) / "low_dim.zarr", 100, 150, 0, 12000, 40),
            "two_cameras_96x96": (Path(tmp) / "images.zarr", 40, 120, 2, 2000, 12),
        }
        for name, (path, n_episodes, length, cameras, n_samples, n_batches) in specs.items():
            begin = time.perf_counter()
            build(path, n_episodes, length, cameras)
            seconds = time.perf_counter() - begin
            print(f"[{name}] built {n_episodes} x {length} steps in {seconds:.1f}s")
            results[name] = bench_dataset(path, n_samples, n_batches)
            table = results[name]
            width = max(map(len, table["samples_per_s"]))
            print(f"  {'':<{width}} {'samples/s':>9} {'ratio':>6}  {'/CPU-s':>7} {'ratio':>6}")
            for method, rate in table["samples_per_s"].items():
                print(
                    f"  {method:<{width}} {rate:>9} {table['ratio_to_reference'][method]:>6.2f}  "
                    f"{table['samples_per_cpu_s'][method]:>7} "
                    f"{table['cpu_ratio_to_reference'][method]:>6.2f}  "
                    f"vs {table['reference_of'][method]}"
                )
    report = {
        "command": "python bench/bench_sampler.py",
        "params": {
            "horizon": HORIZON,
            "n_obs_steps": N_OBS_STEPS,
            "n_action_steps": N_ACTION_STEPS,
            "batch_size": BATCH_SIZE,
        },
        "machine": machine_facts(load_at_start),
        "results": results,
        "total_seconds": round(time.perf_counter() - started, 1),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {RESULTS} ({report['total_seconds']}s)")


if __name__ == "__main__":
    main()
