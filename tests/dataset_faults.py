"""Fault classes for the dataset corruption harness (tests/test_dataset_corruption.py).

Each ``Fault`` damages a copy of a small valid store written by ``data_helpers.write_dataset``
(4 episodes of 4, 7, 10 and 6 steps: 27 rows; ``cam`` 8x8x3 one frame per chunk, ``pos``,
``action``, ``sim_state``, ``reward``, ``done``; ``meta/episode_mode`` and ``episode_seed``).
``damage(directory)`` alters a directory store in place; for a zip store the original is unpacked,
damaged and packed again (the damage happened before the zip was made, so every entry has a
valid CRC-32). Faults with ``raw_zip`` instead damage the bytes of the zip file itself.

``image_payload`` marks damage confined to an image chunk's compressed payload: train.py's
pre-flight decodes image chunks only when the images are small (``data.preflight_decode_images_mb``;
these stores are), above that it reads only their 16-byte header and cannot see it;
``datasets/inspect.py verify=true`` decodes every chunk and can. The random 8x8 frames of the
default store do not compress (blosc stores them as they are, so a flipped bit is just another
pixel); the ``image_payload`` class damages the ``smooth`` store instead, whose 32x32 frames
compress like rendered ones.
"""

from __future__ import annotations

import json
import shutil
import struct
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numcodecs
import numpy as np
import zarr
from data_helpers import SHAPE_META, episode_lengths, make_episode, write_dataset

from robopolicy.data import DatasetWriter

N_ROWS, ENDS = 27, [4, 11, 21, 27]  # write_dataset(n_episodes=4)
ROW = 14  # episode 2, step 3
MISSING = object()  # an attribute deleted from the root .zattrs


@dataclass(frozen=True)
class Fault:
    cls: str
    name: str
    damage: Callable[[Path], None]
    raw_zip: bool = False
    image_payload: bool = False
    base: str = "default"  # the store it damages: a key of BASES


def write_smooth_dataset(path: Path) -> None:
    """Like ``write_dataset(path, 4)`` with 32x32 frames of a gradient and a moving square,
    which compress as rendered frames do."""
    cam = {"shape": [32, 32, 3], "type": "rgb"}
    meta = {**SHAPE_META, "obs": {**SHAPE_META["obs"], "cam": cam}}
    y, x = np.mgrid[0:32, 0:32]
    with DatasetWriter.create(path, meta, fps=10, env_spec={"id": "test/Env-v0"}) as writer:
        for index, length in enumerate(episode_lengths(4)):
            episode = make_episode(index, length)
            frames = np.repeat(((x + y) * 4)[None, ..., None], length, 0).repeat(3, -1)
            for t in range(length):
                frames[t, t : t + 6, 10:16] = 255
            episode["cam"] = frames.astype(np.uint8)
            writer.append_episode(episode, episode_meta={"mode": index % 2, "seed": index})


BASES = {"default": partial(write_dataset, n_episodes=4), "smooth": write_smooth_dataset}


# ----------------------------------------------------------------------------- file edits
def _bytes(key: str, edit: Callable[[bytes], bytes], root: Path) -> None:
    path = root / key
    path.write_bytes(edit(path.read_bytes()))


def _flip(seed: int, payload: bytes) -> bytes:
    rng = np.random.default_rng(seed)
    out = bytearray(payload)
    bit = int(rng.integers(len(out) * 8))
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


def _garbage(payload: bytes) -> bytes:
    return np.random.default_rng(len(payload)).integers(0, 256, len(payload), np.uint8).tobytes()


def _delete(key: str, root: Path) -> None:
    path = root / key
    shutil.rmtree(path) if path.is_dir() else path.unlink()


def _json(key: str, edit: Callable[[dict], dict], root: Path) -> None:
    path = root / key
    path.write_text(json.dumps(edit(json.loads(path.read_text())), allow_nan=True))


def _set(keys: tuple[str, ...], value, doc: dict) -> dict:
    *parents, last = keys
    target = doc
    for key in parents:
        target = target[key]
    if value is MISSING:
        del target[last]
    else:
        target[last] = value
    return doc


def _root_attr(keys: tuple[str, ...], value) -> Callable[[Path], None]:
    return partial(_json, ".zattrs", partial(_set, keys, value))


def _zarray(key: str, field: str, value) -> Callable[[Path], None]:
    return partial(_json, f"{key}/.zarray", partial(_set, (field,), value))


def _write(key: str, index, value, root: Path) -> None:
    array = zarr.open_array(zarr.storage.LocalStore(root), path=key, mode="r+")
    array[index] = value


