"""Our zarr dataset -> robomimic HDF5: the export half of ``robomimic_hdf5`` (whose docstring
describes both directions and what round-trips exactly).

A dataset imported from robomimic that still carries its ``robomimic/`` group is rebuilt exactly;
any other dataset is written in robomimic's layout.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import zarr

from robopolicy.data.convert.common import check_destination, staged_output
from robopolicy.data.convert.hdf5_values import decode_value, write_attrs
from robopolicy.data.convert.robomimic_hdf5 import (
    GYM_ENV_TYPE,
    MASK_PREFIX,
    SOURCE_GROUP,
    STEP_KEYS,
    source_path_target,
)
from robopolicy.data.reader import ReplayBuffer
from robopolicy.data.store import open_read_store

log = logging.getLogger(__name__)


def zarr_to_robomimic(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    overwrite: bool = False,
    next_obs: bool = False,
) -> Path:
    """Write our dataset ``src`` as the robomimic HDF5 file ``dst`` (see the module docstring)."""
    src, dst = Path(src), Path(dst)
    check_destination(dst, overwrite)
    buffer = ReplayBuffer.open(src)
    source = _source_group(buffer)
    with staged_output(dst, overwrite) as staging, h5py.File(staging, "w") as f:
        if source is not None:
            _export_source(buffer, source, f)
        else:
            _export_native(buffer, f, next_obs)
    return dst


def _source_group(buffer: ReplayBuffer) -> zarr.Group | None:
    """The ``robomimic/`` group if present and still describing every episode."""
    root = zarr.open_group(open_read_store(buffer.path), mode="r")
    if SOURCE_GROUP not in root:
        return None
    source = root[SOURCE_GROUP]
    attrs = source.attrs
    if (len(attrs["demos"]), attrs["n_steps"]) != (buffer.n_episodes, buffer.n_steps):
        log.warning(
            f"{buffer.path}: robomimic/ describes {len(attrs['demos'])} demos and "
            f"{attrs['n_steps']} steps, the dataset {buffer.n_episodes} and {buffer.n_steps} "
            "(appended to after import?); writing it as a new robomimic file instead"
        )
        return None
    return source


def _create_dataset(group: h5py.Group, path: str, values: np.ndarray, spec: dict) -> None:
    filters = {}
    if values.ndim > 0 and values.size > 0 and spec.get("compression"):
        filters = {
            "compression": spec["compression"],
            "compression_opts": _json_to_tuple(spec.get("compression_opts")),
            "shuffle": spec.get("shuffle", False),
        }
    group.create_dataset(path, data=values, **filters)


def _json_to_tuple(value: Any) -> Any:
    """JSON turned szip's ``("nn", 16)`` options into a list; h5py wants the tuple back."""
    return tuple(value) if isinstance(value, list) else value


def _export_source(buffer: ReplayBuffer, source: zarr.Group, f: h5py.File) -> None:
    """Rebuild the original robomimic file from data/ plus what robomimic/ kept."""
    attrs = source.attrs
    layout: dict[str, dict] = attrs["layout"]
    write_attrs(f.attrs, attrs["file_attrs"])
    data = f.create_group("data")
    write_attrs(data.attrs, attrs["data_attrs"])
    for index, name in enumerate(attrs["demos"]):
        kept = source["demos"][name]
        window = buffer.episode_slice(index)
        demo = data.create_group(name)
        values: dict[str, np.ndarray] = {}
        # obs/ before next_obs/: a compact next_obs is rebuilt from the restored obs
        for path in sorted(layout, key=lambda p: p.startswith("next_obs/")):
            values[path] = _restore(path, layout[path], buffer.data, kept, window, values)
            _create_dataset(demo, path, values[path], layout[path])
        for path, tagged in kept.attrs["h5_attrs"].items():
            write_attrs((demo if path == "." else demo[path]).attrs, tagged)
    if attrs["mask_attrs"] is not None:
        write_attrs(f.require_group("mask").attrs, attrs["mask_attrs"])
    for name, mask in attrs["masks"].items():
        dataset = f.create_dataset(f"mask/{name}", data=decode_value(mask["value"]))
        write_attrs(dataset.attrs, mask["attrs"])


def _restore(
    path: str,
    spec: dict,
    data: dict[str, zarr.Array],
    kept: zarr.Group,
    window: slice,
    restored: dict[str, np.ndarray],
) -> np.ndarray:
    """One demo dataset exactly as it was in the robomimic file."""
    if f"original/{path}" in kept:
        return kept[f"original/{path}"][...]
    target = source_path_target(path)
    if target is not None:
        return data[target][window].astype(np.dtype(spec["dtype"]))
    if path.startswith("next_obs/"):
        key = path[len("next_obs/") :]
        if f"next_obs/{key}" in kept:
            return kept[f"next_obs/{key}"][...]
        return np.concatenate([restored[f"obs/{key}"][1:], kept[f"next_obs_last/{key}"][...]])
    return kept[f"extra/{path}"][...]


def _export_native(buffer: ReplayBuffer, f: h5py.File, next_obs: bool) -> None:
    """Write any dataset in robomimic's layout (no robomimic/ group to restore from)."""
    data = f.create_group("data")
    data.attrs["total"] = np.int64(buffer.n_steps)
    data.attrs["env_args"] = json.dumps(_env_args_for(buffer))
    image_types = ("rgb", "depth")
    masks = {
        name: flags
        for name, flags in buffer.episode_meta.items()
        if name.startswith(MASK_PREFIX) and flags.dtype == np.bool_
    }
    for index in range(buffer.n_episodes):
        window = buffer.episode_slice(index)
        demo = data.create_group(f"demo_{index}")
        demo.attrs["num_samples"] = np.int64(window.stop - window.start)
        for key, spec in buffer.shape_meta["obs"].items():
            values = buffer.data[key][window]
            filters = {"compression": "gzip"} if spec["type"] in image_types else {}
            chunks = {"chunks": (1, *values.shape[1:])} if filters else {}
            demo.create_dataset(f"obs/{key}", data=values, **filters, **chunks)
            if next_obs:
                shifted = np.concatenate([values[1:], values[-1:]])
                demo.create_dataset(f"next_obs/{key}", data=shifted, **filters, **chunks)
        demo.create_dataset("actions", data=buffer.data["action"][window])
        for theirs, ours in STEP_KEYS.items():
            if ours != "action" and ours in buffer.data:
                values = buffer.data[ours][window]
                demo.create_dataset(
                    theirs, data=values.astype(np.int64) if ours == "done" else values
                )
        for name, per_episode in buffer.episode_meta.items():
            if name not in masks:
                demo.attrs[name] = per_episode[index]
    for name, flags in masks.items():
        members = [f"demo_{i}" for i in np.flatnonzero(flags)]
        f.create_dataset(f"mask/{name[len(MASK_PREFIX) :]}", data=np.array(members, dtype="S"))


def _env_args_for(buffer: ReplayBuffer) -> dict:
    """robomimic's env metadata for a dataset: its own if imported from robomimic."""
    spec = buffer.env_spec
    if "robomimic_env_args" in spec:
        env_args = dict(spec["robomimic_env_args"])
    else:
        env_args = {
            "env_name": str(spec.get("id", "")),
            "type": GYM_ENV_TYPE,
            "env_kwargs": dict(spec.get("kwargs", {})),
        }
    env_args["robopolicy"] = {"env_spec": spec, "fps": buffer.fps}
    return env_args
