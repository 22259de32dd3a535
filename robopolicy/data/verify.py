"""Verify a dataset end to end: every metadata file, every chunk, every value a check can judge.

``verify_dataset(path, images="full")`` returns a ``VerifyReport``: one line per problem
(``<key>: <what is wrong; what was expected>``) and the time it took. ``check_dataset`` raises
one ``DatasetError`` with the first problem and the count of the others; ``train.py`` calls it
with ``images="presence"`` before its first step, ``datasets/inspect.py verify=true`` prints the
full report. What is checked:

- metadata (``integrity.read_layout``): every ``.zgroup``, ``.zattrs`` and ``.zarray`` of the
  root, ``data/``, ``meta/`` and their arrays parses as zarr v2 metadata;
- chunks (``integrity.check_chunks``), for every array of ``data/`` and ``meta/``: every chunk
  the array's shape needs is present (zarr reads a missing one as the fill value), its blosc
  header matches the file's length and the chunk's size (a truncated or zeroed chunk fails), and
  it decodes to one chunk. With ``images="presence"`` an image chunk is only checked for presence
  and its header (16 bytes read), not decoded: the cost of verifying a camera dataset is then
  one small read per frame;
- values: NaN, inf or ``|x| > MAX_ABS`` in any float array (actions, low-dim observations,
  ``sim_state``, ``reward``, depth images, float per-episode fields), naming the array, episode
  and step; a bool array holding bytes other than 0 and 1;
- structure and attributes, as ``ReplayBuffer.open`` checks them: ``episode_ends`` strictly
  increasing and ending at every array's length, ``shape_meta`` valid and matching the arrays
  (image shapes and dtypes included), ``fps``, ``env_spec``, per-episode fields 1-D and numeric
  with one entry per episode; and a store holding robopolicy's per-episode arrays without its
  root attributes (a deleted root ``.zattrs``).

Checksums: every chunk robopolicy's writer stores carries a CRC-32 of its raw bytes (the
``crc32`` filter, robopolicy/data/writer.py), so any flipped bit in a decoded chunk is reported
(bench/results/dataset_corruption.json: 0 of 561 damaged copies accepted). A store written by
other tools without that filter keeps blosc's lack of one: a flipped bit there that still decodes
to plausible values (a different pixel, a finite float within range) reads as data. A zip
store's entries carry their own CRC-32 too.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from zarr.core.metadata.v2 import ArrayV2Metadata

from robopolicy.data.errors import DatasetError
from robopolicy.data.format import FORMAT_NAME
from robopolicy.data.integrity import (
    Layout,
    Problem,
    RawStore,
    check_chunks,
    open_raw,
    read_layout,
)
from robopolicy.data.reader import ReplayBuffer, attribute_problems
from robopolicy.utils.console import progress_bar

IMAGE_MODES = ("full", "presence")
IMAGE_TYPES = ("rgb", "depth")
MAX_ABS = 1e9  # no recorded quantity is this large; a value beyond it is damage (or 1e30 filler)


@dataclass
class VerifyReport:
    """The outcome of ``verify_dataset``: the problems found and what it cost."""

    path: Path
    images: str
    problems: list[Problem] = field(default_factory=list)
    arrays: int = 0
    chunks: int = 0  # chunk files checked
    decoded: int = 0  # of which decoded in full (the rest: presence and blosc header)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        headers = self.chunks - self.decoded
        checked = f"{self.arrays} arrays, {self.chunks} chunks ({self.decoded} decoded" + (
            f", {headers} image chunks checked for presence and size only)" if headers else ")"
        )
        verdict = "no problems" if self.ok else f"{len(self.problems)} problem(s)"
        return f"{verdict} in {checked}"


def verify_dataset(
    path: str | os.PathLike,
    *,
    images: str = "full",
    decode_images_up_to: int = 0,
    progress: bool = False,
) -> VerifyReport:
    """Check the dataset at ``path`` (see the module docstring); never raises for bad data.
    With ``images="presence"``, images are decoded all the same when all of them together are
    at most ``decode_images_up_to`` bytes uncompressed. ``progress``: a bar on stderr over the
    arrays checked."""
    if images not in IMAGE_MODES:
        raise ValueError(f"images={images!r}: expected one of {IMAGE_MODES}")
    start = time.perf_counter()
    report = VerifyReport(Path(path), images)
    try:
        raw = open_raw(path)
    except DatasetError as error:
        report.problems.append(Problem(error.key or "store", error.problem))
    else:
        with raw:
            _verify(raw, report, decode_images_up_to, progress)
    report.seconds = time.perf_counter() - start
    return report


def check_dataset(path: str | os.PathLike, **options) -> VerifyReport:
    """``verify_dataset`` (with its keyword ``options``), raising one ``DatasetError`` (the first
    problem, the count of the others) unless the dataset passes; returns the report when it
    does."""
    report = verify_dataset(path, **options)
    if not report.ok:
        first, more = report.problems[0], len(report.problems) - 1
        others = (
            f" (and {more} more: robopolicy-inspect path={path} verify=true lists all)"
            if more
            else ""
        )
        raise DatasetError(path, first.text + others, first.key)
    return report


def _verify(raw: RawStore, report: VerifyReport, decode_images_up_to: int, progress: bool) -> None:
    layout = read_layout(raw)
    report.problems += layout.problems
    if layout.zarr_format == 3:
        text = "a zarr format 3 store; datasets use format 2 (datasets/README.md), all this reads"
        report.problems.append(Problem("zarr.json", text))
        return
    buffer, structure = _open_buffer(report.path)
    images = _image_keys(layout, buffer)
    image_bytes = sum(
        math.prod(layout.arrays[key].shape) * layout.arrays[key].dtype.itemsize
        for key in images
        if key in layout.arrays
    )
    decode_images = report.images == "full" or image_bytes <= decode_images_up_to
    value_problems = []
    bar = progress_bar(len(layout.arrays), "verify", progress, unit="array", leave=False)
    for key, meta in layout.arrays.items():
        bar.set_postfix_str(key, refresh=False)
        decode = decode_images or key not in images
        values = _ValueCheck(key, meta, buffer) if decode and meta.dtype.kind in "fb" else None
        problems, checked = check_chunks(raw, key, meta, _rows(key, meta, buffer), decode, values)
        report.problems += problems
        report.arrays += 1
        report.chunks += checked
        report.decoded += checked if decode else 0
        value_problems += values.problems() if values is not None else []
        bar.update(1)
    bar.close()
    root_attrs = layout.attrs.get("")
    native = root_attrs is not None and root_attrs.get("format") == FORMAT_NAME
    if root_attrs is not None:
        report.problems += [Problem(*problem) for problem in attribute_problems(root_attrs, native)]
    if structure is not None and structure not in report.problems:
        report.problems.append(structure)
    report.problems += value_problems
    report.problems += _foreign_attrs(layout, native)


def _open_buffer(path: Path) -> tuple[ReplayBuffer | None, Problem | None]:
    """The reader's own checks: the buffer, or the first problem it found."""
    try:
        return ReplayBuffer.open(path), None
    except DatasetError as error:
        return None, Problem(error.key or "store", error.problem)