def _replace(key: str, make: Callable[[np.ndarray], np.ndarray], root: Path) -> None:
    """Rewrite the array ``key`` with ``make(its values)``, one chunk per frame for images."""
    store = zarr.storage.LocalStore(root)
    values = make(zarr.open_array(store, path=key, mode="r")[:])
    shutil.rmtree(root / key)
    chunks = (1, *values.shape[1:]) if values.ndim >= 3 else values.shape or (1,)
    array = zarr.create_array(
        store, name=key, shape=values.shape, chunks=chunks, dtype=values.dtype, zarr_format=2
    )
    array[...] = values


def _bool_byte(root: Path) -> None:
    """data/done's chunk re-encoded with a byte 2 where a bool must be 0 or 1."""
    path = root / "data/done/0"
    codec = numcodecs.Blosc(cname="zstd", clevel=3, shuffle=numcodecs.Blosc.SHUFFLE)
    values = np.frombuffer(codec.decode(path.read_bytes()), np.uint8).copy()
    values[ROW] = 2
    path.write_bytes(codec.encode(values))


# ----------------------------------------------------------------------------- zip-file edits
def _zip_entry_offset(zip_path: Path, name: str) -> int:
    """Where the data of entry ``name`` starts in the zip file (after its local header)."""
    with zipfile.ZipFile(zip_path) as archive:
        info = archive.getinfo(name)
    with open(zip_path, "rb") as file:
        file.seek(info.header_offset + 26)
        name_length, extra_length = struct.unpack("<HH", file.read(4))
    return info.header_offset + 30 + name_length + extra_length


def _zip_flip_entry(name: str, zip_path: Path) -> None:
    offset = _zip_entry_offset(zip_path, name) + 20  # inside the entry's payload
    payload = bytearray(zip_path.read_bytes())
    payload[offset] ^= 0x10
    zip_path.write_bytes(bytes(payload))


def _zip_bytes(edit: Callable[[bytes], bytes], zip_path: Path) -> None:
    zip_path.write_bytes(edit(zip_path.read_bytes()))


CENTRAL_FIELDS = {"crc": 16, "compressed size": 20, "local offset": 42, "name": 46 + 2}


def _central_directory_flip(name: str, field: str, payload: bytes) -> bytes:
    """Flip a bit of one field of ``name``'s entry in the zip's central directory."""
    start = payload.find(b"PK\x01\x02")
    while start >= 0:
        (length,) = struct.unpack_from("<H", payload, start + 28)
        if payload[start + 46 : start + 46 + length] == name.encode():
            out = bytearray(payload)
            out[start + CENTRAL_FIELDS[field]] ^= 0x04
            return bytes(out)
        start = payload.find(b"PK\x01\x02", start + 1)
    raise KeyError(name)


# ----------------------------------------------------------------------------- the faults
LOW_DIM_CHUNKS = ["data/action/0.0", "data/pos/0.0", "data/sim_state/0.0", "data/reward/0"]
META_CHUNKS = ["meta/episode_ends/0", "meta/episode_seed/0", "meta/episode_mode/0"]
IMAGE_CHUNKS = ["data/cam/0.0.0.0", "data/cam/13.0.0.0"]
CHUNKS = [*LOW_DIM_CHUNKS, "data/done/0", *META_CHUNKS, *IMAGE_CHUNKS]
METADATA = [
    ".zgroup",
    ".zattrs",
    "data/.zgroup",
    "meta/.zgroup",
    "meta/.zattrs",
    "data/action/.zarray",
    "data/pos/.zattrs",
    "data/cam/.zarray",
    "meta/episode_ends/.zarray",
    "meta/episode_seed/.zarray",
]
BIT_FLIP_SEEDS = range(6)


