"""A writer process killed with SIGKILL in the middle of an append leaves a valid dataset that holds
exactly the episodes completed before the kill, and the next writer carries on from there."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from writer_child import big_episode

from robopolicy.data import DatasetWriter, ReplayBuffer
from robopolicy.data.format import PENDING_ATTR

CHILD = Path(__file__).with_name("writer_child.py")


def _kill_mid_append(path: Path, flush_every: int, kill_after_begin: int, delay_s: float) -> int:
    """Run the child until it begins append number ``kill_after_begin``, wait ``delay_s``, SIGKILL.
    Returns the number of episodes whose append had finished ("end" printed) before the kill."""
    env = {**os.environ, "PYTHONPATH": str(CHILD.parent)}
    child = subprocess.Popen(
        [sys.executable, str(CHILD), str(path), str(flush_every)],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    finished = 0
    try:
        for line in child.stdout:
            word, index = line.split()
            if word == "end":
                finished = int(index) + 1
            elif int(index) == kill_after_begin:
                time.sleep(delay_s)
                child.send_signal(signal.SIGKILL)
                break
        # lines already printed before the kill landed still count as finished appends
        for line in child.stdout:
            word, index = line.split()
            if word == "end":
                finished = int(index) + 1
    finally:
        child.kill()
        child.wait(timeout=30)
    return finished


def _assert_holds_exactly(path: Path, n_episodes: int) -> None:
    buffer = ReplayBuffer.open(path)
    assert buffer.n_episodes == n_episodes
    for index in range(n_episodes):
        expected = big_episode(index)
        read = buffer.get_episode(index)
        for key in ("cam", "pos", "action"):
            np.testing.assert_array_equal(read[key], expected[key])


def _delays(fast: float, *slow: float) -> list:
    """One kill delay in the edit-test loop; the rest of the sample with the slow tests."""
    return [fast, *(pytest.param(delay, marks=pytest.mark.slow) for delay in slow)]


@pytest.mark.parametrize("delay_s", _delays(0.02, 0.0, 0.05, 0.1))
def test_directory_store_survives_sigkill_mid_append(tmp_path, delay_s):
    path = tmp_path / "killed.zarr"
    finished = _kill_mid_append(path, flush_every=1, kill_after_begin=2, delay_s=delay_s)
    assert finished >= 2  # the kill follows the start of the third append (how far it got: timing)
    _assert_holds_exactly(path, finished)
    with DatasetWriter.open_for_append(path) as writer:  # rolls back the partial rows
        writer.append_episode(big_episode(finished), episode_meta={"seed": finished})
    _assert_holds_exactly(path, finished + 1)
    assert PENDING_ATTR not in ReplayBuffer.open(path)._root["meta"].attrs


def test_kill_lands_inside_an_append_at_least_once(tmp_path):
    """Guards the test above against only ever killing between appends."""
    seen_pending = False
    for attempt, delay_s in enumerate([0.01, 0.03, 0.06, 0.1, 0.15]):
        path = tmp_path / f"attempt{attempt}.zarr"
        finished = _kill_mid_append(path, flush_every=1, kill_after_begin=1, delay_s=delay_s)
        _assert_holds_exactly(path, finished)
        buffer = ReplayBuffer.open(path)
        if (
            buffer.data["cam"].shape[0] > buffer.n_steps
            or PENDING_ATTR in buffer._root["meta"].attrs
        ):
            seen_pending = True
            break
    assert seen_pending, "no kill landed mid-append; make the child's appends slower"


@pytest.mark.parametrize("delay_s", _delays(0.05, 0.0, 0.1))
def test_zip_store_survives_sigkill_mid_append(tmp_path, delay_s):
    path = tmp_path / "killed.zarr.zip"
    finished = _kill_mid_append(path, flush_every=1, kill_after_begin=2, delay_s=delay_s)
    _assert_holds_exactly(path, finished)
    with DatasetWriter.open_for_append(path) as writer:  # resumes from the staging directory
        assert writer.n_episodes >= finished
        writer.append_episode(big_episode(writer.n_episodes), episode_meta={"seed": 0})
        total = writer.n_episodes
    assert ReplayBuffer.open(path).n_episodes == total
