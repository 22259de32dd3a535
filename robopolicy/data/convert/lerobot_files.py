"""The files of an exported LeRobot dataset, one writer per codebase version.

Both take an episode at a time (its parquet columns, its camera frames, its tasks and stats,
from ``lerobot_export``) and write the layout ``lerobot_layout`` describes:

- ``V21Files``: one parquet file and one mp4 per camera per episode; meta/episodes.jsonl,
  tasks.jsonl and episodes_stats.jsonl (and the dataset-wide stats.json);
- ``V30Files``: episodes appended to one parquet file and one mp4 per camera, a new file once
  one passes LeRobot's size limits (100 MB of data, 200 MB of video); per-episode rows (file
  indices, row range, each video's time segment, stats) in meta/episodes/, the task strings in
  meta/tasks.parquet, dataset-wide stats in meta/stats.json.

``finish`` returns every video segment written, so the export can decode it back and measure it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from robopolicy.data.convert.lerobot_video import VideoEncoder, VideoSettings, encode_frames

CHUNKS_SIZE = 1000  # episodes (v2.1) or files (v3.0) per chunk directory, LeRobot's default
DATA_FILE_MB = 100  # v3.0: start a new data file past this size, LeRobot's default
VIDEO_FILE_MB = 200  # v3.0: start a new video file past this size, LeRobot's default
V21_DATA_PATH = "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet"
V21_VIDEO_PATH = "videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4"
V30_DATA_PATH = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
V30_VIDEO_PATH = "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
V30_EPISODES_PATH = "meta/episodes/chunk-000/file-000.parquet"


@dataclass(frozen=True)
class Segment:
    """Where one episode's frames of one camera are: to decode them back after writing."""

    key: str
    path: Path
    start: float
    episode: int


def _arrow(values: np.ndarray) -> pa.Array:
    if values.ndim == 1:
        return pa.array(values)
    return pa.FixedSizeListArray.from_arrays(pa.array(values.reshape(-1)), values.shape[1])


def _hf_feature(values: np.ndarray) -> dict:
    """The Hugging Face ``datasets`` feature LeRobot declares for a column (schema metadata)."""
    value = {"dtype": values.dtype.name, "_type": "Value"}
    if values.ndim == 1:
        return value
    return {"feature": value, "length": int(values.shape[1]), "_type": "Sequence"}


def frame_table(columns: dict[str, np.ndarray]) -> pa.Table:
    """One episode's rows, with the schema metadata LeRobot's loader reads its features from."""
    table = pa.table({name: _arrow(values) for name, values in columns.items()})
    hf = {"info": {"features": {name: _hf_feature(v) for name, v in columns.items()}}}
    return table.replace_schema_metadata({"huggingface": json.dumps(hf)})


def _write_json(path: Path, value: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value, indent=4) + "\n")


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))


