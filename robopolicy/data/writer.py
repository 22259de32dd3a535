"""Append demonstration episodes to a zarr dataset, one at a time, safely.

The layout written is described in ``robopolicy.data.format``.

Crash safety. Every file is written atomically (``AtomicLocalStore``), and an append follows a
protocol whose every intermediate state is readable:

1. record ``meta.attrs["pending_append"] = {n_episodes, n_steps}`` (the committed sizes);
2. grow each ``data/`` array and write the new rows;
3. grow ``meta/episode_ends`` and the per-episode arrays;
4. remove ``pending_append``.

A reader that finds ``pending_append`` uses only the committed sizes recorded there, so a writer
killed anywhere in 2-4 leaves exactly the earlier episodes visible. The next writer to open the
store truncates the partial rows and clears the marker.

A ``.zip`` path is written by staging a directory store beside it (``<path>.staging``) and
packing it into the zip atomically every ``zip_flush_every`` episodes and on close; a killed
writer leaves the previous zip intact, and reopening recovers every completed episode from the
staging directory.
"""

from __future__ import annotations

import datetime as _dt
import getpass
import logging
import os
import platform
import shutil
from pathlib import Path
from typing import Any

import numcodecs
import numpy as np
import zarr

from robopolicy.data.errors import DatasetError
from robopolicy.data.format import EXTRA_STEP_KEYS, FORMAT_NAME, FORMAT_VERSION, PENDING_ATTR
from robopolicy.data.reader import ReplayBuffer, attribute_problems
from robopolicy.data.shape_meta import STORED_DTYPES, validate_shape_meta
from robopolicy.data.store import (
    AtomicLocalStore,
    is_zip_path,
    pack_directory_to_zip,
    unpack_zip_to_directory,
)

log = logging.getLogger(__name__)

IMAGE_COMPRESSOR = numcodecs.Blosc(cname="lz4", clevel=5, shuffle=numcodecs.Blosc.BITSHUFFLE)
LOW_DIM_COMPRESSOR = numcodecs.Blosc(cname="zstd", clevel=3, shuffle=numcodecs.Blosc.SHUFFLE)
# Every chunk of every array carries a CRC-32 of its raw bytes (numcodecs' crc32 filter, which
# zarr 2 and 3 readers apply): blosc keeps no checksum, so without it a flipped bit that still
# decompresses reads as data; with it, any flipped bit fails the read and `inspect.py verify=true`.
CHECKSUM_FILTERS = (numcodecs.CRC32(),)
LOW_DIM_CHUNK_BYTES = 1 << 20  # low-dim arrays are chunked along time in ~1 MiB pieces


def default_provenance(source: str) -> dict[str, Any]:
    """Who wrote the dataset, when, and from what."""
    from robopolicy import __version__

    return {
        "source": source,
        "created_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "robopolicy_version": __version__,
        "host": platform.node(),
        "user": getpass.getuser(),
    }


