"""Our zarr dataset -> a LeRobot dataset directory, codebase v3.0 (LeRobot 0.4 and later) or
v2.1 (LeRobot 0.3; the default, as the release this machine runs reads it).

Rows, per step: the numeric features, ``timestamp`` (frame_index / fps, float32), ``frame_index``,
``episode_index``, ``index`` and ``task_index``; each rgb key becomes an AV1 video
(``VideoSettings``). ``lerobot_files`` lays the files out for either version; beside LeRobot's
files goes ``meta/robopolicy.json`` (``lerobot_sidecar``): env spec, shape_meta, key names,
per-episode fields and provenance, for an exact import back.

Keys map as ``lerobot_features`` describes (``renames`` {our key: LeRobot name} overrides,
``drop`` skips our keys). Low-dim values are written in their stored dtype, so they come back
bit-identical; images go through the lossy video codec and the export decodes every segment it
wrote and measures its PSNR against the original frames (``LeRobotExport.psnr``). Tasks:
``data/task_index`` and ``attrs["tasks"]`` when the dataset has them, else one task for every
frame (``task``, by default the env spec's id). Stats: LeRobot's per-episode and dataset-wide
min / max / mean / std / count (images per channel in [0, 1]); not the quantiles (q01 ... q99)
that LeRobot 0.4 adds, which only its QUANTILES normalization reads.

Refused before anything is written: a depth camera or an rgb key without 3 channels or with odd
sizes (4:2:0 video needs even ones; ``drop`` it), a multi-dimensional low-dim key, a
``task_index`` without its strings.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from robopolicy.data.convert.common import check_destination, staged_output
from robopolicy.data.convert.lerobot_features import TASK_INDEX, Mapped, default_lerobot
from robopolicy.data.convert.lerobot_files import Segment, V21Files, V30Files, frame_table
from robopolicy.data.convert.lerobot_sidecar import sidecar_record, write_sidecar
from robopolicy.data.convert.lerobot_video import PSNR, VideoSettings, decode_frames
from robopolicy.data.errors import DatasetError
from robopolicy.data.format import EXTRA_STEP_KEYS
from robopolicy.data.reader import ReplayBuffer

WRITERS = {"v2.1": V21Files, "v3.0": V30Files}  # codebase_version -> how its files are laid out
DEFAULT_VERSION = "v2.1"  # what LeRobot 0.3 (the release installable beside torch 2.13) reads
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
    robot_type: str | None = None,  # None: the one recorded on import from LeRobot, if any
    version: str = DEFAULT_VERSION,
    overwrite: bool = False,
) -> LeRobotExport:
    """Write our dataset ``src`` as the LeRobot dataset directory ``dst`` (module docstring)."""
    src, dst = Path(src), Path(dst)
    if version not in WRITERS:
        raise DatasetError(dst, f"codebase version {version!r}: expected one of {list(WRITERS)}")
    check_destination(dst, overwrite)
    buffer = ReplayBuffer.open(src)
    plan = _plan_export(buffer, renames or {}, set(drop or ()))
    tasks = _tasks(buffer, task)
    video = video or VideoSettings()
    export = LeRobotExport(dst)
    all_stats = []
    with staged_output(dst, overwrite) as staging:
        files = WRITERS[version](staging, buffer.fps, video)
        for index in tqdm(range(buffer.n_episodes), desc="zarr -> lerobot", unit="ep"):
            window = buffer.episode_slice(index)
            arrays = {m.ours: buffer.data[m.ours][window] for m in plan}
            task_index = _task_index(buffer, window)
            columns = _columns(arrays, plan, task_index, index, window.start, buffer.fps)
            frames = {m.lerobot: arrays[m.ours] for m in plan if m.role == "rgb"}
            episode_tasks = list(dict.fromkeys(tasks[i] for i in task_index))
            all_stats.append(_episode_stats(columns, frames))
            files.add_episode(index, frame_table(columns), frames, episode_tasks, all_stats[-1])
        dtypes = {m.lerobot: buffer.data[m.ours].dtype.name for m in plan}
        source = buffer.attrs.get("lerobot", {})  # where the dataset was imported from LeRobot
        features = _features(plan, dtypes, buffer.fps, video, source.get("features", {}))
        robot_type = robot_type or source.get("robot_type")
        info = _info(buffer, features, len(tasks), robot_type)
        segments = files.finish(info, tasks, _aggregate(all_stats))
        _measure(segments, buffer, plan, export)
        lerobot_keys = {m.lerobot: m.ours for m in plan}
        has_tasks = TASK_INDEX in buffer.data
        record = sidecar_record(
            dict(buffer.attrs), buffer.fps, lerobot_keys, has_tasks, buffer.episode_meta
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
                buffer.path,
                "depth cannot go into a LeRobot video; drop=[KEY] leaves it out",
                f"data/{key}",
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


def _measure(
    segments: list[Segment], buffer: ReplayBuffer, plan: list[Mapped], export: LeRobotExport
) -> None:
    """Decode every video segment written and add its PSNR against our frames to ``export``."""
    ours = {m.lerobot: m for m in plan}
    for segment in segments:
        mapped = ours[segment.key]
        original = buffer.data[mapped.ours][buffer.episode_slice(segment.episode)]
        decoded = decode_frames(
            segment.path, segment.start, len(original), buffer.fps, mapped.shape, segment.key
        )
        export.psnr.setdefault(segment.key, PSNR()).add(original, decoded)


def _episode_stats(columns: dict[str, np.ndarray], frames: dict[str, np.ndarray]) -> dict:
    """LeRobot's per-episode stats: per dimension for numbers, per channel in [0, 1] for images
    (shaped (C, 1, 1), as LeRobot broadcasts them over CHW frames)."""
    stats = {}
    for name, values in columns.items():
        stats[name] = _stat_lists(values.astype(np.float64).reshape(len(values), -1))
    for name, images in frames.items():
        pixels = images.reshape(-1, images.shape[-1]).astype(np.float64) / 255.0
        per_channel = _stat_lists(pixels)
        stats[name] = {k: [[[x]] for x in v] for k, v in per_channel.items() if k != "count"}
        stats[name]["count"] = [len(images)]
    return stats


def _stat_lists(values: np.ndarray) -> dict[str, list]:
    return {
        "min": values.min(axis=0).tolist(),
        "max": values.max(axis=0).tolist(),
        "mean": values.mean(axis=0).tolist(),
        "std": values.std(axis=0).tolist(),
        "count": [int(values.shape[0])],
    }


def _aggregate(episodes: list[dict]) -> dict:
    """Dataset-wide stats from per-episode ones: count-weighted mean, pooled variance."""
    stats = {}
    for name in episodes[0]:
        parts = [episode[name] for episode in episodes]
        counts = np.array([p["count"][0] for p in parts], dtype=np.float64)
        weights = counts.reshape(-1, *[1] * np.ndim(parts[0]["mean"])) / counts.sum()
        means = np.array([p["mean"] for p in parts])
        mean = (weights * means).sum(axis=0)
        second = (weights * (np.array([p["std"] for p in parts]) ** 2 + means**2)).sum(axis=0)
        stats[name] = {
            "min": np.min([p["min"] for p in parts], axis=0).tolist(),
            "max": np.max([p["max"] for p in parts], axis=0).tolist(),
            "mean": mean.tolist(),
            "std": np.sqrt(np.maximum(second - mean**2, 0.0)).tolist(),
            "count": [int(counts.sum())],
        }
    return stats


def _features(
    plan: list[Mapped], dtypes: dict[str, str], fps: float, video: VideoSettings, source: dict
) -> dict[str, dict]:
    """info.json's features: ours, then LeRobot's five bookkeeping columns. A numeric feature
    imported from LeRobot (``source``: attrs["lerobot"]["features"]) gets its dimension names
    back if its shape is unchanged."""
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
            before = source.get(m.lerobot, {})
            names = before.get("names") if before.get("shape") == shape else None
            features[m.lerobot] = {"dtype": dtypes[m.lerobot], "shape": shape, "names": names}
    scalars = {"timestamp": "float32", "frame_index": "int64", "episode_index": "int64"}
    scalars.update({"index": "int64", "task_index": "int64"})
    features.update({k: {"dtype": v, "shape": [1], "names": None} for k, v in scalars.items()})
    return features


def _number(fps: float) -> int | float:
    return int(fps) if float(fps).is_integer() else float(fps)


def _info(buffer: ReplayBuffer, features: dict, n_tasks: int, robot_type: str | None) -> dict:
    """info.json's entries common to both versions (each writer adds its paths and sizes)."""
    return {
        "robot_type": robot_type,
        "total_episodes": buffer.n_episodes,
        "total_frames": buffer.n_steps,
        "total_tasks": n_tasks,
        "fps": _number(buffer.fps),
        "splits": {"train": f"0:{buffer.n_episodes}"},
        "features": features,
    }
