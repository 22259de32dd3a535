"""Our zarr dataset -> a LeRobot dataset directory (codebase v2.1, which LeRobot 0.3 reads and
LeRobot 0.4+ converts with its own ``convert_dataset_v21_to_v30``).

Written, per episode ``e`` (all in chunk 000 up to 1000 episodes, as LeRobot chunks them)::

    data/chunk-000/episode_00000e.parquet            one row per step: the numeric features,
                                                     timestamp (frame_index / fps, float32),
                                                     frame_index, episode_index, index, task_index
    videos/chunk-000/<camera>/episode_00000e.mp4     each rgb key, AV1 (``VideoSettings``)
    meta/info.json, meta/tasks.jsonl, meta/episodes.jsonl, meta/episodes_stats.jsonl
    meta/robopolicy.json                             env spec, shape_meta, key names, per-episode
                                                     fields, provenance (``lerobot_sidecar``)

Keys map as ``lerobot_features`` describes (``renames`` {our key: LeRobot name} overrides,
``drop`` skips our keys). Low-dim values are written in their stored dtype, so they come back
bit-identical; images go through the lossy video codec and the export measures the PSNR of
every frame decoded back against the original (``LeRobotExport.psnr``). Tasks: ``data/task_index``
and ``attrs["tasks"]`` when the dataset has them, else one task for every frame (``task``, by
default the env spec's id). Stats are LeRobot's per-episode min / max / mean / std / count, images
per channel in [0, 1].

Refused before anything is written: a depth camera or an rgb key without 3 channels or with odd
sizes (4:2:0 video needs even ones; ``drop`` it), a multi-dimensional low-dim key, a
``task_index`` without its strings.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from robopolicy.data.convert.common import check_destination, staged_output
from robopolicy.data.convert.lerobot_features import TASK_INDEX, Mapped, default_lerobot
from robopolicy.data.convert.lerobot_sidecar import sidecar_record, write_sidecar
from robopolicy.data.convert.lerobot_video import (
    PSNR,
    VideoSettings,
    decode_frames,
    encode_frames,
)
from robopolicy.data.errors import DatasetError
from robopolicy.data.format import EXTRA_STEP_KEYS
from robopolicy.data.reader import ReplayBuffer

CODEBASE_VERSION = "v2.1"
CHUNKS_SIZE = 1000  # episodes per chunk directory, LeRobot's default
DATA_PATH = "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet"
VIDEO_PATH = "videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4"
FALLBACK_TASK = "demonstration"  # the task string when a dataset has neither tasks nor an env id
CODEC_NAMES = {"libsvtav1": "av1", "libx264": "h264", "libx265": "hevc"}  # info.json's names
IMAGE_NAMES = ["height", "width", "channels"]


@dataclass
class LeRobotExport:
    """Where the export went, and how close each camera's video is to the original frames."""

    path: Path
    psnr: dict[str, PSNR] = field(default_factory=dict)  # by LeRobot feature name

    def summary(self) -> str:
        lines = [str(self.path)]
        for key, psnr in self.psnr.items():
            lines.append(
                f"  {key}: PSNR {psnr.db:.1f} dB over all frames, "
                f"worst frame {psnr.worst_frame_db:.1f} dB"
            )
        return "\n".join(lines)


