"""Small synthetic datasets for the data-layer tests: real zarr stores written by DatasetWriter."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from robopolicy.data import DatasetWriter

SHAPE_META = {
    "obs": {
        "cam": {"shape": [8, 8, 3], "type": "rgb"},
        "pos": {"shape": [2], "type": "low_dim"},
    },
    "action": {"shape": [3]},
}


def make_episode(seed: int, length: int) -> dict[str, np.ndarray]:
    """One episode whose values are a deterministic function of (seed, length)."""
    rng = np.random.default_rng(seed)
    return {
        "cam": rng.integers(0, 256, (length, 8, 8, 3), dtype=np.uint8),
        "pos": rng.normal(size=(length, 2)).astype(np.float32),
        "action": rng.normal(size=(length, 3)).astype(np.float32),
        "sim_state": rng.normal(size=(length, 5)),
        "reward": rng.random(length).astype(np.float32),
        "done": np.arange(length) == length - 1,
    }


def episode_lengths(n_episodes: int) -> list[int]:
    return [4 + (3 * i) % 7 for i in range(n_episodes)]


def write_dataset(path: Path, n_episodes: int = 3) -> list[dict[str, np.ndarray]]:
    """Write ``n_episodes`` synthetic episodes to ``path``; returns them for comparison."""
    episodes = [make_episode(i, n) for i, n in enumerate(episode_lengths(n_episodes))]
    with DatasetWriter.create(path, SHAPE_META, fps=10, env_spec={"id": "test/Env-v0"}) as writer:
        for index, episode in enumerate(episodes):
            writer.append_episode(episode, episode_meta={"mode": index % 2, "seed": index})
    return episodes
