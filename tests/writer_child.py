"""Subprocess for the kill test: appends episodes forever, announcing each append's start and end.

Usage: python writer_child.py PATH ZIP_FLUSH_EVERY. Episode i is data_helpers.make_episode(i, 40)
with extra-large images so that one append takes long enough to be killed in the middle.
"""

import sys

import numpy as np
from data_helpers import make_episode

from robopolicy.data import DatasetWriter

SHAPE_META = {
    "obs": {"cam": {"shape": [64, 64, 3], "type": "rgb"}, "pos": {"shape": [2], "type": "low_dim"}},
    "action": {"shape": [3]},
}
LENGTH = 40


def big_episode(index: int) -> dict[str, np.ndarray]:
    episode = make_episode(index, LENGTH)
    rng = np.random.default_rng(index)
    episode["cam"] = rng.integers(0, 256, (LENGTH, 64, 64, 3), dtype=np.uint8)
    return episode


if __name__ == "__main__":
    path, flush_every = sys.argv[1], int(sys.argv[2])
    writer = DatasetWriter.create(path, SHAPE_META, fps=10, zip_flush_every=flush_every)
    index = 0
    while True:
        print(f"begin {index}", flush=True)
        writer.append_episode(big_episode(index), episode_meta={"seed": index})
        print(f"end {index}", flush=True)
        index += 1