def zarr_to_lerobot(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    renames: dict[str, str] | None = None,
    drop: set[str] | None = None,
    task: str | None = None,
    video: VideoSettings | None = None,
    robot_type: str | None = None,
    overwrite: bool = False,
) -> LeRobotExport:
    """Write our dataset ``src`` as the LeRobot dataset directory ``dst`` (module docstring)."""
    src, dst = Path(src), Path(dst)
    check_destination(dst, overwrite)
    buffer = ReplayBuffer.open(src)
    plan = _plan_export(buffer, renames or {}, set(drop or ()))
    tasks = _tasks(buffer, task)
    video = video or VideoSettings()
    export = LeRobotExport(dst)
    episodes, stats = [], []
    with staged_output(dst, overwrite) as staging:
        (staging / "meta").mkdir(parents=True)
        for index in tqdm(range(buffer.n_episodes), desc="zarr -> lerobot", unit="ep"):
            window = buffer.episode_slice(index)
            arrays = {m.ours: buffer.data[m.ours][window] for m in plan}
            task_index = _task_index(buffer, window)
            columns = _columns(arrays, plan, task_index, index, window.start, buffer.fps)
            _write_parquet(staging / _path(DATA_PATH, index), columns, plan)
            for mapped in plan:
                if mapped.role == "rgb":
                    path = staging / _path(VIDEO_PATH, index, mapped.lerobot)
                    _write_video(path, arrays[mapped.ours], buffer.fps, video, mapped, export)
            episode_tasks = list(dict.fromkeys(tasks[i] for i in task_index))
            episodes.append(
                {"episode_index": index, "tasks": episode_tasks, "length": len(task_index)}
            )
            stats.append({"episode_index": index, "stats": _episode_stats(columns, arrays, plan)})
        dtypes = {m.lerobot: buffer.data[m.ours].dtype.name for m in plan}
        features = _features(plan, dtypes, buffer.fps, video)
        info = _info(buffer, features, len(tasks), robot_type)
        _write_json(staging / "meta/info.json", info)
        _write_jsonl(
            staging / "meta/tasks.jsonl",
            [{"task_index": i, "task": t} for i, t in enumerate(tasks)],
        )
        _write_jsonl(staging / "meta/episodes.jsonl", episodes)
        _write_jsonl(staging / "meta/episodes_stats.jsonl", stats)
        lerobot_keys = {m.lerobot: m.ours for m in plan}
        record = sidecar_record(
            dict(buffer.attrs),
            buffer.fps,
            lerobot_keys,
            TASK_INDEX in buffer.data,
            buffer.episode_meta,
        )
        write_sidecar(staging, record)
    return export


def _plan_export(buffer: ReplayBuffer, renames: dict[str, str], drop: set[str]) -> list[Mapped]:
    """Which of our arrays become which LeRobot feature, checked before anything is written."""
    obs = buffer.shape_meta["obs"]
    extras = [k for k in EXTRA_STEP_KEYS if k in buffer.data and k != TASK_INDEX]
    keys = [*obs, "action", *extras]
    unknown = sorted((set(renames) | drop) - set(keys))
    if unknown:
        raise DatasetError(buffer.path, f"no such key to rename or drop (has {keys})", unknown[0])
    plan = []
    for key in keys:
        if key in drop:
            continue
        role = obs[key]["type"] if key in obs else "action" if key == "action" else "extra"
        shape = tuple(buffer.data[key].shape[1:])
        if role == "depth":
            raise DatasetError(
                buffer.path, "depth cannot go into a LeRobot video; --drop it", f"data/{key}"
            )
        if role == "rgb" and (shape[2] != 3 or shape[0] % 2 or shape[1] % 2):
            raise DatasetError(
                buffer.path,
                f"shape {list(shape)}: video export needs [even H, even W, 3]",
                f"data/{key}",
            )
        if role != "rgb" and len(shape) > 1:
            raise DatasetError(
                buffer.path, f"shape {list(shape)}: expected one dimension", f"data/{key}"
            )
        name = renames.get(key, default_lerobot(key, role))
        if "/" in name or name in [m.lerobot for m in plan]:
            raise DatasetError(buffer.path, f"LeRobot name {name!r} is taken or has a '/'", key)
        plan.append(Mapped(name, key, role, shape))
    return plan


def _tasks(buffer: ReplayBuffer, task: str | None) -> list[str]:
    if TASK_INDEX not in buffer.data:
        return [task or buffer.env_spec.get("id") or FALLBACK_TASK]
    tasks = buffer.attrs.get("tasks")
    n_needed = int(buffer.data[TASK_INDEX][:].max()) + 1
    if not isinstance(tasks, list) or len(tasks) < n_needed:
        raise DatasetError(
            buffer.path, f"data/task_index needs {n_needed} task strings", "attrs.tasks"
        )
    return [str(t) for t in tasks]


def _task_index(buffer: ReplayBuffer, window: slice) -> np.ndarray:
    if TASK_INDEX in buffer.data:
        return buffer.data[TASK_INDEX][window].astype(np.int64)
    return np.zeros(window.stop - window.start, dtype=np.int64)


def _path(template: str, index: int, video_key: str = "") -> str:
    return template.format(
        episode_chunk=index // CHUNKS_SIZE, episode_index=index, video_key=video_key
    )


def _columns(
    arrays: dict[str, np.ndarray],
    plan: list[Mapped],
    task_index: np.ndarray,
    episode: int,
    start: int,
    fps: float,
) -> dict[str, np.ndarray]:
    """One episode's parquet columns, by LeRobot name, in LeRobot's order."""
    n = len(task_index)
    frame_index = np.arange(n, dtype=np.int64)
    columns = {m.lerobot: arrays[m.ours] for m in plan if m.role != "rgb"}
    columns.update(
        {
            "timestamp": (frame_index / fps).astype(np.float32),
            "frame_index": frame_index,
            "episode_index": np.full(n, episode, dtype=np.int64),
            "index": np.arange(start, start + n, dtype=np.int64),
            "task_index": task_index,
        }
    )
    return columns


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


