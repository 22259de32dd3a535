"""datasets/inspect.py: summary tables, an image grid PNG and an episode video, clear errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import imageio.v2 as imageio
import numpy as np
import pytest
from data_helpers import episode_lengths, write_dataset
from rich.console import Console

from robopolicy.data import DatasetError, DatasetWriter
from robopolicy.data.inspect_report import (
    MIN_TILE_HEIGHT,
    inspect_dataset,
    length_histogram,
    to_rgb8,
)

REPO = Path(__file__).resolve().parents[1]


def run_inspect(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "datasets/inspect.py", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_cli_prints_summary_and_writes_grid_and_video(tmp_path):
    write_dataset(tmp_path / "demo.zarr", n_episodes=5)
    result = run_inspect(f"path={tmp_path / 'demo.zarr'}", "episode=2", f"out={tmp_path / 'o'}")
    assert result.returncode == 0, result.stderr
    for expected in ("episodes", "test/Env-v0", "cam", "pos", "mode", "episode lengths"):
        assert expected in result.stdout
    grid = imageio.imread(tmp_path / "o" / "grid.png")
    assert grid.ndim == 3 and grid.shape[0] >= 4 * MIN_TILE_HEIGHT and grid.std() > 0
    video = imageio.mimread(tmp_path / "o" / "episode_2.mp4")
    assert len(video) == episode_lengths(5)[2]
    assert video[0].shape[0] % 2 == 0 and video[0].shape[1] % 2 == 0


def test_default_output_folder_is_beside_the_dataset(tmp_path):
    write_dataset(tmp_path / "demo.zarr.zip", n_episodes=2)
    console = Console(record=True, width=120)
    written = inspect_dataset(tmp_path / "demo.zarr.zip", console=console)
    assert written["grid"] == tmp_path / "demo_inspect" / "grid.png"
    assert written["video"].stat().st_size > 0
    assert "wrote video" in console.export_text()


def test_two_cameras_sit_side_by_side_in_the_video(tmp_path):
    shape_meta = {
        "obs": {
            "front": {"shape": [8, 8, 3], "type": "rgb"},
            "depth": {"shape": [6, 10, 1], "type": "depth"},
        },
        "action": {"shape": [2]},
    }
    rng = np.random.default_rng(0)
    with DatasetWriter.create(tmp_path / "two.zarr", shape_meta, fps=5) as writer:
        writer.append_episode(
            {
                "front": rng.integers(0, 256, (7, 8, 8, 3), dtype=np.uint8),
                "depth": rng.random((7, 6, 10, 1)).astype(np.float32),
                "action": np.zeros((7, 2), np.float32),
            }
        )
    written = inspect_dataset(tmp_path / "two.zarr", out_dir=tmp_path / "o", console=Console())
    video = imageio.mimread(written["video"])
    assert len(video) == 7
    assert video[0].shape[1] >= 8 * (MIN_TILE_HEIGHT // 8) + 10 * (MIN_TILE_HEIGHT // 6)


def test_dataset_without_images_writes_no_media_and_prints_brackets(tmp_path):
    shape_meta = {"obs": {"pos": {"shape": [2], "type": "low_dim"}}, "action": {"shape": [1]}}
    env_spec = {"id": "[/]odd", "cameras": ["[bold]"]}  # brackets are text, not rich markup
    with DatasetWriter.create(tmp_path / "low.zarr", shape_meta, 5, env_spec) as writer:
        writer.append_episode({"pos": np.zeros((3, 2)), "action": np.zeros((3, 1))})
    console = Console(record=True, width=200)
    assert inspect_dataset(tmp_path / "low.zarr", console=console) == {}
    assert '"[/]odd"' in console.export_text()
    assert not (tmp_path / "low_inspect").exists()


def test_length_histogram_and_display_conversion():
    lines = length_histogram(np.array([5, 5, 6, 9])).splitlines()
    assert [line.split("|")[0].strip() for line in lines[1:]] == ["5", "6", "7", "8", "9"]
    assert lines[1].endswith("# 2") and lines[3].endswith(" 0")
    wide = length_histogram(np.arange(1, 101))
    assert wide.count("\n") == 10 and "1-10" in wide
    frames = to_rgb8(np.full((2, 4, 4, 1), 300.0, np.float32), "rgb")
    assert frames.dtype == np.uint8 and frames.shape == (2, 64, 64, 3) and frames.max() == 255


def test_bad_episode_is_refused(tmp_path):
    write_dataset(tmp_path / "demo.zarr", n_episodes=2)
    with pytest.raises(DatasetError, match="episode 5 out of range"):
        inspect_dataset(tmp_path / "demo.zarr", episode=5, console=Console())


@pytest.mark.parametrize("case", ["missing", "not_zarr"])
def test_cli_bad_path_is_one_line_with_status_2(tmp_path, case):
    (tmp_path / "plain").mkdir()
    target = tmp_path / ("nope.zarr" if case == "missing" else "plain")
    result = run_inspect(f"path={target}")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"inspect.py: error: dataset {target}"), result.stderr


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (["PATH"], "inspect.py: error: PATH: expected KEY=VALUE arguments"),
        (["path=x", "episodes=1"], "inspect.py: error: episodes=1: no such key; expected one of"),
        (["path=x", "policy=difusion"], "inspect.py: error: policy=difusion: Could not find"),
        (["path=x", "horizon=0"], "inspect.py: error: horizon=0: expected an integer >= 1"),
        ([], "inspect.py: error: path=???: expected a value (set path=...)"),
    ],
)
def test_cli_bad_arguments_are_one_line_with_status_2(args, line):
    result = run_inspect(*args)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(line), result.stderr


def test_cli_chunking_defaults_to_the_policy_config(tmp_path):
    write_dataset(tmp_path / "demo.zarr", n_episodes=2)
    path, out = f"path={tmp_path / 'demo.zarr'}", f"out={tmp_path / 'o'}"
    flow = run_inspect(path, "policy=flow", "policy.args.horizon=12", out)
    given = run_inspect(path, "horizon=4", "n_obs_steps=1", "n_action_steps=2", out)
    assert flow.returncode == 0 and given.returncode == 0, flow.stderr + given.stderr
    assert "horizon 12, 2 obs steps, 8 executed actions" in " ".join(flow.stdout.split())
    assert "horizon 4, 1 obs steps, 2 executed actions" in " ".join(given.stdout.split())
