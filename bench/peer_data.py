"""Sequence sampling for bench_peers.py: our zarr SequenceDataset against LeRobotDataset, on the
same generated episodes, each dataset written with its own library's API in a temporary folder.

A sample is one training window: 2 observation steps of every observation key, 16 actions and
the padding masks. Ours returns uint8 HWC frames (the policy converts them); LeRobotDataset
returns float CHW frames in [0, 1] (its transform). Images: LeRobot 0.3.2 stores cameras as AV1
video by default, but neither of its decoders runs here (see ``VIDEO_UNAVAILABLE``), so its
cameras are stored as ``image`` features (PNG files, decoded per sample), the other layout its
API writes; ours stores each frame Blosc-lz4 compressed in zarr, as DatasetWriter does, and
reads it as train.py does at its defaults.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import peer_policies as pp
import torch

from robopolicy.config.run import DataConfig
from robopolicy.data.torch_dataset import SequenceDataset
from robopolicy.data.writer import DatasetWriter

FPS = 10
VIDEO_UNAVAILABLE = (
    "LeRobot video decoding cannot run here: its 'pyav' backend calls torchvision.io.VideoReader, "
    "which torchvision 0.28 no longer ships; its 'torchcodec' backend (torchcodec 0.17.0) fails "
    "to load libtorchcodec_image.so, a CUDA build needing libnvrtc.so.13"
)


def episodes(count: int, length: int, images: bool, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        episode = {
            "robot_state": rng.normal(size=(length, pp.ROBOT_STATE)).astype(np.float32),
            "env_state": rng.normal(size=(length, pp.ENV_STATE)).astype(np.float32),
            "action": rng.uniform(-1, 1, (length, pp.ACTION_DIM)).astype(np.float32),
        }
        if images:
            for camera in pp.CAMERAS:
                shape = (length, pp.IMAGE, pp.IMAGE, 3)
                episode[camera] = rng.integers(0, 256, shape, dtype=np.uint8)
        out.append(episode)
    return out


def write_zarr(path: Path, data: list[dict], images: bool) -> SequenceDataset:
    """The episodes through DatasetWriter, opened as train.py opens a dataset at its defaults
    (DataConfig: in memory; the decoded image cache where the code has it)."""
    with DatasetWriter.create(path, pp.shape_meta(images), fps=FPS) as writer:
        for episode in data:
            writer.append_episode(episode)
    defaults = DataConfig()
    options = {}
    if "decoded_cache_mb" in pp.field_names(DataConfig):
        options["decoded_cache_bytes"] = defaults.decoded_cache_mb * 2**20
    return SequenceDataset.from_path(
        path, pp.HORIZON, pp.N_OBS, pp.N_ACTION, in_memory=defaults.in_memory, **options
    )


def write_lerobot(root: Path, data: list[dict], images: bool):
    """The same episodes as a LeRobotDataset, through LeRobot's recording API, then opened for
    training windows (``delta_timestamps``: 2 observation frames, 16 actions)."""
    pp.declare_torchvision_ops()
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    logging.getLogger().setLevel(logging.WARNING)
    low_dim = {
        "observation.state": pp.ROBOT_STATE,
        "observation.environment_state": pp.ENV_STATE,
        "action": pp.ACTION_DIM,
    }
    features = {
        key: {"dtype": "float32", "shape": (dim,), "names": None} for key, dim in low_dim.items()
    }
    camera_names = ["height", "width", "channels"]
    if images:
        for camera in pp.CAMERAS:
            features[f"observation.images.{camera}"] = {
                "dtype": "image",
                "shape": (pp.IMAGE, pp.IMAGE, 3),
                "names": camera_names,
            }
    dataset = LeRobotDataset.create("local/bench", FPS, features, root=root, use_videos=False)
    for episode in data:
        for step in range(len(episode["action"])):
            frame = {
                "observation.state": episode["robot_state"][step],
                "observation.environment_state": episode["env_state"][step],
                "action": episode["action"][step],
            }
            if images:
                for camera in pp.CAMERAS:
                    frame[f"observation.images.{camera}"] = episode[camera][step]
            dataset.add_frame(frame, task="bench")
        dataset.save_episode()
    obs_times = [(step - pp.N_OBS + 1) / FPS for step in range(pp.N_OBS)]
    deltas = {key: obs_times for key in features if key.startswith("observation.")}
    deltas["action"] = [(step - pp.N_OBS + 1) / FPS for step in range(pp.HORIZON)]
    return LeRobotDataset("local/bench", root=root, delta_timestamps=deltas)


def sampling_rates(datasets: dict, samples: int, rounds: int, seed: int = 0) -> dict:
    """Random windows from each dataset, the datasets alternated in ``rounds`` slices of
    ``samples / rounds`` each: samples per second and per CPU-second over all slices."""
    rng = np.random.default_rng(seed)
    totals = {name: [0.0, 0.0] for name in datasets}
    per_round = max(1, samples // rounds)
    for turn in range(rounds):
        names = list(datasets)
        names = names[turn % len(names) :] + names[: turn % len(names)]
        for name in names:
            dataset = datasets[name]
            indices = rng.integers(0, len(dataset), per_round)
            start, cpu = time.perf_counter(), time.process_time()
            for index in indices:
                dataset[int(index)]
            totals[name][0] += time.perf_counter() - start
            totals[name][1] += time.process_time() - cpu
    count = per_round * rounds
    return {
        name: {"samples_per_s": count / wall, "samples_per_cpu_s": count / cpu, "samples": count}
        for name, (wall, cpu) in totals.items()
    }


def check_same_window(ours: SequenceDataset, theirs) -> None:
    """Both datasets hold the same steps: the first window's actions must agree (ours pads
    before an episode's start with the first step, as LeRobot does)."""
    ours_action = ours[0]["action"]
    theirs_action = theirs[0]["action"]
    if not torch.allclose(torch.as_tensor(ours_action), theirs_action):
        raise SystemExit("the zarr and LeRobot datasets disagree on the first window's actions")