def _write_parquet(path: Path, columns: dict[str, np.ndarray], plan: list[Mapped]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    table = pa.table({name: _arrow(values) for name, values in columns.items()})
    hf = {"info": {"features": {name: _hf_feature(values) for name, values in columns.items()}}}
    table = table.replace_schema_metadata({"huggingface": json.dumps(hf)})
    pq.write_table(table, path)


def _write_video(
    path: Path,
    frames: np.ndarray,
    fps: float,
    video: VideoSettings,
    mapped: Mapped,
    export: LeRobotExport,
) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    encode_frames(path, frames, fps, video)
    decoded = decode_frames(path, 0.0, len(frames), fps, mapped.shape, mapped.lerobot)
    export.psnr.setdefault(mapped.lerobot, PSNR()).add(frames, decoded)


def _episode_stats(
    columns: dict[str, np.ndarray], arrays: dict[str, np.ndarray], plan: list[Mapped]
) -> dict:
    """LeRobot's per-episode stats: per dimension for numbers, per channel in [0, 1] for images."""
    stats = {}
    for name, values in columns.items():
        values = values.astype(np.float64).reshape(len(values), -1)
        stats[name] = _stat_lists(values, axis=0)
    for mapped in plan:
        if mapped.role == "rgb":
            pixels = arrays[mapped.ours].astype(np.float64) / 255.0
            per_channel = _stat_lists(pixels.reshape(-1, pixels.shape[-1]), axis=0)
            stats[mapped.lerobot] = {
                k: v if k == "count" else [[[x]] for x in v] for k, v in per_channel.items()
            }
            stats[mapped.lerobot]["count"] = [len(pixels)]
    return stats


def _stat_lists(values: np.ndarray, axis: int) -> dict[str, list]:
    return {
        "min": values.min(axis=axis).tolist(),
        "max": values.max(axis=axis).tolist(),
        "mean": values.mean(axis=axis).tolist(),
        "std": values.std(axis=axis).tolist(),
        "count": [int(values.shape[0])],
    }


def _features(
    plan: list[Mapped], dtypes: dict[str, str], fps: float, video: VideoSettings
) -> dict[str, dict]:
    """info.json's features: ours, then LeRobot's five bookkeeping columns."""
    features = {}
    for m in plan:
        if m.role == "rgb":
            height, width, channels = m.shape
            features[m.lerobot] = {
                "dtype": "video",
                "shape": [height, width, channels],
                "names": IMAGE_NAMES,
                "info": {
                    "video.height": height,
                    "video.width": width,
                    "video.codec": CODEC_NAMES.get(video.codec, video.codec),
                    "video.pix_fmt": video.pix_fmt,
                    "video.is_depth_map": False,
                    "video.fps": _number(fps),
                    "video.channels": channels,
                    "has_audio": False,
                },
            }
        else:
            shape = list(m.shape) or [1]
            features[m.lerobot] = {"dtype": dtypes[m.lerobot], "shape": shape, "names": None}
    scalars = {"timestamp": "float32", "frame_index": "int64", "episode_index": "int64"}
    scalars.update({"index": "int64", "task_index": "int64"})
    features.update({k: {"dtype": v, "shape": [1], "names": None} for k, v in scalars.items()})
    return features


def _number(fps: float) -> int | float:
    return int(fps) if float(fps).is_integer() else float(fps)


def _info(buffer: ReplayBuffer, features: dict, n_tasks: int, robot_type: str | None) -> dict:
    n_cameras = sum(1 for f in features.values() if f["dtype"] == "video")
    return {
        "codebase_version": CODEBASE_VERSION,
        "robot_type": robot_type,
        "total_episodes": buffer.n_episodes,
        "total_frames": buffer.n_steps,
        "total_tasks": n_tasks,
        "total_videos": buffer.n_episodes * n_cameras,
        "total_chunks": (buffer.n_episodes - 1) // CHUNKS_SIZE + 1,
        "chunks_size": CHUNKS_SIZE,
        "fps": _number(buffer.fps),
        "splits": {"train": f"0:{buffer.n_episodes}"},
        "data_path": DATA_PATH,
        "video_path": VIDEO_PATH if n_cameras else None,
        "features": features,
    }


def _write_json(path: Path, value: dict) -> None:
    path.write_text(json.dumps(value, indent=4) + "\n")


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
