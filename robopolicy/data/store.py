"""Where a dataset's bytes live: a directory, a zip file, or RAM.

The dataset is a zarr group in the version-2 on-disk format (the format diffusion_policy's
datasets use, so theirs open here and ours open there). A path ending in ``.zip`` is a zip store;
anything else is a directory store. ``load_into_memory`` copies every chunk into a zarr
``MemoryStore`` still compressed, as diffusion_policy's in-memory replay buffer does: the dataset
costs its compressed size in RAM and reads never touch the disk.

``AtomicLocalStore`` writes every file through a temporary file and ``os.replace``, so a process
killed mid-write leaves each metadata or chunk file either old or new, never half-written. The
writer's append protocol (see ``writer.py``) builds on that.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import zipfile
from pathlib import Path

from zarr.core.buffer import Buffer, default_buffer_prototype
from zarr.storage import LocalStore, MemoryStore, ZipStore

from robopolicy.data.errors import DatasetError


def _atomic_put(path: Path, payload: memoryview | bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


class AtomicLocalStore(LocalStore):
    """A zarr directory store whose every write is atomic (temp file, then rename)."""

    async def _set(self, key: str, value: Buffer, exclusive: bool = False) -> None:
        if not self._is_open:
            await self._open()
        self._check_writable()
        path = self.root / key
        if exclusive and path.exists():
            raise FileExistsError(path)
        await asyncio.to_thread(_atomic_put, path, value.as_buffer_like())


def is_zip_path(path: str | os.PathLike) -> bool:
    return str(path).endswith(".zip")


def has_zarr_root(path: Path) -> bool:
    """True when ``path`` (a directory or a zip) holds a zarr group at its root."""
    markers = (".zgroup", "zarr.json")
    if path.is_dir():
        return any((path / m).is_file() for m in markers)
    if path.is_file() and zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as zf:
            names = set(zf.namelist())
        return any(m in names for m in markers)
    return False


def open_read_store(path: str | os.PathLike) -> LocalStore | ZipStore:
    """A read-only store over ``path``; one clear error if it is not a zarr dataset."""
    path = Path(path)
    if not path.exists():
        raise DatasetError(path, "no such file or directory")
    if path.is_file() and not zipfile.is_zipfile(path):
        raise DatasetError(
            path,
            "not a zarr group: a file that is not a zip (expected a .zarr "
            "directory or a .zarr.zip)",
        )
    if not has_zarr_root(path):
        what = "a zip without a zarr group" if path.is_file() else "not a zarr group"
        raise DatasetError(
            path, f"{what}: expected a .zgroup or zarr.json at the root (is this a zarr dataset?)"
        )
    if path.is_file():
        return ZipStore(path, mode="r")
    return LocalStore(path, read_only=True)


def load_into_memory(path: str | os.PathLike) -> MemoryStore:
    """Copy every file of the dataset at ``path`` (chunks stay compressed) into a MemoryStore."""
    path = Path(path)
    open_read_store(path)  # the same clear error as on disk if this is not a zarr dataset
    as_buffer = default_buffer_prototype().buffer.from_bytes
    contents: dict[str, Buffer] = {}
    if path.is_file():
        with zipfile.ZipFile(path) as zf:
            for name in zf.namelist():
                if name.endswith("/"):
                    continue
                try:
                    contents[name] = as_buffer(zf.read(name))
                except zipfile.BadZipFile as error:  # a CRC-32 mismatch: the entry is damaged
                    raise DatasetError(path, f"damaged zip entry ({error})", name) from None
    else:
        for file in path.rglob("*"):
            if file.is_file() and not file.name.endswith(".tmp"):
                contents[file.relative_to(path).as_posix()] = as_buffer(file.read_bytes())
    return MemoryStore(contents)


def pack_directory_to_zip(directory: Path, zip_path: Path) -> None:
    """Write the directory store ``directory`` as the zip store ``zip_path``, atomically.

    Entries are stored uncompressed (the chunks are compressed already). The zip is built under a
    temporary name beside ``zip_path`` and renamed over it only once complete.
    """
    zip_path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=zip_path.parent, prefix=f".{zip_path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
            for file in sorted(directory.rglob("*")):
                if file.is_file() and not file.name.endswith(".tmp"):
                    zf.write(file, file.relative_to(directory).as_posix())
        os.replace(tmp, zip_path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def unpack_zip_to_directory(zip_path: Path, directory: Path) -> None:
    """Extract a zip store into ``directory`` (used to resume appending to a zip dataset)."""
    with zipfile.ZipFile(zip_path) as zf:
        zf.extractall(directory)