class V21Files:
    version = "v2.1"

    def __init__(self, root: Path, fps: float, video: VideoSettings):
        self.root, self.fps, self.video = root, fps, video
        self.episodes: list[dict] = []
        self.stats: list[dict] = []
        self.segments: list[Segment] = []

    def _path(self, template: str, index: int, key: str = "") -> Path:
        names = {"episode_chunk": index // CHUNKS_SIZE, "episode_index": index, "video_key": key}
        path = self.root / template.format(**names)
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def add_episode(
        self, index: int, table: pa.Table, frames: dict[str, np.ndarray], tasks: list, stats: dict
    ) -> None:
        pq.write_table(table, self._path(V21_DATA_PATH, index))
        for key, images in frames.items():
            path = self._path(V21_VIDEO_PATH, index, key)
            encode_frames(path, images, self.fps, self.video)
            self.segments.append(Segment(key, path, 0.0, index))
        self.episodes.append({"episode_index": index, "tasks": tasks, "length": table.num_rows})
        self.stats.append({"episode_index": index, "stats": stats})

    def finish(self, info: dict, tasks: list[str], stats: dict) -> list[Segment]:
        n_episodes, n_cameras = len(self.episodes), len({s.key for s in self.segments})
        info = {
            "codebase_version": self.version,
            **info,
            "total_videos": n_episodes * n_cameras,
            "total_chunks": (n_episodes - 1) // CHUNKS_SIZE + 1,
            "chunks_size": CHUNKS_SIZE,
            "data_path": V21_DATA_PATH,
            "video_path": V21_VIDEO_PATH if n_cameras else None,
        }
        _write_json(self.root / "meta/info.json", _ordered(info))
        rows = [{"task_index": i, "task": task} for i, task in enumerate(tasks)]
        _write_jsonl(self.root / "meta/tasks.jsonl", rows)
        _write_jsonl(self.root / "meta/episodes.jsonl", self.episodes)
        _write_jsonl(self.root / "meta/episodes_stats.jsonl", self.stats)
        _write_json(self.root / "meta/stats.json", stats)  # what v2.0 read; harmless for v2.1
        return self.segments


def _ordered(info: dict) -> dict:
    """info.json with ``features`` last, as LeRobot writes it (easier to read)."""
    return {**{k: v for k, v in info.items() if k != "features"}, "features": info["features"]}


def _next_file(chunk: int, file: int) -> tuple[int, int]:
    return (chunk + 1, 0) if file == CHUNKS_SIZE - 1 else (chunk, file + 1)


class V30Files:
    version = "v3.0"

    def __init__(self, root: Path, fps: float, video: VideoSettings):
        self.root, self.fps, self.video = root, fps, video
        self.rows: list[dict] = []
        self.segments: list[Segment] = []
        self.data_file = (0, 0)
        self._data_writer: pq.ParquetWriter | None = None
        self._data_bytes = 0
        self.video_files: dict[str, tuple[int, int]] = {}
        self._encoders: dict[str, VideoEncoder] = {}
        self.n_frames = 0

    def _path(self, template: str, chunk_file: tuple[int, int], key: str = "") -> Path:
        names = {"chunk_index": chunk_file[0], "file_index": chunk_file[1], "video_key": key}
        path = self.root / template.format(**names)
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def add_episode(
        self, index: int, table: pa.Table, frames: dict[str, np.ndarray], tasks: list, stats: dict
    ) -> None:
        row = {"episode_index": index, "tasks": tasks, "length": table.num_rows}
        row.update(self._add_data(table))
        row["dataset_from_index"], row["dataset_to_index"] = (
            self.n_frames,
            self.n_frames + table.num_rows,
        )
        self.n_frames += table.num_rows
        for key, images in frames.items():
            row.update(self._add_video(key, images, index))
        row["meta/episodes/chunk_index"], row["meta/episodes/file_index"] = 0, 0
        for feature, values in stats.items():
            row.update({f"stats/{feature}/{name}": v for name, v in values.items()})
        self.rows.append(row)

    def _add_data(self, table: pa.Table) -> dict:
        if self._data_writer is None:
            path = self._path(V30_DATA_PATH, self.data_file)
            self._data_writer = pq.ParquetWriter(path, table.schema)
        self._data_writer.write_table(table)
        chunk, file = self.data_file
        self._data_bytes += table.nbytes
        if self._data_bytes >= DATA_FILE_MB * 2**20:
            self._data_writer.close()
            self._data_writer, self._data_bytes = None, 0
            self.data_file = _next_file(chunk, file)
        return {"data/chunk_index": chunk, "data/file_index": file}

    def _add_video(self, key: str, images: np.ndarray, index: int) -> dict:
        chunk_file = self.video_files.setdefault(key, (0, 0))
        if key not in self._encoders:
            path = self._path(V30_VIDEO_PATH, chunk_file, key)
            height, width = images.shape[1:3]
            self._encoders[key] = VideoEncoder(path, height, width, self.fps, self.video)
        encoder = self._encoders[key]
        start = encoder.n_frames / self.fps
        encoder.add(images)
        self.segments.append(Segment(key, encoder.path, start, index))
        prefix = f"videos/{key}/"
        row = {
            prefix + "chunk_index": chunk_file[0],
            prefix + "file_index": chunk_file[1],
            prefix + "from_timestamp": start,
            prefix + "to_timestamp": encoder.n_frames / self.fps,
        }
        written = encoder.path.stat().st_size if encoder.path.exists() else 0  # ffmpeg streams
        if written >= VIDEO_FILE_MB * 2**20:
            encoder.close()
            del self._encoders[key]
            self.video_files[key] = _next_file(*chunk_file)
        return row

    def finish(self, info: dict, tasks: list[str], stats: dict) -> list[Segment]:
        if self._data_writer is not None:
            self._data_writer.close()
        for encoder in self._encoders.values():
            encoder.close()
        info = {
            "codebase_version": self.version,
            **info,
            "chunks_size": CHUNKS_SIZE,
            "data_files_size_in_mb": DATA_FILE_MB,
            "video_files_size_in_mb": VIDEO_FILE_MB,
            "data_path": V30_DATA_PATH,
            "video_path": V30_VIDEO_PATH if self.video_files else None,
        }
        _write_json(self.root / "meta/info.json", _ordered(info))
        pq.write_table(pa.Table.from_pylist(self.rows), self._path(V30_EPISODES_PATH, (0, 0)))
        pq.write_table(_tasks_table(tasks), self.root / "meta/tasks.parquet")
        _write_json(self.root / "meta/stats.json", stats)
        return self.segments


def _tasks_table(tasks: list[str]) -> pa.Table:
    """meta/tasks.parquet as pandas writes a frame indexed by the task strings, which is how
    LeRobot reads it back (``pd.read_parquet``, then ``tasks.loc[task]``)."""
    table = pa.table({"task_index": pa.array(range(len(tasks)), pa.int64()), "task": tasks})
    pandas = {
        "index_columns": ["task"],
        "column_indexes": [],
        "columns": [
            {"name": "task_index", "field_name": "task_index", "pandas_type": "int64"}
            | {"numpy_type": "int64", "metadata": None},
            {"name": "task", "field_name": "task", "pandas_type": "unicode"}
            | {"numpy_type": "object", "metadata": None},
        ],
    }
    return table.replace_schema_metadata({"pandas": json.dumps(pandas)})