def _image_keys(layout: Layout, buffer: ReplayBuffer | None) -> set[str]:
    """Arrays only checked for presence with images="presence": the image keys of shape_meta,
    or (when the reader could not tell) every data/ array of 3 or more dimensions."""
    if buffer is not None:
        obs = buffer.shape_meta["obs"]
        return {f"data/{key}" for key, spec in obs.items() if spec["type"] in IMAGE_TYPES}
    return {
        key
        for key, meta in layout.arrays.items()
        if key.startswith("data/") and len(meta.shape) > 2
    }


def _rows(key: str, meta: ArrayV2Metadata, buffer: ReplayBuffer | None) -> int:
    """The rows that must be present: the committed steps (data/) or episodes (meta/); all rows
    when the reader could not say (an interrupted append may leave rows past them unwritten)."""
    if buffer is None or not meta.shape:
        return meta.shape[0] if meta.shape else 1
    return buffer.n_steps if key.startswith("data/") else buffer.n_episodes


class _ValueCheck:
    """Collects, chunk by chunk, the rows of a float array holding NaN, inf or |x| > MAX_ABS
    (or of a bool array holding bytes other than 0/1); ``problems()`` sums them up."""

    def __init__(self, key: str, meta: ArrayV2Metadata, buffer: ReplayBuffer | None):
        self.key, self.meta, self.buffer = key, meta, buffer
        self.kind = meta.dtype.kind
        self.limit = _rows(key, meta, buffer)
        self.bad_rows = 0
        self.first: tuple[int, float | int] | None = None

    def __call__(self, coords: tuple[int, ...], values: np.ndarray) -> None:
        if not coords:
            return
        offset = coords[0] * self.meta.chunks[0]
        values = values[: max(0, self.limit - offset)]
        # a NaN compares False; a bool's byte is 0 or 1
        bad = ~(np.abs(values) <= MAX_ABS) if self.kind == "f" else values.view(np.uint8) > 1
        rows = bad.reshape(len(values), -1).any(axis=1)
        if not rows.any():
            return
        self.bad_rows += int(rows.sum())
        if self.first is None:
            row = int(np.argmax(rows))
            flat = values[row].reshape(-1)
            value = flat[np.argmax(bad[row].reshape(-1))]
            self.first = (
                offset + row,
                int(value.view(np.uint8)) if self.kind == "b" else float(value),
            )

    def problems(self) -> list[Problem]:
        if self.first is None:
            return []
        row, value = self.first
        expected = (
            f"expected finite values with |x| <= {MAX_ABS:g}"
            if self.kind == "f"
            else "expected a bool array's bytes to be 0 or 1 (damaged chunk?)"
        )
        return [
            Problem(
                self.key,
                f"{self.bad_rows} row(s) hold bad values; the first, {value!r} at "
                f"{self._where(row)}; {expected}",
            )
        ]

    def _where(self, row: int) -> str:
        if self.buffer is None or not self.key.startswith("data/"):
            return f"row {row}" if self.key.startswith("data/") else f"episode {row}"
        ends = self.buffer.episode_ends
        episode = int(np.searchsorted(ends, row, side="right"))
        start = int(ends[episode - 1]) if episode else 0
        return f"episode {episode}, step {row - start} (row {row})"


def _foreign_attrs(layout: Layout, native: bool) -> list[Problem]:
    """A store without robopolicy's root attributes that holds arrays only its writer makes
    (per-episode fields, sim_state): the root .zattrs was deleted or emptied."""
    if native or any(problem.key == ".zattrs" for problem in layout.problems):
        return []
    ours = [
        key
        for key in layout.arrays
        if (key.startswith("meta/episode_") and key != "meta/episode_ends")
        or key == "data/sim_state"
    ]
    if not ours:
        return []
    return [
        Problem(
            ".zattrs",
            f"no robopolicy root attributes (format, fps, shape_meta, env_spec), yet the store "
            f"holds {', '.join(ours)}, which only robopolicy's writer makes: the root .zattrs "
            "was deleted or damaged; expected the attributes of datasets/README.md",
        )
    ]
