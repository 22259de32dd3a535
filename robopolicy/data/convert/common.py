"""What every converter needs: output that appears only when complete, and casts that lose nothing.

``staged_output`` hands the converter a temporary path beside the destination and moves the
result into place only after the conversion succeeded, so an interrupted or failed conversion
never leaves a half-written dataset under the requested name and never touches an existing one
(which is replaced only with ``overwrite=True``, and only at the very end).

``exact_cast`` casts an array to the dtype our format stores and reports whether every value
survived the trip (cast, then cast back, compares equal). Converters decide what to do with an
inexact cast: the robomimic importer keeps the original array beside the dataset, the
diffusion_policy importer refuses.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from robopolicy.data.errors import DatasetError
from robopolicy.data.store import is_zip_path, pack_directory_to_zip


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def check_destination(path: Path, overwrite: bool) -> None:
    """Refuse to replace an existing file or directory unless ``overwrite`` is set."""
    if path.exists() and not overwrite:
        raise DatasetError(path, "already exists (pass --overwrite to replace it)")


@contextmanager
def staged_output(path: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary path to write to; on success it becomes ``path``.

    The temporary path never ends in ``.zip``: a zarr destination ``*.zip`` is written as a
    directory store and packed into the zip at the end (``pack_directory_to_zip`` renames it
    into place atomically). A directory replaces an existing one by two renames (old aside,
    new in), then the old one is deleted.
    """
    path = Path(path)
    check_destination(path, overwrite)
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.parent / f".{path.name}.converting-{os.getpid()}"
    _remove(staging)
    try:
        yield staging
        if is_zip_path(path) and staging.is_dir():
            pack_directory_to_zip(staging, path)
        elif staging.is_dir() and path.exists():
            aside = path.parent / f".{path.name}.replaced-{os.getpid()}"
            os.replace(path, aside)
            os.replace(staging, path)
            _remove(aside)
        else:
            os.replace(staging, path)
    finally:
        _remove(staging)


def exact_cast(values: np.ndarray, dtype: np.dtype) -> tuple[np.ndarray, str | None]:
    """``values`` cast to ``dtype``, and ``None`` or an example of a value the cast changes.

    A cast is exact when casting back gives equal values: float64 -> float32 keeps values that
    float32 represents, float -> uint8 keeps integers in 0..255, int -> bool keeps 0 and 1. NaN
    never counts as kept (our writer refuses it anyway).
    """
    values = np.asarray(values)
    dtype = np.dtype(dtype)
    if values.dtype == dtype:
        return values, None
    with np.errstate(invalid="ignore", over="ignore"):
        cast = values.astype(dtype)
        changed = cast.astype(values.dtype) != values
    if not changed.any():
        return cast, None
    index = np.unravel_index(int(np.argmax(changed)), values.shape)
    return cast, f"{values[index]!r} at index {tuple(int(i) for i in index)}"
