"""A LeRobot dataset (v2.0, v2.1 or v3.0) -> our zarr dataset.

Episodes keep their order (by ``episode_index``) and lengths: ``episode_ends`` is the running
sum of the ``length`` column of LeRobot's episode metadata, checked against the rows of the
data files. Features map to our keys as ``lerobot_features`` describes; numeric features are
copied value for value (float32 stays float32; any cast our format needs, e.g. float64 state to
float32, must be exact or the conversion is refused), camera videos are decoded to uint8 frames
(lossy once, when LeRobot encoded them; nothing further is lost here). ``fps`` comes from
``info.json``. Tasks: the per-frame ``task_index`` becomes ``data/task_index`` and the strings
``attrs["tasks"]`` (``tasks[i]`` is task index ``i``); ``attrs["lerobot"]`` keeps the source's
codebase version, features, robot type and which LeRobot key each of ours came from.

A dataset exported by ``zarr_to_lerobot`` carries ``meta/robopolicy.json``
(``lerobot_sidecar``); its env spec, shape_meta, key names, per-episode fields and provenance
are restored from it, so zarr -> LeRobot -> zarr gives back identical low-dim arrays.

Everything is checked before the output is created: a missing file, a directory that is not a
LeRobot dataset, an unknown ``codebase_version``, a feature whose values or frames do not have
the shape ``info.json`` declares. One ``DatasetError`` names the file and key.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import zarr
from tqdm import tqdm

from robopolicy.data.convert.common import check_destination, exact_cast, staged_output
from robopolicy.data.convert.lerobot_features import (
    TASK_INDEX,
    Mapped,
    column_values,
    plan_import,
    shape_meta_for,
)
from robopolicy.data.convert.lerobot_layout import (
    INFO_PATH,
    EpisodeFiles,
    LeRobotLayout,
    read_layout,
    read_parquet,
)
from robopolicy.data.convert.lerobot_sidecar import read_sidecar
from robopolicy.data.convert.lerobot_video import decode_frames
from robopolicy.data.errors import DatasetError
from robopolicy.data.format import EXTRA_STEP_KEYS
from robopolicy.data.shape_meta import STORED_DTYPES
from robopolicy.data.store import AtomicLocalStore
from robopolicy.data.writer import DatasetWriter, default_provenance

SOURCE_FORMAT = "lerobot"


def lerobot_to_zarr(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    renames: dict[str, str] | None = None,
    drop: set[str] | None = None,
    env_spec: dict | None = None,
    overwrite: bool = False,
) -> Path:
    """Convert the LeRobot dataset directory ``src`` into our dataset at ``dst``."""
    src, dst = Path(src), Path(dst)
    check_destination(dst, overwrite)
    layout = read_layout(src)
    sidecar = read_sidecar(src)
    renames = {**sidecar.get("lerobot_keys", {}), **(renames or {})}
    plan = plan_import(layout.features, renames, set(drop or ()), src / INFO_PATH)
    shape_meta = _restored_shape_meta(shape_meta_for(plan), sidecar)
    has_tasks = sidecar.get("has_task_index", True) and bool(layout.tasks)
    tables = _LastTable()
    first = _read_episode(layout, layout.episodes[0], plan, has_tasks, tables)  # fail early
    provenance = _provenance(src, sidecar)
    episode_fields = {  # a LeRobot dataset edited since our export may have other episodes
        name: values
        for name, values in sidecar.get("episode_meta", {}).items()
        if len(values) == len(layout.episodes)
    }
    with staged_output(dst, overwrite) as staging:
        writer = DatasetWriter.create(
            staging, shape_meta, layout.fps, env_spec or sidecar.get("env_spec", {}), provenance
        )
        for position, episode in enumerate(
            tqdm(layout.episodes, desc="lerobot -> zarr", unit="ep")
        ):
            steps = (
                first if position == 0 else _read_episode(layout, episode, plan, has_tasks, tables)
            )
            meta = {name: values[position] for name, values in episode_fields.items()}
            writer.append_episode(steps, episode_meta=meta)
        writer.close()
        root = zarr.open_group(AtomicLocalStore(staging), mode="r+", zarr_format=2)
        if has_tasks:
            root.attrs["tasks"] = layout.tasks
        root.attrs["lerobot"] = _source_record(layout, plan)
    return dst


def _provenance(src: Path, sidecar: dict) -> dict:
    """This conversion's record; for a dataset we exported, the original one with it inside."""
    conversion = {**default_provenance(SOURCE_FORMAT), "source_path": str(src.resolve())}
    if "provenance" in sidecar:
        return {**sidecar["provenance"], "via_lerobot": conversion}
    return conversion


