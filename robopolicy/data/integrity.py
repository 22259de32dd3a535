"""Integrity of a zarr v2 store below zarr: its metadata files and its chunk files, read raw.

zarr reads a chunk file that is not there as the array's fill value, without a word, and blosc
(the compressor of every array the writer makes) keeps no checksum; a deleted, truncated or zeroed
chunk or a damaged metadata file shows up as wrong numbers or as an exception from deep inside a
codec. This module reads the files themselves:

- ``RawStore``: the files of a directory or zip store by key (a zip entry read in full is checked
  against its CRC-32, so a flipped bit in a zip is always caught);
- ``read_layout``: every metadata file (``.zgroup``, ``.zattrs``, ``.zarray``) of the root,
  ``data/``, ``meta/`` and their arrays, parsed as zarr parses it, one problem per damaged file;
- ``check_chunks``: every chunk an array's shape requires is present, its blosc header agrees with
  the file's length and the chunk's size, and (when decoding) it decodes to exactly one chunk,
  which is handed to a callback for value checks.

Every problem is one line, ``<key>: <what is wrong; what was expected>``. The writer stores every
chunk, even one that is all fill value (``write_empty_chunks``), and zarr-python 2 (which wrote
diffusion_policy's datasets) always did, so a missing chunk file is always damage.
"""

from __future__ import annotations

import json
import math
import os
import struct
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from itertools import product
from pathlib import Path
from typing import NamedTuple

import numcodecs
import numpy as np
from numcodecs import blosc
from numcodecs.errors import UnknownCodecError
from zarr.core.metadata.v2 import ArrayV2Metadata

from robopolicy.data.errors import DatasetError
from robopolicy.data.store import open_read_store

GROUPS = ("data", "meta")  # the replay-buffer groups whose arrays are checked
BLOSC_HEADER = struct.Struct("<BBBBIII")  # version, versionlz, flags, typesize, nbytes, bs, cbytes
MAX_NAMED = 5  # chunk keys named in one problem line


class Problem(NamedTuple):
    """One thing wrong with a dataset: the key at fault (a file, an array, an attribute) and
    what is wrong with it, including what was expected."""

    key: str
    text: str

    def __str__(self) -> str:
        return f"{self.key}: {self.text}"


class RawStore:
    """Read-only access to the files of a directory or zip store, by key (``data/action/0.0``)."""

    def __init__(self, path: Path):
        self.path = path
        self._root = str(path)
        self._zip = zipfile.ZipFile(path) if path.is_file() else None
        self._children: dict[str, set[str]] = {}
        if self._zip is not None:
            for name in self._zip.namelist():
                parts = name.rstrip("/").split("/")
                for depth in range(len(parts)):
                    self._children.setdefault("/".join(parts[:depth]), set()).add(parts[depth])

    def names(self, prefix: str) -> set[str]:
        """The names of the files and folders directly under ``prefix`` ('' for the root)."""
        if self._zip is not None:
            return self._children.get(prefix, set())
        try:
            with os.scandir(self.path / prefix) as entries:
                return {entry.name for entry in entries if not entry.name.endswith(".tmp")}
        except (FileNotFoundError, NotADirectoryError):
            return set()

    def read_optional(self, key: str) -> bytes | None:
        """The whole file, or None when there is none."""
        try:
            return self.read(key)
        except (FileNotFoundError, KeyError):
            return None

    def read(self, key: str) -> bytes:
        """The file's bytes; a zip entry is checked against its CRC-32 (``BadZipFile``)."""
        if self._zip is not None:
            return self._zip.read(key)
        with open(os.path.join(self._root, key), "rb") as file:
            return file.read()

    def read_head(self, key: str, size: int) -> tuple[bytes, int]:
        """The first ``size`` bytes of the file and its length."""
        if self._zip is not None:
            with self._zip.open(key) as entry:
                return entry.read(size), self._zip.getinfo(key).file_size
        fd = os.open(os.path.join(self._root, key), os.O_RDONLY)
        try:
            return os.read(fd, size), os.fstat(fd).st_size
        finally:
            os.close(fd)

    def close(self) -> None:
        if self._zip is not None:
            self._zip.close()

    def __enter__(self) -> RawStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def open_raw(path: str | os.PathLike) -> RawStore:
    """The raw files of the dataset at ``path``; the reader's one-line error if it is none."""
    path = Path(path)
    open_read_store(path)  # no such path, not a zip, no zarr group at the root: DatasetError
    try:
        return RawStore(path)
    except (zipfile.BadZipFile, OSError) as error:
        raise DatasetError(path, f"cannot read the zip's table of contents ({error})") from None


