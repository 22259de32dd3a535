"""The dataset QA report (robopolicy/data/quality.py) on small zarr stores with known answers."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console

from robopolicy.config.dataset_tools import QualityConfig
from robopolicy.data import DatasetWriter, ReplayBuffer
from robopolicy.data.inspect_report import inspect_dataset
from robopolicy.data.quality import assess_quality
from robopolicy.data.sampler import conditioning_coverage

REPO = Path(__file__).resolve().parents[1]
CHUNKING = (16, 2, 4)  # horizon, n_obs_steps, n_action_steps


def write_store(path: Path, actions: list[np.ndarray], hold=None, seeds=None) -> ReplayBuffer:
    """Episodes whose state at step t is (t, 0), whatever the episode, with these actions."""
    action = {"shape": [actions[0].shape[1]], **({"hold": hold} if hold else {})}
    shape_meta = {"obs": {"pos": {"shape": [2], "type": "low_dim"}}, "action": action}
    with DatasetWriter.create(path, shape_meta, fps=10) as writer:
        for index, episode in enumerate(actions):
            steps = np.arange(len(episode), dtype=np.float32)
            pos = np.stack([steps, np.zeros_like(steps)], axis=1)
            meta = None if seeds is None else {"seed": seeds[index]}
            writer.append_episode({"pos": pos, "action": episode.astype(np.float32)}, meta)
    return ReplayBuffer.open(path)


def random_actions(lengths: list[int], dims: int = 2) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.normal(size=(length, dims)) for length in lengths]


@pytest.mark.parametrize(("sign", "divergence", "modes"), [(-1, 2.0, 2), (1, 0.0, 1)])
def test_divergence_and_modes_at_shared_states(tmp_path, sign, divergence, modes):
    # two episodes through the same states; the second acts as the first (+1) or the opposite
    # (-1): actions spanning [-1, 1] have a half range of 1, so the two are 2 apart, RMS 2
    first = np.ones((10, 2))
    buffer = write_store(tmp_path / "two.zarr", [first, sign * first])
    report = assess_quality(buffer, CHUNKING, QualityConfig(neighbours=1))
    result = report.divergence
    assert result.neighbours == 1 and len(result.queries) == 20
    np.testing.assert_allclose(result.per_query, divergence)
    assert set(result.modes) == {modes} and result.max_modes == modes
    assert result.share_above == (1.0 if divergence else 0.0)
    assert any(flag.startswith("action divergence") for flag in report.flags) == (sign < 0)
    assert any(flag.startswith("action modes") for flag in report.flags) == (sign < 0)


def test_ten_times_longer_episode_and_shared_seed_are_flagged(tmp_path):
    lengths = [10] * 9 + [100]
    seeds = [0, 1, 2, 3, 4, 5, 6, 7, 3, 9]  # episodes 3 and 8 share a seed
    buffer = write_store(tmp_path / "long.zarr", random_actions(lengths), seeds=seeds)
    report = assess_quality(buffer, CHUNKING, QualityConfig())
    assert list(report.episodes.outliers["length"]) == [9]
    assert list(report.expert.shared_seed) == [3, 8]
    assert report.expert.length_spread == {"min": 10, "median": 10.0, "max": 100, "iqr": 0.0}
    lines = [flag for flag in report.flags if flag.startswith("episode length outliers")]
    assert len(lines) == 1 and lines[0].endswith("episodes 9"), report.flags
    assert any(flag.startswith("seeds: 2 episodes") for flag in report.flags)


def test_idle_share_follows_the_hold_rule(tmp_path):
    still = np.tile([0.5, -0.5], (12, 1))  # constant: no change, but a nonzero delta
    episodes = [*random_actions([12] * 5), still]
    free = assess_quality(write_store(tmp_path / "a.zarr", episodes), CHUNKING, QualityConfig())
    assert free.episodes.idle[5] == 1.0 and np.all(free.episodes.idle[:5] < 1)
    assert list(free.episodes.outliers["idle"]) == [5]
    assert free.episodes.jerk[5] == 0.0 and np.all(free.episodes.jerk[:5] > 0)
    deltas = write_store(tmp_path / "b.zarr", episodes, hold=["zero", "zero"])
    moving = assess_quality(deltas, CHUNKING, QualityConfig())
    assert moving.episodes.idle[5] == 0.0  # a constant delta keeps moving


def test_coverage_per_episode_matches_the_sampler(tmp_path):
    lengths = [10, 20, 30]
    buffer = write_store(tmp_path / "cov.zarr", random_actions(lengths))
    report = assess_quality(buffer, CHUNKING, QualityConfig(end_padding="action_steps"))
    old = report.coverage["action_steps"]
    # the last conditioning step is L - horizon + (n_action_steps - 1) + n_obs_steps - 1 = L - 12
    np.testing.assert_allclose(old.per_episode, [0.0, 9 / 20, 19 / 30])
    assert list(old.tail_never_trained) == [0, 1, 2]
    pooled = conditioning_coverage(np.array(lengths), *CHUNKING, "action_steps")
    assert old.pooled["steps"] == pytest.approx(pooled["steps"]) == pytest.approx(28 / 60)
    full = report.coverage["full"]
    assert np.all(full.per_episode == 1.0) and len(full.tail_never_trained) == 0
    assert report.flags[0].startswith("coverage (data.end_padding=action_steps, horizon 16")
    assert "47% of steps" in report.flags[0] and "3 of 3 episodes" in report.flags[0]
    default = assess_quality(buffer, CHUNKING, QualityConfig())  # end_padding=full: no flag
    assert not any(flag.startswith("coverage") for flag in default.flags)


def test_qa_json_and_plots_are_written(tmp_path):
    first = np.ones((10, 2))
    write_store(tmp_path / "two.zarr", [first, -first])
    console = Console(record=True, width=200)
    written = inspect_dataset(
        tmp_path / "two.zarr",
        out_dir=tmp_path / "o",
        console=console,
        chunking=CHUNKING,
        quality=QualityConfig(neighbours=1),
    )
    assert set(written) == {"qa", "qa_lengths", "qa_coverage", "qa_divergence"}
    assert all(path.stat().st_size > 0 for path in written.values())
    qa = json.loads(written["qa"].read_text())
    assert qa["chunking"] == {"horizon": 16, "n_obs_steps": 2, "n_action_steps": 4}
    assert qa["end_padding"] == "full"
    assert qa["coverage"]["action_steps"]["per_episode"] == [0.0, 0.0]
    assert qa["coverage"]["action_steps"]["tail_never_trained"] == [0, 1]
    assert qa["divergence"]["mean"] == pytest.approx(2.0) and qa["divergence"]["max_modes"] == 2
    assert qa["divergence"]["query_steps"] == 20 and qa["divergence_note"] == ""
    assert qa["episodes"]["length"] == [10, 10] and qa["episodes"]["idle"] == [1.0, 1.0]
    assert qa["expert"]["success_share"] is None and qa["expert"]["shared_seed"] is None
    assert qa["flags"] and qa["flags"][0].startswith("action divergence: 100% of 20 query steps")
    assert "flags:\n  action divergence" in console.export_text()


def test_single_episode_has_no_divergence(tmp_path):
    buffer = write_store(tmp_path / "one.zarr", random_actions([8]))
    report = assess_quality(buffer, CHUNKING, QualityConfig())
    assert report.divergence is None and "single episode" in report.divergence_note


def test_cli_prints_the_flags_section(tmp_path):
    write_store(tmp_path / "long.zarr", random_actions([10] * 9 + [100]))
    result = subprocess.run(
        [
            sys.executable,
            "datasets/inspect.py",
            f"path={tmp_path / 'long.zarr'}",
            f"out={tmp_path / 'o'}",
            "horizon=16",
            "n_action_steps=4",
            "qa.end_padding=action_steps",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    flags = result.stdout[result.stdout.index("flags:") :].splitlines()
    assert flags[1].startswith("  coverage (data.end_padding=action_steps"), result.stdout
    assert any(line.startswith("  episode length outliers") for line in flags), result.stdout
    assert json.loads((tmp_path / "o" / "qa.json").read_text())["episodes"]["outliers"]["length"]
