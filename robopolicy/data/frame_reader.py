"""Read consecutive frames of an image array, fast when each frame is its own chunk.

Why this exists. A zarr 3 indexing call (``array[a:b]``) costs about 0.6 ms in memory and 1 ms on
disk on this machine, almost all of it fixed overhead (selection planning and a round trip through
zarr's asyncio event loop), while decoding one Blosc-lz4 96x96x3 frame costs about 0.01-0.05 ms.
A sampler that reads two frames of two cameras per sample would spend nearly all its time in
that overhead. Our datasets store images one frame per chunk, so a frame *is* a chunk: this reader
fetches the chunk's compressed bytes directly (a file read on disk, a dict lookup in a
``MemoryStore``) and decodes them with the array's own numcodecs compressor straight into the
output buffer.

The fast path is taken only when it is certainly equivalent to zarr's read:

- zarr format 2 metadata (the replay-buffer layout), C order, native byte order, no filters
  but the CRC-32 checksum robopolicy's writer adds (verified here as zarr would: a mismatch
  raises, naming the frame);
- chunks of exactly one frame: ``(1, *frame_shape)``;
- a ``LocalStore`` (directory) or ``MemoryStore`` (``ReplayBuffer.open(..., in_memory=True)``).

Anything else (a zip store, a diffusion_policy dataset whose image chunks hold many frames, an
array with other filters) falls back to one plain zarr read of the whole range per call, which
is still one call per camera per sample. A chunk that was never written (zarr skips chunks that
equal the fill value, e.g. an all-black frame) reads as the fill value, as zarr would.

``MemoryStore`` keeps its contents in ``_store_dict``; zarr is pinned to 3.0.x (pyproject) and this
attribute is read with ``getattr`` so that a zarr without it simply takes the fallback path.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import zarr
from numcodecs import CRC32
from numcodecs.compat import ensure_ndarray
from zarr.core.metadata import ArrayV2Metadata
from zarr.storage import LocalStore, MemoryStore

from robopolicy.data.errors import DatasetError

RawChunk = Callable[[int], "bytes | np.ndarray | None"]
_CRC32 = CRC32()


class FrameReader:
    """Frames ``[start, stop)`` of one time-major array, as a ``(stop - start, *frame)`` array."""

    def __init__(self, array: zarr.Array, fast: bool = True):
        self.array = array
        self.frame_shape = tuple(int(d) for d in array.shape[1:])
        self.dtype = np.dtype(array.dtype)
        self._raw_chunk = _raw_chunk_source(array) if fast else None
        if self._raw_chunk is not None:
            meta = array.metadata
            self._codec = meta.compressor
            self._checksum = bool(meta.filters)  # _raw_chunk_source admits only CRC32
            fill = meta.fill_value if meta.fill_value is not None else 0
            self._fill = np.asarray(fill, dtype=self.dtype)

    @property
    def is_fast(self) -> bool:
        """True when frames are decoded from raw chunk bytes rather than read through zarr."""
        return self._raw_chunk is not None

    def read(self, start: int, stop: int) -> np.ndarray:
        if self._raw_chunk is None:
            return np.asarray(self.array[start:stop])
        out = np.empty((stop - start, *self.frame_shape), dtype=self.dtype)
        for row, index in enumerate(range(start, stop)):
            raw = self._raw_chunk(index)
            if raw is None:
                out[row] = self._fill
            elif self._checksum:
                out[row] = self._checked_frame(raw, index)
            elif self._codec is None:
                out[row] = np.frombuffer(raw, dtype=self.dtype).reshape(self.frame_shape)
            else:
                target = out[row]
                decoded = self._codec.decode(raw, out=target)
                if decoded is not target:  # a codec that returned its result, not filled ``out``
                    target[...] = ensure_ndarray(decoded).view(self.dtype).reshape(self.frame_shape)
        return out

    def _checked_frame(self, raw, index: int) -> np.ndarray:
        """A frame stored as compress(frame + CRC-32): decompressed, its checksum verified."""
        payload = raw if self._codec is None else self._codec.decode(raw)
        try:
            frame = _CRC32.decode(payload)
        except RuntimeError as error:  # numcodecs: "Stored and computed crc32 checksum ..."
            store = getattr(self.array.store, "root", "in memory")
            problem = f"frame {index} is damaged ({error}); run robopolicy-inspect verify=true"
            raise DatasetError(store, problem, self.array.path) from None
        return ensure_ndarray(frame).view(self.dtype).reshape(self.frame_shape)


def _raw_chunk_source(array: zarr.Array) -> RawChunk | None:
    """A function from frame index to that frame's stored chunk bytes, or None if unsupported."""
    meta = array.metadata
    if not isinstance(meta, ArrayV2Metadata) or array.ndim < 2:
        return None
    if tuple(meta.chunks) != (1, *array.shape[1:]):
        return None
    checksum_only = all(isinstance(codec, CRC32) for codec in meta.filters or ())
    if len(meta.filters or ()) > 1 or not checksum_only:
        return None
    if meta.order != "C" or not np.dtype(array.dtype).isnative:
        return None
    # The key of chunk (i, 0, ..., 0) is "<i>" followed by the same suffix for every frame.
    suffix = meta.encode_chunk_key((0,) * array.ndim)[1:]
    store = array.store
    prefix = array.path
    if isinstance(store, LocalStore):
        size_hint = int(np.prod(array.shape[1:])) * np.dtype(array.dtype).itemsize + 4096
        return _FileChunks(Path(store.root) / prefix, suffix, size_hint)
    contents = getattr(store, "_store_dict", None) if isinstance(store, MemoryStore) else None
    if contents is not None:
        return _MemoryChunks(contents, f"{prefix}/" if prefix else "", suffix)
    return None


class _FileChunks:
    """Chunk bytes from the files of a directory store (a class, not a closure: it pickles).

    ``os.open``/``os.read`` with a size hint (one frame plus room for a codec header) costs about
    7 us per chunk here against 12 us for ``open(...).read()``; a larger file is read to its end.
    """

    def __init__(self, directory: Path, suffix: str, size_hint: int):
        self.prefix = f"{directory}{os.sep}"
        self.suffix = suffix
        self.size_hint = size_hint

    def __call__(self, index: int) -> bytes | None:
        try:
            fd = os.open(f"{self.prefix}{index}{self.suffix}", os.O_RDONLY)
        except FileNotFoundError:
            return None
        try:
            data = os.read(fd, self.size_hint)
            if len(data) < self.size_hint:
                return data
            parts = [data]
            while part := os.read(fd, self.size_hint):
                parts.append(part)
            return b"".join(parts)
        finally:
            os.close(fd)


class _MemoryChunks:
    """Chunk bytes from the dict behind a ``MemoryStore``."""

    def __init__(self, contents, prefix: str, suffix: str):
        self.contents = contents
        self.prefix = prefix
        self.suffix = suffix

    def __call__(self, index: int) -> np.ndarray | None:
        buffer = self.contents.get(f"{self.prefix}{index}{self.suffix}")
        return None if buffer is None else buffer.as_numpy_array()
