"""LeRobot datasets <-> ours: fixtures written by LeRobot's own writer (v2.1 by lerobot 0.3.2,
v3.0 by lerobot 0.4.4, scripts/make_lerobot_fixture.py), read here without importing lerobot."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import imageio.v3 as iio
import imageio_ffmpeg
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from data_helpers import write_dataset

from robopolicy.data import DatasetError, DatasetWriter, ReplayBuffer
from robopolicy.data.convert import lerobot_to_zarr, zarr_to_lerobot

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures"
VERSIONS = ["v21", "v30"]
LENGTHS = [10, 9, 11]  # scripts/make_lerobot_fixture.py LENGTHS
TASKS = ["push the cube to the target", "lift the cube"]
MIN_PSNR_DB = 29.0  # LeRobot's own encoding (AV1, crf 30) of the 32x32 fixture: 30.5-31.3 dB


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def parquet_rows(version: str) -> dict[str, np.ndarray]:
    """Every frame of the fixture, read straight from its parquet files."""
    files = sorted((FIXTURES / f"lerobot_{version}" / "data").rglob("*.parquet"))
    tables = [pq.read_table(f) for f in files]
    columns = {}
    for name in ("observation.state", "action", "task_index", "episode_index"):
        columns[name] = np.concatenate([np.array(t[name].to_pylist()) for t in tables])
    return columns


def ffmpeg_frames(path: Path) -> np.ndarray:
    """All frames of an mp4 decoded by the ffmpeg binary alone (not through the converter)."""
    raw = subprocess.run(
        [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-i", str(path)]
        + ["-f", "rawvideo", "-pix_fmt", "rgb24", "-"],
        capture_output=True,
        check=True,
    ).stdout
    return np.frombuffer(raw, np.uint8).reshape(-1, 32, 32, 3)


@pytest.mark.parametrize("version", VERSIONS)
def test_fixture_converts_with_lengths_tasks_values_and_images(tmp_path, version):
    out = lerobot_to_zarr(FIXTURES / f"lerobot_{version}", tmp_path / "out.zarr")
    buffer = ReplayBuffer.open(out)
    assert buffer.fps == 10
    assert buffer.episode_ends.tolist() == np.cumsum(LENGTHS).tolist()
    assert buffer.shape_meta == {
        "obs": {
            "state": {"shape": [6], "type": "low_dim"},
            "front": {"shape": [32, 32, 3], "type": "rgb"},
        },
        "action": {"shape": [4]},
    }
    assert buffer.attrs["tasks"] == TASKS
    rows = parquet_rows(version)
    assert np.array_equal(buffer.data["task_index"][:], rows["task_index"])
    assert buffer.data["task_index"][19:].tolist() == [0] * 5 + [1] * 6  # switches mid-episode
    for ours, theirs in (("state", "observation.state"), ("action", "action")):
        assert buffer.data[ours].dtype == np.float32
        assert np.array_equal(buffer.data[ours][:], rows[theirs].astype(np.float32))
    assert buffer.attrs["lerobot"]["codebase_version"] == f"v{version[1]}.{version[2]}"

    originals = np.load(FIXTURES / f"lerobot_{version}_frames.npz")
    videos = sorted((FIXTURES / f"lerobot_{version}" / "videos").rglob("*.mp4"))
    decoded = np.concatenate([ffmpeg_frames(v) for v in videos])
    images = buffer.data["front"][:]
    assert np.array_equal(images, decoded)  # the right frames, for every episode boundary
    for index in range(len(LENGTHS)):
        window = buffer.episode_slice(index)
        assert psnr(images[window], originals[f"episode_{index}"]) > MIN_PSNR_DB


@pytest.mark.parametrize("version", ["v2.1", "v3.0"])
def test_round_trip_keeps_low_dim_arrays_bit_identical(tmp_path, version):
    episodes = write_dataset(tmp_path / "ours.zarr", n_episodes=4)
    export = zarr_to_lerobot(tmp_path / "ours.zarr", tmp_path / "lerobot", version=version)
    back = ReplayBuffer.open(lerobot_to_zarr(tmp_path / "lerobot", tmp_path / "back.zarr"))
    source = ReplayBuffer.open(tmp_path / "ours.zarr")
    assert back.shape_meta == source.shape_meta and back.fps == source.fps
    assert back.env_spec == {"id": "test/Env-v0"}
    assert np.array_equal(back.episode_ends, source.episode_ends)
    assert sorted(back.data) == sorted(source.data)  # no task_index made up on the way
    for key in ("pos", "action", "sim_state", "reward", "done"):
        assert back.data[key].dtype == source.data[key].dtype, key
        assert np.array_equal(back.data[key][:], source.data[key][:]), key
    for name in ("mode", "seed"):
        assert back.episode_meta[name].dtype == source.episode_meta[name].dtype
        assert np.array_equal(back.episode_meta[name], source.episode_meta[name])
    assert back.data["cam"].shape == (sum(len(e["cam"]) for e in episodes), 8, 8, 3)
    assert set(export.psnr) == {"observation.images.cam"}
    assert back.attrs["provenance"]["via_lerobot"]["source"] == "lerobot"
    assert back.attrs["lerobot"]["codebase_version"] == version


@pytest.mark.parametrize("version", VERSIONS)
def test_fixture_exports_again_like_lerobot_writes_it(tmp_path, version):
    """LeRobot -> zarr -> LeRobot (the same version) -> zarr: the files and info.json entries
    LeRobot's own writer made, tasks and task indices kept, PSNR reported."""
    fixture = FIXTURES / f"lerobot_{version}"
    first = lerobot_to_zarr(fixture, tmp_path / "first.zarr")
    export = zarr_to_lerobot(first, tmp_path / "again", version=f"v{version[1]}.{version[2]}")
    assert export.psnr["observation.images.front"].db > MIN_PSNR_DB
    info = json.loads((tmp_path / "again/meta/info.json").read_text())
    theirs = json.loads((fixture / "meta/info.json").read_text())
    for key in (
        "codebase_version",
        "total_frames",
        "total_tasks",
        "fps",
        "data_path",
        "video_path",
    ):
        assert info[key] == theirs[key], key
    for key in ("observation.state", "action", "timestamp", "task_index"):
        assert info["features"][key] == theirs["features"][key], key
    assert set(info["features"]) == set(theirs["features"])
    made = {p.relative_to(fixture) for p in fixture.rglob("*") if p.is_file()}
    written = {p.relative_to(tmp_path / "again") for p in (tmp_path / "again").rglob("*")}
    assert made <= written, made - written  # every file LeRobot's writer makes
    second = ReplayBuffer.open(lerobot_to_zarr(tmp_path / "again", tmp_path / "second.zarr"))
    first = ReplayBuffer.open(first)
    assert second.attrs["tasks"] == TASKS
    for key in ("state", "action", "task_index"):
        assert np.array_equal(second.data[key][:], first.data[key][:]), key
    assert psnr(second.data["front"][:], first.data["front"][:]) > MIN_PSNR_DB