@dataclass
class Layout:
    """What ``read_layout`` found: the arrays it could parse, every group's and array's
    attributes (``{}`` for a missing ``.zattrs``), and a problem per damaged metadata file."""

    arrays: dict[str, ArrayV2Metadata] = field(default_factory=dict)
    attrs: dict[str, dict] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    zarr_format: int = 2  # 3: a zarr v3 store (zarr.json), which this module does not read


def read_layout(raw: RawStore) -> Layout:
    """Parse every metadata file of the root, ``data/``, ``meta/`` and their arrays."""
    layout = Layout()
    root = raw.names("")
    if ".zgroup" not in root and "zarr.json" in root:
        layout.zarr_format = 3
        return layout
    for group in ("", *GROUPS):
        names = root if group == "" else raw.names(group)
        if group and not names:
            continue  # a missing group: the reader names it
        _json(raw, _join(group, ".zgroup"), layout, required=True)
        layout.attrs[group] = _json(raw, _join(group, ".zattrs"), layout) or {}
        for child in sorted(names) if group else ():
            if not child.startswith("."):
                _read_array_meta(raw, f"{group}/{child}", layout)
    return layout


def check_layout(path: str | os.PathLike) -> None:
    """Raise one ``DatasetError`` naming the first damaged metadata file of the store, if any."""
    with open_raw(path) as raw:
        problems = read_layout(raw).problems
    if problems:
        raise DatasetError(path, problems[0].text, problems[0].key)


def _join(prefix: str, name: str) -> str:
    return f"{prefix}/{name}" if prefix else name


def _json(raw: RawStore, key: str, layout: Layout, required: bool = False) -> dict | None:
    try:
        payload = raw.read_optional(key)
        document = None if payload is None else json.loads(payload)
    except (ValueError, zipfile.BadZipFile, OSError) as error:  # JSONDecodeError, bad UTF-8, CRC
        layout.problems.append(
            Problem(key, f"damaged metadata, not valid JSON ({_one_line(error)})")
        )
        return None
    if payload is None:
        if required:
            layout.problems.append(Problem(key, "missing (deleted?); expected a zarr v2 group"))
        return None
    if not isinstance(document, dict):
        kind = type(document).__name__
        layout.problems.append(Problem(key, f"damaged metadata: a JSON {kind}, expected an object"))
        return None
    return document


def _read_array_meta(raw: RawStore, key: str, layout: Layout) -> None:
    document = _json(raw, f"{key}/.zarray", layout)
    layout.attrs[key] = _json(raw, f"{key}/.zattrs", layout) or {}
    if document is None:
        is_group = raw.read_optional(f"{key}/.zgroup") is not None
        if not is_group and not any(p.key == f"{key}/.zarray" for p in layout.problems):
            layout.problems.append(
                Problem(
                    f"{key}/.zarray",
                    f"missing (deleted?): zarr does not see the array {key} without it",
                )
            )
        return
    try:
        meta = ArrayV2Metadata.from_dict({**document, "attributes": layout.attrs[key]})
    except UnknownCodecError as error:
        layout.problems.append(
            Problem(
                f"{key}/.zarray", f"uses a compression codec that is not installed here ({error})"
            )
        )
        return
    except Exception as error:  # zarr raises TypeError, ValueError, KeyError for bad fields
        layout.problems.append(Problem(f"{key}/.zarray", f"damaged metadata ({_one_line(error)})"))
        return
    bad_shape = any(d < 0 for d in meta.shape) or any(c <= 0 for c in meta.chunks)
    if bad_shape or meta.dtype.hasobject:
        layout.problems.append(
            Problem(
                f"{key}/.zarray",
                f"shape {list(meta.shape)}, chunks {list(meta.chunks)}, dtype {meta.dtype}: "
                "expected sizes >= 0, chunks >= 1 and a numeric dtype",
            )
        )
        return
    layout.arrays[key] = meta


def _one_line(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}".replace("\n", " ")


# ----------------------------------------------------------------------------- chunks
ChunkCallback = Callable[[tuple[int, ...], np.ndarray], None]


def chunk_grid(meta: ArrayV2Metadata, rows: int) -> Iterator[tuple[int, ...]]:
    """The coordinates of every chunk holding one of the first ``rows`` rows (all of a 0-d
    array)."""
    if not meta.shape:
        yield ()
        return
    counts = [math.ceil(size / chunk) for size, chunk in zip(meta.shape, meta.chunks, strict=True)]
    counts[0] = math.ceil(min(rows, meta.shape[0]) / meta.chunks[0])
    yield from product(*(range(n) for n in counts))