def _restored_shape_meta(shape_meta: dict, sidecar: dict) -> dict:
    """Our shape_meta from the features, with what a sidecar adds (the obs order, action.hold)."""
    recorded = sidecar.get("shape_meta")
    if recorded is None:
        return shape_meta
    if set(recorded["obs"]) != set(shape_meta["obs"]):
        return shape_meta  # renamed or dropped since: the features are what is there
    obs = {key: shape_meta["obs"][key] for key in recorded["obs"]}
    return {"obs": obs, "action": {**recorded["action"], **shape_meta["action"]}}


class _LastTable:
    """The parquet file read last: v3.0 keeps many episodes in one, read once for all of them."""

    def __init__(self):
        self.path: Path | None = None
        self.table = None

    def read(self, path: Path):
        if path != self.path:
            self.path, self.table = path, read_parquet(path, ["episode_index", "timestamp"])
        return self.table


def _read_episode(
    layout: LeRobotLayout,
    episode: EpisodeFiles,
    plan: list[Mapped],
    has_tasks: bool,
    tables: _LastTable,
) -> dict[str, np.ndarray]:
    """Every array of one episode, in the dtype and per-step shape our writer stores."""
    table = tables.read(episode.data_file)
    if layout.version == "v3.0":  # many episodes per file
        rows = np.flatnonzero(
            column_values(table, "episode_index", (), episode.data_file) == episode.index
        )
        table = table.take(rows)
    if table.num_rows != episode.length:
        raise DatasetError(
            episode.data_file,
            f"episode {episode.index} has {table.num_rows} frames, "
            f"its metadata says {episode.length}",
            "length",
        )
    timestamps = column_values(table, "timestamp", (), episode.data_file).astype(np.float64)
    steps = {}
    for mapped in plan:
        if mapped.role == "rgb":
            path, start = episode.videos.get(mapped.lerobot, (None, 0.0))
            if path is None:  # an image feature: PNG bytes in the parquet
                steps[mapped.ours] = _decode_images(table, mapped, episode.data_file)
            else:
                steps[mapped.ours] = decode_frames(
                    path,
                    start + timestamps[0],
                    episode.length,
                    layout.fps,
                    mapped.shape,
                    mapped.lerobot,
                )
        else:
            values = column_values(table, mapped.lerobot, mapped.shape, episode.data_file)
            steps[mapped.ours] = _exact(values, mapped, episode)
    if has_tasks:
        steps[TASK_INDEX] = column_values(table, TASK_INDEX, (), episode.data_file).astype(np.int64)
    return steps


def _exact(values: np.ndarray, mapped: Mapped, episode: EpisodeFiles) -> np.ndarray:
    if mapped.role == "extra":
        target = EXTRA_STEP_KEYS[mapped.ours]
    else:
        target = STORED_DTYPES["action" if mapped.role == "action" else "low_dim"][0]
    cast, example = exact_cast(values, target)
    if example is not None:
        raise DatasetError(
            episode.data_file,
            f"storing {values.dtype} as {target} would change values (e.g. {example}); refusing",
            mapped.lerobot,
        )
    return cast


def _decode_images(table, mapped: Mapped, path: Path) -> np.ndarray:
    """An ``image`` feature: PNG (or JPEG) bytes in a struct column ``{bytes, path}``."""
    frames = []
    for cell in table[mapped.lerobot].to_pylist():
        image = iio.imread(io.BytesIO(cell["bytes"]))
        if image.shape != mapped.shape:
            raise DatasetError(
                path, f"image {image.shape}, info.json says {list(mapped.shape)}", mapped.lerobot
            )
        frames.append(image)
    return np.stack(frames).astype(np.uint8)


def _source_record(layout: LeRobotLayout, plan: list[Mapped]) -> dict:
    """What ``attrs["lerobot"]`` keeps of the source."""
    return {
        "codebase_version": layout.version,
        "robot_type": layout.info.get("robot_type"),
        "features": layout.features,
        "keys": {m.ours: m.lerobot for m in plan},
    }