def test_rename_and_drop(tmp_path):
    out = lerobot_to_zarr(
        FIXTURES / "lerobot_v21",
        tmp_path / "out.zarr",
        renames={"observation.state": "eef_pos", "observation.images.front": "scene_rgb"},
    )
    assert set(ReplayBuffer.open(out).shape_meta["obs"]) == {"eef_pos", "scene_rgb"}
    write_dataset(tmp_path / "ours.zarr", n_episodes=1)
    zarr_to_lerobot(
        tmp_path / "ours.zarr", tmp_path / "lr", renames={"pos": "observation.state"}, drop={"cam"}
    )
    features = json.loads((tmp_path / "lr/meta/info.json").read_text())["features"]
    assert "observation.state" in features and "observation.images.cam" not in features
    assert not (tmp_path / "lr/videos").exists()


def test_image_features_stored_as_png_in_the_parquet_are_read(tmp_path):
    """LeRobot's ``image`` dtype: PNG bytes in a ``{bytes, path}`` struct column, lossless."""
    root = tmp_path / "images"
    shutil.copytree(FIXTURES / "lerobot_v21", root)
    originals = np.load(FIXTURES / "lerobot_v21_frames.npz")
    for index, path in enumerate(sorted(root.rglob("episode_*.parquet"))):
        table = pq.read_table(path)
        cells = [
            {"bytes": iio.imwrite("<bytes>", f, extension=".png"), "path": None}
            for f in originals[f"episode_{index}"]
        ]
        pq.write_table(table.append_column("observation.images.top", pa.array(cells)), path)
    info = json.loads((root / "meta/info.json").read_text())
    info["features"]["observation.images.top"] = {"dtype": "image", "shape": [32, 32, 3]}
    (root / "meta/info.json").write_text(json.dumps(info))
    buffer = ReplayBuffer.open(lerobot_to_zarr(root, tmp_path / "out.zarr"))
    assert buffer.shape_meta["obs"]["top"] == {"shape": [32, 32, 3], "type": "rgb"}
    expected = np.concatenate([originals[f"episode_{i}"] for i in range(len(LENGTHS))])
    assert np.array_equal(buffer.data["top"][:], expected)