class DatasetWriter:
    """Appends episodes to a new or existing dataset. Use ``create`` or ``open_for_append``."""

    def __init__(self, path: Path, group: zarr.Group, staging: Path | None, zip_flush_every: int):
        self.path = path
        self._root = group
        self._staging = staging
        self._zip_flush_every = zip_flush_every
        self._unflushed = 0
        self.shape_meta: dict = dict(group.attrs["shape_meta"])
        episode_ends = group["meta/episode_ends"]
        self.n_episodes = int(episode_ends.shape[0])
        self.n_steps = int(episode_ends[-1]) if self.n_episodes else 0
        self._closed = False

    # ----------------------------------------------------------------------------- opening
    @classmethod
    def create(
        cls,
        path: str | os.PathLike,
        shape_meta: dict,
        fps: float,
        env_spec: dict | None = None,
        provenance: dict | None = None,
        overwrite: bool = False,
        zip_flush_every: int = 10,
    ) -> DatasetWriter:
        """Start a new, empty dataset at ``path`` (``*.zip`` for a zip store). Every argument is
        checked before anything on disk is touched (``overwrite`` included)."""
        path = Path(path)
        shape_meta = validate_shape_meta(shape_meta, where=path)
        fps = fps.item() if isinstance(fps, np.generic) else fps
        attrs = {"fps": fps, "env_spec": {} if env_spec is None else env_spec}
        for key, problem in attribute_problems(attrs, native=True):
            raise DatasetError(path, problem, key.removeprefix("attrs."))
        if path.exists():
            if not overwrite:
                raise DatasetError(path, "already exists (pass overwrite=True to replace it)")
            shutil.rmtree(path) if path.is_dir() else path.unlink()
        directory = _staging_dir(path) if is_zip_path(path) else path
        if directory.exists():
            shutil.rmtree(directory)
        root = zarr.open_group(AtomicLocalStore(directory), mode="w", zarr_format=2)
        root.attrs.update(
            {
                "format": FORMAT_NAME,
                "format_version": FORMAT_VERSION,
                "fps": float(fps),
                "shape_meta": shape_meta,
                "env_spec": dict(env_spec or {}),
                "provenance": dict(provenance or default_provenance("DatasetWriter")),
            }
        )
        root.create_group("data")
        meta = root.create_group("meta")
        meta.create_array(
            "episode_ends", shape=(0,), chunks=(4096,), dtype=np.int64, filters=CHECKSUM_FILTERS
        )
        writer = cls(path, root, directory if is_zip_path(path) else None, zip_flush_every)
        writer.flush()
        return writer

    @classmethod
    def open_for_append(cls, path: str | os.PathLike, zip_flush_every: int = 10) -> DatasetWriter:
        """Reopen a dataset written by ``create`` to append more episodes.

        An append interrupted by a crash is rolled back first (its partial rows removed). A
        dataset that ``create`` made and no episode reached yet takes its first one here.
        """
        path = Path(path)
        ReplayBuffer.open(path, allow_empty=True)  # full validation: refuse a broken dataset
        staging = None
        directory = path
        if is_zip_path(path):
            staging = directory = _staging_dir(path)
            if not directory.exists():
                unpack_zip_to_directory(path, directory)
        root = zarr.open_group(AtomicLocalStore(directory), mode="r+", zarr_format=2)
        if root.attrs.get("format") != FORMAT_NAME:
            raise DatasetError(path, "not written by robopolicy's DatasetWriter; convert it first")
        _roll_back_pending(root, path)
        return cls(path, root, staging, zip_flush_every)

    # ----------------------------------------------------------------------------- appending
    def record_appended_run(self, provenance: dict) -> None:
        """Add ``provenance`` (how the episodes about to be appended were made) to the dataset's
        provenance, under ``appends``, with the index of the first episode it covers: a dataset
        grown by several runs with different settings keeps the record of each."""
        current = dict(self._root.attrs.get("provenance", {}))
        appends = list(current.get("appends", []))
        appends.append({**provenance, "first_episode": self.n_episodes})
        self._root.attrs["provenance"] = {**current, "appends": appends}

    def append_episode(
        self, steps: dict[str, np.ndarray], episode_meta: dict[str, float] | None = None
    ) -> int:
        """Append one episode; returns its index. ``steps`` maps every obs key and 'action'
        (plus optional 'sim_state', 'reward', 'done') to arrays of equal length T >= 1."""
        return self.append_episodes([(steps, episode_meta)])[0]

    def append_episodes(
        self, episodes: list[tuple[dict[str, np.ndarray], dict[str, float] | None]]
    ) -> range:
        """Append several episodes at once, atomically as a group; returns their indices.

        Each entry is ``(steps, episode_meta)`` as for ``append_episode``. One write per array
        for the whole group: appending 25 short episodes this way costs about what one does
        alone (each zarr resize and chunk write has a fixed cost), which is what makes
        collecting hundreds of short demonstrations fast. A crash mid-write rolls the whole group
        back, as for one episode."""
        if self._closed:
            raise DatasetError(self.path, "writer is closed")
        if not episodes:
            return range(self.n_episodes, self.n_episodes)
        checked = [self._check_episode(steps) for steps, _ in episodes]
        metas = [self._check_episode_meta(meta or {}) for _, meta in episodes]
        if any(set(meta) != set(metas[0]) for meta in metas):
            raise DatasetError(
                self.path, "every episode of a group needs the same episode_meta fields", "meta"
            )
        lengths = [next(iter(arrays.values())).shape[0] for arrays in checked]
        first_episode, start = self.n_episodes, self.n_steps
        end = start + sum(lengths)
        n_after = first_episode + len(episodes)
        data, meta = self._root["data"], self._root["meta"]

        # every chunk goes to disk, even one that is all fill value (zarr skips those by
        # default): then a missing chunk file is always damage (see robopolicy.data.verify)
        with zarr.config.set({"array.write_empty_chunks": True}):
            meta.attrs[PENDING_ATTR] = {"n_episodes": first_episode, "n_steps": start}
            episode_ends = meta["episode_ends"]
            for key in checked[0]:
                values = np.concatenate([arrays[key] for arrays in checked])
                array = data[key] if key in data else self._create_step_array(data, key, values)
                array.resize((end, *array.shape[1:]))
                array[start:end] = values
            episode_ends.resize((n_after,))
            episode_ends[first_episode:n_after] = start + np.cumsum(lengths)
            for name in metas[0]:
                values = np.array([episode[name] for episode in metas])
                array = self._episode_meta_array(meta, name, values[0])
                array.resize((n_after,))
                array[first_episode:n_after] = values
            attrs = dict(meta.attrs)
            del attrs[PENDING_ATTR]
            meta.attrs.put(attrs)

        self.n_episodes = n_after
        self.n_steps = end
        self._unflushed += len(episodes)
        if self._staging is not None and self._unflushed >= self._zip_flush_every:
            self.flush()
        return range(first_episode, n_after)

    def flush(self) -> None:
        """Make every appended episode visible in the zip (a no-op for directory stores)."""
        if self._staging is not None:
            pack_directory_to_zip(self._staging, self.path)
        self._unflushed = 0

    def close(self) -> None:
        if self._closed:
            return
        self.flush()
        if self._staging is not None:
            shutil.rmtree(self._staging)
        self._closed = True

    def __enter__(self) -> DatasetWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close()

    # ----------------------------------------------------------------------------- checks
    def _check_episode(self, steps: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        expected = {key: spec for key, spec in self.shape_meta["obs"].items()}
        missing = [k for k in [*expected, "action"] if k not in steps]
        if missing:
            raise DatasetError(self.path, f"episode lacks keys {missing}", key="append_episode")
        unknown = [
            k for k in steps if k not in expected and k != "action" and k not in EXTRA_STEP_KEYS
        ]
        if unknown:
            raise DatasetError(
                self.path,
                f"unknown keys {unknown}: not in shape_meta and not one of {list(EXTRA_STEP_KEYS)}",
                key="append_episode",
            )
        arrays: dict[str, np.ndarray] = {}
        lengths = set()
        for key, values in steps.items():
            values = np.asarray(values)
            if key in expected:
                spec = expected[key]
                dtype = (
                    STORED_DTYPES[spec["type"]][0]
                    if values.dtype not in STORED_DTYPES[spec["type"]]
                    else values.dtype
                )
                shape = tuple(spec["shape"])
            elif key == "action":
                dtype, shape = STORED_DTYPES["action"][0], tuple(self.shape_meta["action"]["shape"])
            else:
                dtype = EXTRA_STEP_KEYS[key]
                shape = tuple(values.shape[1:])
            if values.ndim == 0 or tuple(values.shape[1:]) != shape:
                raise DatasetError(
                    self.path,
                    f"expected shape (T, {', '.join(map(str, shape))}), got {values.shape}",
                    key,
                )
            if dtype == np.uint8 and values.dtype != np.uint8:
                raise DatasetError(self.path, f"images must be uint8, got {values.dtype}", key)
            if np.issubdtype(dtype, np.floating) and not np.all(np.isfinite(values)):
                raise DatasetError(self.path, "contains NaN or infinite values", key)
            lengths.add(values.shape[0])
            arrays[key] = values.astype(dtype, copy=False)
        if len(lengths) != 1 or 0 in lengths:
            sizes = {k: v.shape[0] for k, v in arrays.items()}
            raise DatasetError(
                self.path, f"all arrays need the same length T >= 1, got {sizes}", "append_episode"
            )
        return arrays

    def _check_episode_meta(self, episode_meta: dict[str, Any]) -> dict[str, np.generic]:
        meta = self._root["meta"]
        known = {name[len("episode_") :] for name in meta.array_keys() if name != "episode_ends"}
        if known - set(episode_meta):
            raise DatasetError(
                self.path,
                f"episode_meta lacks {sorted(known - set(episode_meta))}, set for earlier episodes",
                key="append_episode",
            )
        out = {}
        for name, value in episode_meta.items():
            if not np.isscalar(value) or not isinstance(
                value, (int, float, bool, np.number, np.bool_)
            ):
                raise DatasetError(
                    self.path,
                    f"per-episode values must be numeric scalars, got {value!r}",
                    f"episode_{name}",
                )
            out[name] = np.asarray(value)[()]
        return out

    # ----------------------------------------------------------------------------- arrays
    def _create_step_array(self, data: zarr.Group, key: str, values: np.ndarray) -> zarr.Array:
        spec = self.shape_meta["obs"].get(key)
        row_shape = values.shape[1:]
        if spec is not None and spec["type"] in ("rgb", "depth"):
            chunks, compressor = (1, *row_shape), IMAGE_COMPRESSOR
        else:
            row_bytes = max(1, int(np.prod(row_shape)) * values.dtype.itemsize)
            chunks, compressor = (
                (max(1, LOW_DIM_CHUNK_BYTES // row_bytes), *row_shape),
                LOW_DIM_COMPRESSOR,
            )
        return data.create_array(
            key,
            shape=(0, *row_shape),
            chunks=chunks,
            dtype=values.dtype,
            compressors=compressor,
            filters=CHECKSUM_FILTERS,
        )

    def _episode_meta_array(self, meta: zarr.Group, name: str, value: np.generic) -> zarr.Array:
        key = f"episode_{name}"
        if key in meta:
            return meta[key]
        if self.n_episodes > 0:
            raise DatasetError(
                self.path,
                f"new per-episode field {name!r} after {self.n_episodes} episodes without it; "
                "give every episode the same episode_meta fields",
                key=f"meta/{key}",
            )
        return meta.create_array(
            key, shape=(0,), chunks=(4096,), dtype=value.dtype, filters=CHECKSUM_FILTERS
        )


def _staging_dir(zip_path: Path) -> Path:
    return zip_path.with_name(zip_path.name + ".staging")


def _roll_back_pending(root: zarr.Group, path: Path) -> None:
    """Remove the rows of an append that was interrupted (see the module docstring)."""
    meta = root["meta"]
    pending = meta.attrs.get(PENDING_ATTR)
    if pending is None:
        return
    n_episodes, n_steps = int(pending["n_episodes"]), int(pending["n_steps"])
    log.warning(
        "dataset %s: rolling back an interrupted append (keeping %d episodes, %d steps)",
        path,
        n_episodes,
        n_steps,
    )
    for array in root["data"].array_values():
        if array.shape[0] > n_steps:
            array.resize((n_steps, *array.shape[1:]))
    for array in meta.array_values():
        if array.shape[0] > n_episodes:
            array.resize((n_episodes,))
    attrs = dict(meta.attrs)
    del attrs[PENDING_ATTR]
    meta.attrs.put(attrs)