def _chunk_faults() -> list[Fault]:
    faults = []
    for key in CHUNKS:
        image = key in IMAGE_CHUNKS
        faults.append(Fault("chunk_deleted", key, partial(_delete, key)))
        for size in (0, 10, -1):
            edit = partial(_bytes, key, lambda b, n=size: b[:n] if n >= 0 else b[: len(b) // 2])
            faults.append(Fault("chunk_truncated", f"{key}[:{size}]", edit))
        for name, edit in (("zeros", lambda b: bytes(len(b))), ("garbage", _garbage)):
            faults.append(Fault("chunk_zeroed", f"{key} {name}", partial(_bytes, key, edit)))
        for seed in BIT_FLIP_SEEDS:
            edit = partial(_bytes, key, partial(_flip, 100 * CHUNKS.index(key) + seed))
            faults.append(Fault("chunk_bitflip", f"{key} seed {seed}", edit, image_payload=image))
    return faults


def _metadata_faults() -> list[Fault]:
    variants = {
        "deleted": None,
        "truncated": lambda b: b[: len(b) // 2],
        "garbage": _garbage,
        "empty": lambda b: b"",
        "json list": lambda b: b"[]",
    }
    faults = []
    for key in METADATA:
        for name, edit in variants.items():
            damage = partial(_delete, key) if edit is None else partial(_bytes, key, edit)
            faults.append(Fault("metadata_damaged", f"{key} {name}", damage))
    for name, damage in {
        "action dtype <f8": _zarray("data/action", "dtype", "<f8"),
        "action dtype <i4": _zarray("data/action", "dtype", "<i4"),
        "action chunks [0, 3]": _zarray("data/action", "chunks", [0, 3]),
        "action compressor nope": _zarray("data/action", "compressor", {"id": "nope"}),
        "action compressor null": _zarray("data/action", "compressor", None),
        "action fill_value abc": _zarray("data/action", "fill_value", "abc"),
        "action separator /": _zarray("data/action", "dimension_separator", "/"),
        "action zarr_format 3": _zarray("data/action", "zarr_format", 3),
        "action shape text": _zarray("data/action", "shape", "27,3"),
        "cam dtype <u2": _zarray("data/cam", "dtype", "<u2"),
    }.items():
        faults.append(Fault("metadata_fields", name, damage))
    return faults


def _value_faults() -> list[Fault]:
    faults = []
    for key, index in (
        ("data/action", (ROW, 1)),
        ("data/pos", (ROW, 0)),
        ("data/sim_state", (ROW, 4)),
        ("data/reward", ROW),
    ):
        for value in (np.nan, np.inf, -np.inf, 1e30, -1e30):
            faults.append(
                Fault("values_nonfinite", f"{key} {value}", partial(_write, key, index, value))
            )
    faults.append(Fault("values_nonfinite", "data/done byte 2", _bool_byte))
    return faults


def _image_faults() -> list[Fault]:
    makes = {
        "float32": lambda v: v.astype(np.float32),
        "uint16": lambda v: v.astype(np.uint16),
        "4x4x3": lambda v: v[:, :4, :4],
        "8x8x1": lambda v: v[..., :1],
        "3-D": lambda v: v.reshape(len(v), 8, 24),
        "2-D": lambda v: v.reshape(len(v), -1),
    }
    return [
        Fault("image_shape_dtype", name, partial(_replace, "data/cam", make))
        for name, make in makes.items()
    ]


def _attribute_faults() -> list[Fault]:
    faults = []
    for value in (-10, 0, "fast", float("nan"), float("inf"), None, True, "10", [10], MISSING):
        faults.append(Fault("attr_fps", repr(value), _root_attr(("fps",), value)))
    for value in ("robopolicy/PushCube-v0", ["x"], 5, None):
        faults.append(Fault("attr_env_spec", repr(value), _root_attr(("env_spec",), value)))
    faults.append(Fault("attr_env_spec", "id 5", _root_attr(("env_spec", "id"), 5)))
    faults.append(Fault("attr_env_spec", "kwargs text", _root_attr(("env_spec", "kwargs"), "a=1")))
    faults.append(Fault("attr_env_spec", "kwargs list", _root_attr(("env_spec", "kwargs"), [])))
    for keys, value in (
        (("shape_meta",), MISSING),
        (("shape_meta",), "pos,cam"),
        (("shape_meta", "obs"), {}),
        (("shape_meta", "action", "shape"), [4]),
        (("shape_meta", "action", "shape"), 3),
        (("shape_meta", "obs", "pos", "shape"), [3]),
        (("shape_meta", "obs", "pos", "shape"), "2"),
        (("shape_meta", "obs", "cam", "type"), "video"),
        (("shape_meta", "obs", "cam", "shape"), [8, 8]),
        (("shape_meta", "obs", "extra"), {"shape": [1], "type": "low_dim"}),
        (("format_version",), 99),
        (("format_version",), "1"),
        (("format_version",), MISSING),
        (("format",), "other-format"),
    ):
        name = f"{'.'.join(keys)}={'<deleted>' if value is MISSING else repr(value)}"
        faults.append(Fault("attr_shape_meta_format", name, _root_attr(keys, value)))
    return faults


def _episode_faults() -> list[Fault]:
    ends = np.array(ENDS)
    faults = [
        Fault(
            "episode_fields",
            "seed 2-D",
            partial(_replace, "meta/episode_seed", lambda v: np.stack([v, v], 1)),
        ),
        Fault(
            "episode_fields", "seed short", partial(_replace, "meta/episode_seed", lambda v: v[:-1])
        ),
        Fault(
            "episode_fields",
            "seed long",
            partial(_replace, "meta/episode_seed", lambda v: np.append(v, 9)),
        ),
        Fault(
            "episode_fields",
            "seed text",
            partial(_replace, "meta/episode_seed", lambda v: v.astype("<U4")),
        ),
        Fault(
            "episode_fields",
            "mode 2-D",
            partial(_replace, "meta/episode_mode", lambda v: v[:, None]),
        ),
        Fault(
            "episode_fields",
            "mode NaN",
            partial(_replace, "meta/episode_mode", lambda v: np.full(len(v), np.nan)),
        ),
    ]
    for name, values in {
        "swapped": ends[[0, 2, 1, 3]],
        "repeated": np.array([4, 11, 11, 27]),
        "short of the data": ends - [0, 0, 0, 1],
        "past the data": ends + [0, 0, 0, 1],
        "first 0": np.array([0, 11, 21, 27]),
        "negative": np.array([-4, 11, 21, 27]),
        "float": ends.astype(np.float64),
        "2-D": ends.reshape(2, 2),
        "empty": ends[:0],
        "an extra entry": np.append(ends, 30),
    }.items():
        faults.append(
            Fault(
                "episode_ends", name, partial(_replace, "meta/episode_ends", lambda v, x=values: x)
            )
        )
    return faults


def _structure_faults() -> list[Fault]:
    faults = [
        Fault("array_missing", key, partial(_delete, key))
        for key in ("data/action", "data/pos", "data/cam", "meta/episode_ends", "data", "meta")
    ]
    for key, rows in (
        ("data/action", N_ROWS - 1),
        ("data/action", N_ROWS + 1),
        ("data/pos", N_ROWS + 5),
        ("data/cam", N_ROWS - 1),
        ("data/cam", N_ROWS + 1),
    ):
        shape = [rows, *({"data/action": [3], "data/pos": [2], "data/cam": [8, 8, 3]}[key])]
        faults.append(Fault("array_length", f"{key} {rows} rows", _zarray(key, "shape", shape)))
    return faults


def _payload_flip(seed: int, payload: bytes) -> bytes:
    """One bit flipped past the 16-byte blosc header."""
    rng = np.random.default_rng(seed)
    out = bytearray(payload)
    bit = 16 * 8 + int(rng.integers((len(out) - 16) * 8))
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


def _image_payload_faults() -> list[Fault]:
    return [
        Fault(
            "image_payload",
            f"{key} payload seed {seed}",
            partial(_bytes, key, partial(_payload_flip, seed)),
            image_payload=True,
            base="smooth",
        )
        for key in ("data/cam/2.0.0.0", "data/cam/20.0.0.0")
        for seed in range(6)
    ]


def _raw_zip_faults() -> list[Fault]:
    faults = [
        Fault(
            "zip_file",
            "truncated to half",
            partial(_zip_bytes, lambda b: b[: len(b) // 2]),
            raw_zip=True,
        ),
        Fault("zip_file", "end record cut", partial(_zip_bytes, lambda b: b[:-22]), raw_zip=True),
        Fault(
            "zip_file",
            "last 100 bytes zeroed",
            partial(_zip_bytes, lambda b: b[:-100] + bytes(100)),
            raw_zip=True,
        ),
    ]
    for name in ("data/action/0.0", "data/cam/3.0.0.0"):
        for field in CENTRAL_FIELDS:
            edit = partial(_zip_bytes, partial(_central_directory_flip, name, field))
            faults.append(Fault("zip_file", f"central entry {name} {field}", edit, raw_zip=True))
    for name in (
        "data/action/0.0",
        "data/cam/3.0.0.0",
        "meta/episode_ends/0",
        ".zattrs",
        "data/action/.zarray",
    ):
        faults.append(
            Fault(
                "zip_file",
                f"entry {name} flipped",
                partial(_zip_flip_entry, name),
                raw_zip=True,
                image_payload=name.startswith("data/cam/"),
            )
        )
    return faults


def all_faults() -> list[Fault]:
    """Every fault, for directory stores (``raw_zip`` faults are for zip stores only)."""
    return [
        *_chunk_faults(),
        *_metadata_faults(),
        *_value_faults(),
        *_image_faults(),
        *_attribute_faults(),
        *_episode_faults(),
        *_structure_faults(),
        *_image_payload_faults(),
        *_raw_zip_faults(),
    ]