# ------------------------------------------------------------------------- bad input
def broken_copy(tmp_path: Path, case: str) -> Path:
    """A copy of the v2.1 fixture damaged in one way."""
    root = tmp_path / "broken"
    shutil.copytree(FIXTURES / "lerobot_v21", root)
    info_path = root / "meta/info.json"
    info = json.loads(info_path.read_text())
    if case == "no_info":
        info_path.unlink()
    elif case == "version":
        info["codebase_version"] = "v1.6"
    elif case == "state_shape":
        info["features"]["observation.state"]["shape"] = [7]
    elif case == "video_shape":
        info["features"]["observation.images.front"]["shape"] = [48, 48, 3]
    elif case == "no_video":
        next(root.rglob("episode_000001.mp4")).unlink()
    elif case == "no_parquet":
        next(root.rglob("episode_000002.parquet")).unlink()
    if info_path.exists():
        info_path.write_text(json.dumps(info))
    return root


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "datasets/convert.py", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("missing", "no such directory"),
        ("no_info", "not a LeRobot dataset (no meta/info.json)"),
        ("version", "codebase_version: 'v1.6': unknown LeRobot format"),
        ("state_shape", "observation.state: 6 values per frame, info.json says shape [7]"),
        ("video_shape", "observation.images.front: frames are 32x32x3, info.json says [48, 48, 3]"),
        ("no_video", "episode_000001.mp4: no such video file (feature observation.images.front)"),
        ("no_parquet", "episode_000002.parquet: no such file"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path, case, expected):
    src = tmp_path / "nope" if case == "missing" else broken_copy(tmp_path, case)
    result = run_cli("lerobot-to-zarr", f"src={src}", f"dst={tmp_path / 'out.zarr'}")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("convert.py: error: dataset "), result.stderr
    assert expected in lines[0]
    assert not list(tmp_path.glob("*out.zarr*"))  # nothing at the destination, no staging left


def test_export_refuses_what_video_cannot_hold_before_writing(tmp_path):
    shape_meta = {"obs": {"cam": {"shape": [7, 8, 3], "type": "rgb"}}, "action": {"shape": [1]}}
    with DatasetWriter.create(tmp_path / "odd.zarr", shape_meta, fps=10) as writer:
        writer.append_episode({"cam": np.zeros((2, 7, 8, 3), np.uint8), "action": np.zeros((2, 1))})
    with pytest.raises(DatasetError, match=r"data/cam: shape \[7, 8, 3\]: video export needs"):
        zarr_to_lerobot(tmp_path / "odd.zarr", tmp_path / "lr")
    assert not (tmp_path / "lr").exists()
    write_dataset(tmp_path / "ours.zarr", n_episodes=1)
    result = run_cli("zarr-to-lerobot", f"src={tmp_path / 'ours.zarr'}", f"dst={tmp_path / 'lr2'}")
    assert result.returncode == 0, result.stderr
    assert "observation.images.cam: PSNR" in result.stdout
    again = run_cli("zarr-to-lerobot", f"src={tmp_path / 'ours.zarr'}", f"dst={tmp_path / 'lr2'}")
    assert again.returncode == 2 and "already exists" in again.stderr


# ------------------------------------------------------------------------- LeRobot itself
PEERS_PYTHON = REPO / ".venv-peers" / "bin" / "python"  # scripts/make_peers_venv.sh: lerobot 0.3.2


@pytest.mark.slow
@pytest.mark.skipif(not PEERS_PYTHON.exists(), reason="no .venv-peers (scripts/make_peers_venv.sh)")
def test_export_opens_in_lerobots_own_dataset_class(tmp_path):
    """scripts/open_in_lerobot.py: LeRobotDataset(repo_id, root=...) reads the v2.1 export,
    offline, with every checked item at its episode and frame and equal to the zarr's row."""
    write_dataset(tmp_path / "ours.zarr", n_episodes=3)
    zarr_to_lerobot(tmp_path / "ours.zarr", tmp_path / "lerobot")
    env = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    done = subprocess.run(
        [str(PEERS_PYTHON), "scripts/open_in_lerobot.py", str(tmp_path / "lerobot")]
        + ["--compare", str(tmp_path / "ours.zarr")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **env},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "3 episodes, 21 frames, fps 10, codebase v2.1" in done.stdout
    assert done.stdout.count("low-dim equal to the zarr: True") == 4
    assert "items: ok" in done.stdout
