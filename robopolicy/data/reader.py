"""Open a demonstration dataset (ours or diffusion_policy's), validate it, and read episodes.

``ReplayBuffer.open(path)`` reads from disk; ``ReplayBuffer.open(path, in_memory=True)`` first
copies the compressed chunks into RAM. Either way the store is checked on open and any problem
raises one ``DatasetError`` that names the store, the key and what is wrong:

- it is a zarr group with ``data/`` and ``meta/episode_ends``;
- ``episode_ends`` is 1-D, integer, strictly increasing, and its last entry equals the length of
  every ``data/`` array (an append interrupted by a crash is tolerated: see ``writer.py``);
- every key of ``shape_meta`` exists, with the per-step shape it declares and, for datasets in
  our format, the stored dtype (rgb uint8, low_dim and action float32);
- per-episode arrays in ``meta/`` are 1-D and numeric, with one entry per episode;
- the root attributes: ``fps`` a finite number > 0, ``env_spec`` an object whose ``id`` (if any)
  is a string and ``kwargs`` (if any) an object (``attribute_problems``);
- every metadata file parses (``integrity.check_layout``), and a chunk the reader decodes here
  (``episode_ends``, per-episode arrays) that cannot be decoded is named.

A store without our root attributes (e.g. a diffusion_policy dataset) opens too: its
``shape_meta`` is inferred from the arrays and dtypes are not enforced.
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from numcodecs.errors import UnknownCodecError

from robopolicy.data.errors import DatasetError
from robopolicy.data.format import FORMAT_NAME, FORMAT_VERSION, PENDING_ATTR
from robopolicy.data.integrity import check_layout
from robopolicy.data.shape_meta import STORED_DTYPES, infer_shape_meta, validate_shape_meta
from robopolicy.data.store import load_into_memory, open_read_store

log = logging.getLogger(__name__)


class ReplayBuffer:
    """A validated, read-only dataset: ``data[key]`` arrays, ``episode_ends``, metadata."""

    def __init__(self, path: Path, root: zarr.Group, in_memory: bool, allow_empty: bool = False):
        self.path = path
        self.in_memory = in_memory
        self.attrs: dict = dict(root.attrs)
        self.is_native = self.attrs.get("format") == FORMAT_NAME
        self._root = root
        data, episode_ends = _require_layout(path, root, allow_empty and self.is_native)
        self.n_episodes, self.n_steps, self.episode_ends = _committed_extent(
            path, root, episode_ends
        )
        self.data: dict[str, zarr.Array] = {key: data[key] for key in sorted(data.array_keys())}
        self.shape_meta = self._shape_meta()
        attribute_errors = attribute_problems(self.attrs, self.is_native)
        if attribute_errors:
            key, problem = attribute_errors[0]
            raise DatasetError(path, problem, key)
        if self.data:  # no arrays only in an empty store opened with allow_empty
            self._validate_arrays()
        self.episode_meta: dict[str, np.ndarray] = self._read_episode_meta()

    @classmethod
    def open(
        cls, path: str | os.PathLike, in_memory: bool = False, allow_empty: bool = False
    ) -> ReplayBuffer:
        """The dataset at ``path``, validated. ``allow_empty``: a store in our format that no
        episode was written to yet (``DatasetWriter.create`` adds the data/ arrays with the first
        one) opens too, with no data arrays, for appending to it."""
        path = Path(path)
        check_layout(path)  # a damaged metadata file: one line naming it
        store = load_into_memory(path) if in_memory else open_read_store(path)
        try:
            root = zarr.open_group(store, mode="r")
        except Exception as error:  # zarr raises several types for unreadable metadata
            raise DatasetError(path, f"cannot open the zarr group: {error}") from None
        try:
            return cls(path, root, in_memory, allow_empty)
        except UnknownCodecError as error:
            raise DatasetError(
                path, f"uses a compression codec that is not installed here ({error})"
            ) from None

    # ----------------------------------------------------------------------------- access
    @property
    def fps(self) -> float | None:
        return self.attrs.get("fps")

    @property
    def env_spec(self) -> dict:
        return dict(self.attrs.get("env_spec", {}))

    @property
    def episode_lengths(self) -> np.ndarray:
        return np.diff(self.episode_ends, prepend=0)

    def episode_slice(self, index: int) -> slice:
        if not 0 <= index < self.n_episodes:
            raise IndexError(f"episode {index} out of range for {self.n_episodes} episodes")
        start = int(self.episode_ends[index - 1]) if index > 0 else 0
        return slice(start, int(self.episode_ends[index]))

    def get_episode(self, index: int, keys: list[str] | None = None) -> dict[str, np.ndarray]:
        """All steps of one episode for ``keys`` (default: every data array)."""
        window = self.episode_slice(index)
        return {key: self.data[key][window] for key in (keys or list(self.data))}

    def read_all(self, key: str) -> np.ndarray:
        """The committed rows of one data array, decompressed into RAM."""
        return self.data[key][: self.n_steps]

    def __repr__(self) -> str:
        where = "memory" if self.in_memory else "disk"
        return (
            f"ReplayBuffer({self.path}, {self.n_episodes} episodes, {self.n_steps} steps, {where})"
        )

    # ----------------------------------------------------------------------------- checks
    def _shape_meta(self) -> dict:
        if not self.is_native:
            log.info("dataset %s has no robopolicy attrs; inferring shape_meta", self.path)
            if "action" not in self.data:
                raise DatasetError(self.path, f"missing (has {list(self.data)})", "data/action")
            return infer_shape_meta(self.data)
        version = self.attrs.get("format_version")
        if not isinstance(version, int) or version > FORMAT_VERSION:
            raise DatasetError(
                self.path,
                f"format_version {version!r} is not supported (this robopolicy reads "
                f"<= {FORMAT_VERSION}); upgrade robopolicy",
                key="attrs.format_version",
            )
        if "shape_meta" not in self.attrs:
            raise DatasetError(self.path, "missing from the root attrs", key="attrs.shape_meta")
        return validate_shape_meta(self.attrs["shape_meta"], where=self.path)

    def _validate_arrays(self) -> None:
        declared = {
            key: (spec["shape"], spec["type"]) for key, spec in self.shape_meta["obs"].items()
        }
        declared["action"] = (self.shape_meta["action"]["shape"], "action")
        for key, (shape, kind) in declared.items():
            if key not in self.data:
                raise DatasetError(
                    self.path,
                    f"declared in shape_meta but missing from data/ (has {list(self.data)})",
                    f"data/{key}",
                )
            array = self.data[key]
            if list(array.shape[1:]) != list(shape):
                raise DatasetError(
                    self.path,
                    f"per-step shape {list(array.shape[1:])} disagrees with shape_meta {shape}",
                    f"data/{key}",
                )
            if self.is_native and array.dtype not in STORED_DTYPES[kind]:
                allowed = " or ".join(str(d) for d in STORED_DTYPES[kind])
                raise DatasetError(
                    self.path, f"dtype {array.dtype}, expected {allowed} for {kind}", f"data/{key}"
                )
        for key, array in self.data.items():
            if array.shape[0] < self.n_steps or (
                array.shape[0] != self.n_steps and not self._pending
            ):
                raise DatasetError(
                    self.path,
                    f"has {array.shape[0]} rows but meta/episode_ends ends at {self.n_steps} "
                    "(truncated episode_ends or a length mismatch)",
                    f"data/{key}",
                )

    @property
    def _pending(self) -> bool:
        return PENDING_ATTR in self._root["meta"].attrs

    def _read_episode_meta(self) -> dict[str, np.ndarray]:
        meta = self._root["meta"]
        out = {}
        for name in sorted(meta.array_keys()):
            if name == "episode_ends" or not name.startswith("episode_"):
                continue
            values = _read(self.path, f"meta/{name}", meta[name])
            if values.ndim != 1 or values.dtype.kind not in "biuf":
                raise DatasetError(
                    self.path,
                    f"shape {values.shape}, dtype {values.dtype}: expected one number per "
                    "episode, a 1-D numeric array",
                    f"meta/{name}",
                )
            if values.shape[0] < self.n_episodes or (
                values.shape[0] != self.n_episodes and not self._pending
            ):
                raise DatasetError(
                    self.path,
                    f"has {values.shape[0]} entries for {self.n_episodes} episodes",
                    f"meta/{name}",
                )
            out[name[len("episode_") :]] = values[: self.n_episodes]
        return out


def _require_layout(
    path: Path, root: zarr.Group, allow_empty: bool = False
) -> tuple[zarr.Group, zarr.Array]:
    for name, kind in (("data", zarr.Group), ("meta", zarr.Group)):
        if name not in root or not isinstance(root[name], kind):
            raise DatasetError(
                path, "missing group (expected the data/ + meta/ replay-buffer layout)", name
            )
    if "episode_ends" not in root["meta"]:
        raise DatasetError(path, "missing array", "meta/episode_ends")
    episode_ends = root["meta/episode_ends"]
    if not isinstance(episode_ends, zarr.Array) or episode_ends.ndim != 1:
        raise DatasetError(path, "must be a 1-D array", "meta/episode_ends")
    if not np.issubdtype(episode_ends.dtype, np.integer):
        raise DatasetError(
            path, f"dtype {episode_ends.dtype}, expected an integer type", "meta/episode_ends"
        )
    empty = allow_empty and episode_ends.shape[0] == 0  # made by DatasetWriter.create, no episode
    if len(list(root["data"].array_keys())) == 0 and not empty:
        raise DatasetError(path, "holds no arrays", "data")
    return root["data"], episode_ends


def _committed_extent(
    path: Path, root: zarr.Group, episode_ends: zarr.Array
) -> tuple[int, int, np.ndarray]:
    """(episodes, steps, episode_ends) committed; an interrupted append is left out."""
    ends = _read(path, "meta/episode_ends", episode_ends).astype(np.int64)
    pending = root["meta"].attrs.get(PENDING_ATTR)
    if pending is not None:
        n_episodes = int(pending["n_episodes"])
        log.warning(
            "dataset %s: an append was interrupted; reading the %d episodes committed before it",
            path,
            n_episodes,
        )
        ends = ends[:n_episodes]
    if len(ends) and (ends[0] <= 0 or np.any(np.diff(ends) <= 0)):
        bad = int(np.argmax(np.diff(ends, prepend=0) <= 0))
        raise DatasetError(
            path,
            f"must be strictly increasing and positive; entry {bad} is {ends[bad]}"
            + (f" after {ends[bad - 1]}" if bad else ""),
            "meta/episode_ends",
        )
    n_steps = int(ends[-1]) if len(ends) else 0
    if pending is not None and n_steps != int(pending["n_steps"]):
        raise DatasetError(
            path,
            f"interrupted-append record says {pending['n_steps']} steps, "
            f"episode_ends says {n_steps}",
            f"meta.attrs.{PENDING_ATTR}",
        )
    return len(ends), n_steps, ends


def _read(path: Path, key: str, array: zarr.Array) -> np.ndarray:
    """All of a (small) array; a chunk that cannot be decoded is one ``DatasetError``."""
    try:
        return array[:]
    except Exception as error:  # codecs raise RuntimeError, ValueError, ...; a zip BadZipFile
        raise DatasetError(
            path,
            f"cannot be decoded ({type(error).__name__}: {error}); robopolicy-inspect "
            f"path={path} verify=true names every damaged chunk",
            key,
        ) from None


def attribute_problems(attrs: dict[str, Any], native: bool) -> list[tuple[str, str]]:
    """(key, problem) for each root attribute that is malformed: ``fps`` (required for our
    format) a finite number > 0; ``env_spec`` an object whose ``id`` is a string (or null) and
    ``kwargs`` an object, each when present ({} records no environment)."""
    problems = []
    fps = attrs.get("fps")
    if fps is None and native:
        problems.append(("attrs.fps", "missing; expected the control rate in steps per second"))
    elif fps is not None and not (
        isinstance(fps, (int, float))
        and not isinstance(fps, bool)
        and math.isfinite(fps)
        and fps > 0
    ):
        problems.append(("attrs.fps", f"{fps!r}: expected a finite number of steps per second > 0"))
    if "env_spec" in attrs:
        spec = attrs["env_spec"]
        if not isinstance(spec, dict):
            problems.append(("attrs.env_spec", f"{spec!r:.80}: expected an object {{id, kwargs}}"))
        elif not isinstance(spec.get("id", ""), (str, type(None))):
            problems.append(("attrs.env_spec.id", f"{spec['id']!r:.80}: expected a gymnasium id"))
        elif not isinstance(spec.get("kwargs", {}), dict):
            problems.append(
                ("attrs.env_spec.kwargs", f"{spec['kwargs']!r:.80}: expected an object")
            )
    return problems