def check_chunks(
    raw: RawStore,
    key: str,
    meta: ArrayV2Metadata,
    rows: int,
    decode: bool,
    on_chunk: ChunkCallback | None = None,
) -> tuple[list[Problem], int]:
    """Check every chunk of the array ``key`` that holds one of its first ``rows`` rows.

    Presence always; the blosc header (sizes) always; with ``decode`` the whole chunk is read
    and decoded, and ``on_chunk(coords, values)`` receives its in-bounds part. Returns the
    problems (one line per kind) and the number of chunks checked."""
    present = raw.names(key)
    reader = _ChunkReader(raw, meta, decode)
    missing, damaged, checked = [], [], 0
    for coords in chunk_grid(meta, rows):
        name = meta.encode_chunk_key(coords)
        if name not in present:
            missing.append(name)
            continue
        checked += 1
        try:
            values = reader.read(f"{key}/{name}")
        except ChunkDamage as damage:
            damaged.append(f"{name} ({damage})")
            continue
        if values is not None and on_chunk is not None:
            on_chunk(coords, _in_bounds(values, coords, meta))
    problems = []
    if missing:
        problems.append(
            Problem(
                key,
                f"{len(missing)} chunk file(s) missing ({_names(missing)}): a missing chunk reads "
                f"back as the fill value {meta.fill_value!r}; expected every chunk of shape "
                f"{list(meta.shape)} in chunks of {list(meta.chunks)}",
            )
        )
    if damaged:
        problems.append(
            Problem(key, f"{len(damaged)} chunk(s) cannot be decoded: {_names(damaged)}")
        )
    return problems, checked


class ChunkDamage(Exception):
    """A chunk file that cannot be one chunk of its array (the message says why)."""


class _ChunkReader:
    """Reads one array's chunk files: the blosc header only, or whole and decoded."""

    def __init__(self, raw: RawStore, meta: ArrayV2Metadata, decode: bool):
        self.raw, self.meta, self.decode = raw, meta, decode
        self.expected = math.prod(meta.chunks) * meta.dtype.itemsize
        self.blosc = isinstance(meta.compressor, numcodecs.Blosc)
        self.filters = list(reversed(meta.filters or ()))

    def read(self, key: str) -> np.ndarray | None:
        """The decoded chunk (None when not decoding); ``ChunkDamage`` if it is not one."""
        try:
            if self.decode:
                payload = self.raw.read(key)
                stored = len(payload)
            else:
                payload, stored = self.raw.read_head(key, BLOSC_HEADER.size)
        except (zipfile.BadZipFile, OSError) as error:
            raise ChunkDamage(_one_line(error)) from None
        if self.blosc:
            _check_blosc_header(payload, stored, None if self.filters else self.expected)
        elif self.meta.compressor is None and not self.filters and stored != self.expected:
            raise ChunkDamage(f"{stored} bytes, expected {self.expected} uncompressed")
        if not self.decode:
            return None
        try:
            if self.blosc:
                data = blosc.decompress(payload)
            else:
                compressor = self.meta.compressor
                data = payload if compressor is None else compressor.decode(payload)
            for codec in self.filters:
                data = codec.decode(data)
            flat = np.frombuffer(memoryview(data).cast("B"), dtype=np.uint8)
        except Exception as error:  # codecs raise RuntimeError, ValueError, TypeError, ...
            raise ChunkDamage(_one_line(error)) from None
        if flat.size != self.expected:
            raise ChunkDamage(f"decodes to {flat.size} bytes, expected {self.expected}")
        return flat.view(self.meta.dtype).reshape(self.meta.chunks, order=self.meta.order)


def _check_blosc_header(payload: bytes, stored: int, expected: int | None) -> None:
    if stored < BLOSC_HEADER.size or len(payload) < BLOSC_HEADER.size:
        raise ChunkDamage(f"{stored} bytes, shorter than blosc's 16-byte header (truncated)")
    version, _, _, _, nbytes, _, cbytes = BLOSC_HEADER.unpack_from(payload)
    if version == 0 or cbytes != stored:
        raise ChunkDamage(
            f"blosc header says {cbytes} bytes, the file holds {stored} (truncated or overwritten)"
        )
    if expected is not None and nbytes != expected:
        raise ChunkDamage(f"blosc header says {nbytes} bytes decoded, expected {expected}")


def _in_bounds(values: np.ndarray, coords: tuple[int, ...], meta: ArrayV2Metadata) -> np.ndarray:
    """The part of a chunk inside the array (an edge chunk extends past it)."""
    window = tuple(
        slice(0, min(chunk, size - index * chunk))
        for index, chunk, size in zip(coords, meta.chunks, meta.shape, strict=True)
    )
    return values[window]


def _names(items: list[str]) -> str:
    shown = ", ".join(items[:MAX_NAMED])
    return shown + (f" and {len(items) - MAX_NAMED} more" if len(items) > MAX_NAMED else "")
