"""Where a LeRobot dataset keeps what: its metadata read into one description for every version.

LeRobot datasets are a directory (``codebase_version`` in ``meta/info.json``)::

    v2.0 / v2.1                                   v3.0
    meta/info.json         fps, features, paths   meta/info.json        the same, new path templates
    meta/tasks.jsonl       {task_index, task}     meta/tasks.parquet    task (index), task_index
    meta/episodes.jsonl    {episode_index,        meta/episodes/chunk-CCC/file-FFF.parquet
                            tasks, length}          episode_index, tasks, length,
                                                    data/chunk_index, data/file_index,
                                                    dataset_from_index, dataset_to_index,
                                                    videos/<key>/{chunk_index, file_index,
                                                                  from_timestamp, to_timestamp}
    meta/episodes_stats.jsonl (v2.1) or           meta/stats.json (and stats/<key>/<stat>
    meta/stats.json (v2.0)                          columns in the episodes files)
    data/chunk-CCC/episode_EEEEEE.parquet         data/chunk-CCC/file-FFF.parquet (many episodes)
    videos/chunk-CCC/<key>/episode_EEEEEE.mp4     videos/<key>/chunk-CCC/file-FFF.mp4 (many)

Each frame is a parquet row: the features (``observation.state``, ``action``, ...) and
``timestamp``, ``frame_index``, ``episode_index``, ``index`` (global), ``task_index``. A video
feature's frames are in its mp4 instead, at ``from_timestamp + timestamp``. v2.x puts episode
``e`` in chunk ``e // chunks_size``; v3.0 names each episode's files in its metadata row.

``read_layout`` checks what conversion relies on and raises one ``DatasetError`` naming the file
and key otherwise. Stats are not read: they are recomputed from the data on export.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from robopolicy.data.errors import DatasetError

INFO_PATH = "meta/info.json"
SUPPORTED_VERSIONS = ("v2.0", "v2.1", "v3.0")
V2_CHUNKS_SIZE = 1000  # episodes per chunk directory when a v2 info.json omits chunks_size


@dataclass
class EpisodeFiles:
    """One episode: its length, its rows in a data file, and where each video has its frames."""

    index: int
    length: int
    data_file: Path
    videos: dict[str, tuple[Path, float]] = field(default_factory=dict)  # key: (file, start s)


@dataclass
class LeRobotLayout:
    root: Path
    version: str
    fps: float
    features: dict[str, dict]
    tasks: list[str]  # task strings by task_index
    episodes: list[EpisodeFiles]
    info: dict[str, Any]


def read_layout(root: Path) -> LeRobotLayout:
    """The metadata of the LeRobot dataset in the directory ``root``."""
    if not root.exists():
        raise DatasetError(root, "no such directory")
    info_path = root / INFO_PATH
    if not root.is_dir() or not info_path.is_file():
        raise DatasetError(root, f"not a LeRobot dataset (no {INFO_PATH})")
    info = _read_json(info_path)
    version = info.get("codebase_version")
    if version not in SUPPORTED_VERSIONS:
        raise DatasetError(
            info_path,
            f"{version!r}: unknown LeRobot format; expected one of {list(SUPPORTED_VERSIONS)}",
            "codebase_version",
        )
    for key, kind in (("fps", (int, float)), ("features", dict), ("data_path", str)):
        if not isinstance(info.get(key), kind) or isinstance(info.get(key), bool):
            raise DatasetError(info_path, f"missing or not a {kind}", key)
    features = info["features"]
    video_keys = [k for k, v in features.items() if v.get("dtype") == "video"]
    if video_keys and not isinstance(info.get("video_path"), str):
        raise DatasetError(
            info_path, f"video features {video_keys} but no video_path", "video_path"
        )
    if version == "v3.0":
        tasks, episodes = _read_tasks_v30(root), _read_episodes_v30(root, info, video_keys)
    else:
        tasks, episodes = _read_tasks_v2(root), _read_episodes_v2(root, info, video_keys)
    if not episodes:
        raise DatasetError(root, "holds no episodes", "meta/episodes")
    _check_files_exist(episodes)
    return LeRobotLayout(root, version, float(info["fps"]), features, tasks, episodes, info)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise DatasetError(path, f"is not valid JSON ({error})") from None


def _read_jsonl(path: Path) -> list[dict]:
    if not path.is_file():
        raise DatasetError(path, "no such file (every LeRobot v2 dataset has it)")
    rows = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except ValueError as error:
                raise DatasetError(path, f"line {number} is not valid JSON ({error})") from None
    return rows


def read_parquet(path: Path, columns: list[str] | None = None) -> pa.Table:
    """A parquet file as a table, or a ``DatasetError`` naming it (and a missing column)."""
    if not path.is_file():
        raise DatasetError(path, "no such file")
    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowException) as error:
        raise DatasetError(path, f"cannot read as parquet ({error})") from None
    missing = [c for c in columns or [] if c not in table.column_names]
    if missing:
        raise DatasetError(path, f"has no column {missing[0]} (has {table.column_names})")
    return table


def _read_tasks_v2(root: Path) -> list[str]:
    path = root / "meta/tasks.jsonl"
    return _tasks_by_index(
        path, [(row.get("task_index"), row.get("task")) for row in _read_jsonl(path)]
    )


def _read_tasks_v30(root: Path) -> list[str]:
    path = root / "meta/tasks.parquet"
    table = read_parquet(path, ["task_index"])
    # pandas wrote the task strings as the frame's index: a column named "task" (or unnamed)
    name = "task" if "task" in table.column_names else "__index_level_0__"
    if name not in table.column_names:
        raise DatasetError(path, f"has no task column (has {table.column_names})")
    pairs = zip(table["task_index"].to_pylist(), table[name].to_pylist(), strict=True)
    return _tasks_by_index(path, list(pairs))


def _tasks_by_index(path: Path, pairs: list[tuple[Any, Any]]) -> list[str]:
    indices = sorted(index for index, _ in pairs if isinstance(index, int))
    if indices != list(range(len(pairs))) or not all(isinstance(t, str) for _, t in pairs):
        raise DatasetError(path, "expected task strings with task_index 0, 1, ... in full")
    return [task for _, task in sorted(pairs)]


def _read_episodes_v2(root: Path, info: dict, video_keys: list[str]) -> list[EpisodeFiles]:
    path = root / "meta/episodes.jsonl"
    chunks_size = int(info.get("chunks_size", V2_CHUNKS_SIZE))
    episodes = []
    for row in sorted(_read_jsonl(path), key=lambda r: r.get("episode_index", -1)):
        index, length = row.get("episode_index"), row.get("length")
        if not isinstance(index, int) or not isinstance(length, int) or length < 1:
            raise DatasetError(path, f"expected episode_index and length >= 1, got {row}")
        names = {"episode_chunk": index // chunks_size, "episode_index": index}
        videos = {
            key: (root / info["video_path"].format(video_key=key, **names), 0.0)
            for key in video_keys
        }
        episodes.append(
            EpisodeFiles(index, length, root / info["data_path"].format(**names), videos)
        )
    return episodes


def _read_episodes_v30(root: Path, info: dict, video_keys: list[str]) -> list[EpisodeFiles]:
    files = sorted((root / "meta/episodes").glob("chunk-*/file-*.parquet"))
    if not files:
        raise DatasetError(root / "meta/episodes", "no chunk-*/file-*.parquet files (v3.0)")
    needed = ["episode_index", "length", "data/chunk_index", "data/file_index"]
    for key in video_keys:
        needed += [f"videos/{key}/{c}" for c in ("chunk_index", "file_index", "from_timestamp")]
    episodes = []
    for path in files:
        for row in read_parquet(path, needed).select(needed).to_pylist():
            names = {"chunk_index": row["data/chunk_index"], "file_index": row["data/file_index"]}
            videos = {}
            for key in video_keys:
                prefix = f"videos/{key}/"
                video = info["video_path"].format(
                    video_key=key,
                    chunk_index=row[prefix + "chunk_index"],
                    file_index=row[prefix + "file_index"],
                )
                videos[key] = (root / video, float(row[prefix + "from_timestamp"]))
            data = root / info["data_path"].format(**names)
            episodes.append(EpisodeFiles(row["episode_index"], row["length"], data, videos))
    return sorted(episodes, key=lambda e: e.index)


def _check_files_exist(episodes: list[EpisodeFiles]) -> None:
    """Every data and video file the metadata names is there (checked before any conversion)."""
    for episode in episodes:
        if not episode.data_file.is_file():
            raise DatasetError(episode.data_file, f"no such file (episode {episode.index})")
        for key, (path, _) in episode.videos.items():
            if not path.is_file():
                raise DatasetError(path, f"no such video file (feature {key})")
