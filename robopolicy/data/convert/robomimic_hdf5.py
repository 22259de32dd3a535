"""robomimic HDF5 <-> our zarr dataset, in both directions.

robomimic's layout (what its ``SequenceDataset`` and file utilities read)::

    data/                      attrs: env_args (JSON string), total (number of steps)
    data/demo_<i>/             attrs: num_samples, often model_file (the MJCF XML)
        obs/<key>              (T, ...) images uint8 HWC, low-dim usually float64
        next_obs/<key>         (T, ...) optional: the observation after each action
        actions, rewards, dones, states
    mask/<filter>              optional: arrays of demo names (e.g. train, valid)

**Import** (``robomimic_to_zarr``). Demos become episodes in the order of their integer index.
``obs/<key>`` becomes ``data/<key>`` (uint8 HWC images with 1/3/4 channels are ``rgb``, a key
naming ``depth`` with one channel is ``depth``, the rest ``low_dim``); ``actions``, ``rewards``,
``dones`` and ``states`` become ``action``, ``reward``, ``done`` and ``sim_state``. ``env_args``
goes verbatim into ``env_spec["robomimic_env_args"]``; fps is ``env_kwargs.control_freq`` unless
given. Each mask becomes a boolean per-episode field ``mask_<filter>``, and a numeric scalar
attribute that every demo has (other than ``num_samples``) a per-episode field of its name.

Everything else is kept in a zarr group ``robomimic/`` beside ``data/`` and ``meta/`` (the reader
ignores it): file, ``data`` and mask attributes, the masks, each dataset's dtype and compression,
and per demo (``robomimic/demos/<name>``) every attribute, ``next_obs`` and any other dataset
(``extra/<path>``). ``next_obs/<key>`` that is ``obs/<key>`` shifted by one step (as robomimic
writes it) is stored as its last row only (``next_obs_last/<key>``), otherwise in full.

Precision. We store low-dim obs, actions and rewards as float32, dones as bool. Where that cast
changes a value (float64 that float32 cannot represent, dones other than 0/1) the importer logs a
warning naming the key and keeps the original in ``robomimic/demos/<name>/original/<path>``:
training reads the float32 copy, export restores the exact values. Import then export gives back
identical arrays, dtypes and attributes (and compression filters; not HDF5 chunk shapes).

**Export** (``zarr_to_robomimic``, in ``robomimic_export.py``). A dataset that carries
``robomimic/`` (and has not been appended to since) is rebuilt from it exactly. Any other dataset
is written in robomimic's layout: ``demo_<i>`` with ``num_samples``, obs and actions in their
stored dtypes, rewards, dones (int64 0/1, as robomimic writes them) and states where present,
``mask/<name>`` from boolean per-episode fields ``mask_<name>``, other per-episode fields as demo
attributes, and ``env_args`` from ``env_spec`` (robomimic's own dict if it came from robomimic,
else a gym-type entry), with ``env_spec`` and fps under ``env_args["robopolicy"]`` for a later
import. Such datasets have no ``next_obs``; ``next_obs=True`` synthesises it (obs shifted by one
step, last step repeated), since robomimic's ``SequenceDataset`` loads it unless
``load_next_obs=False``."""

from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path

import h5py
import numpy as np
import zarr

from robopolicy.data.convert.common import exact_cast, staged_output
from robopolicy.data.convert.hdf5_values import (
    encode_attrs,
    encode_value,
)
from robopolicy.data.errors import DatasetError
from robopolicy.data.format import EXTRA_STEP_KEYS
from robopolicy.data.shape_meta import STORED_DTYPES
from robopolicy.data.store import AtomicLocalStore
from robopolicy.data.writer import DatasetWriter, default_provenance

log = logging.getLogger(__name__)

SOURCE_GROUP = "robomimic"
SOURCE_FORMAT = "robomimic-hdf5"
STEP_KEYS = {"actions": "action", "rewards": "reward", "dones": "done", "states": "sim_state"}
DEMO_NAME = re.compile(r"demo_(\d+)")
GYM_ENV_TYPE = 2  # robomimic.envs.env_base.EnvType.GYM_TYPE
MASK_PREFIX = "mask_"


# ================================================================================= import
def robomimic_to_zarr(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    fps: float | None = None,
    overwrite: bool = False,
) -> Path:
    """Convert the robomimic HDF5 file ``src`` into our dataset at ``dst`` (``*.zip`` allowed)."""
    src, dst = Path(src), Path(dst)
    with _open_hdf5(src) as f, staged_output(dst, overwrite) as staging:
        demos = _sorted_demos(f, src)
        layout = _demo_layout(f, src, demos)
        env_args = _read_env_args(f, src)
        masks = _read_masks(f, src)
        fields = _episode_fields(f, demos)
        writer = DatasetWriter.create(
            staging,
            _shape_meta(layout, src),
            fps=_fps(env_args, fps, src),
            env_spec=_env_spec(env_args),
            provenance={**default_provenance(SOURCE_FORMAT), "source_path": str(src.resolve())},
        )
        source = zarr.open_group(AtomicLocalStore(staging), mode="r+", zarr_format=2)
        demos_group = source.create_group(f"{SOURCE_GROUP}/demos")
        inexact: dict[str, list[str]] = {}
        for name in demos:
            steps, kept = _read_demo(f["data"][name], layout, src, name, inexact)
            meta = {field: f["data"][name].attrs[field] for field in fields}
            meta.update({f"{MASK_PREFIX}{m}": name in members for m, members in masks.items()})
            writer.append_episode(steps, episode_meta=meta)
            _write_kept(demos_group.create_group(name), kept, f["data"][name], src)
        writer.close()
        source[SOURCE_GROUP].attrs.put(
            {
                "format": SOURCE_FORMAT,
                "demos": demos,
                "n_steps": writer.n_steps,
                "layout": layout,
                "file_attrs": _encode_attrs(f, src, "/"),
                "data_attrs": _encode_attrs(f["data"], src, "data"),
                "mask_attrs": _encode_attrs(f["mask"], src, "mask") if "mask" in f else None,
                "masks": {
                    mask: {
                        "value": encode_value(f["mask"][mask][()]),
                        "attrs": _encode_attrs(f["mask"][mask], src, f"mask/{mask}"),
                    }
                    for mask in masks
                },
            }
        )
        for path, examples in inexact.items():
            log.warning(
                f"{src}: {path}: storing it as {_stored_dtype(path, layout[path])} changes values "
                f"in {len(examples)} demo(s) (e.g. {examples[0]}); training reads the rounded "
                "copy, export restores the exact values kept in robomimic/"
            )
    return dst


def _open_hdf5(path: Path) -> h5py.File:
    if not path.exists():
        raise DatasetError(path, "no such file")
    try:
        return h5py.File(path, "r")
    except OSError as error:
        raise DatasetError(path, f"cannot open as HDF5 ({error})") from None


def _sorted_demos(f: h5py.File, src: Path) -> list[str]:
    unexpected = [name for name in f if name not in ("data", "mask")]
    if "data" not in f or not isinstance(f["data"], h5py.Group) or unexpected:
        raise DatasetError(
            src, f"expected robomimic's data/ and optional mask/ groups, found {list(f)}", "/"
        )
    indexed = []
    for name, item in f["data"].items():
        match = DEMO_NAME.fullmatch(name)
        if match is None or not isinstance(item, h5py.Group):
            raise DatasetError(src, "expected only demo_<i> groups in data/", f"data/{name}")
        indexed.append((int(match.group(1)), name))
    if not indexed:
        raise DatasetError(src, "holds no demos", "data")
    return [name for _, name in sorted(indexed)]


def _datasets(group: h5py.Group) -> dict[str, h5py.Dataset]:
    found: dict[str, h5py.Dataset] = {}
    group.visititems(
        lambda path, item: found.update({path: item}) if isinstance(item, h5py.Dataset) else None
    )
    return found


def _demo_layout(f: h5py.File, src: Path, demos: list[str]) -> dict[str, dict]:
    """Each dataset path inside a demo: dtype, per-step shape and compression (same in all)."""
    first = _datasets(f["data"][demos[0]])
    if "actions" not in first:
        raise DatasetError(src, "missing", f"data/{demos[0]}/actions")
    if not any(path.startswith("obs/") for path in first):
        raise DatasetError(
            src,
            "has no obs/ datasets (a states-only file: run robomimic's dataset_states_to_obs.py)",
            f"data/{demos[0]}",
        )
    layout = {}
    for path, dataset in first.items():
        if path.count("/") > 1 and path.split("/")[0] in ("obs", "next_obs"):
            raise DatasetError(
                src, "nested obs groups are not supported", f"data/{demos[0]}/{path}"
            )
        layout[path] = {
            "dtype": dataset.dtype.str,
            "shape": list(dataset.shape[1:]),
            "compression": dataset.compression,
            "compression_opts": dataset.compression_opts,
            "shuffle": bool(dataset.shuffle),
        }
        if dataset.dtype.kind not in "biuf":
            raise DatasetError(src, f"unsupported dtype {dataset.dtype}", f"data/{demos[0]}/{path}")
    for name in demos[1:]:
        datasets = _datasets(f["data"][name])
        if set(datasets) != set(layout):
            raise DatasetError(
                src,
                f"holds {sorted(datasets)}, unlike {demos[0]} which holds {sorted(layout)}",
                f"data/{name}",
            )
        for path, dataset in datasets.items():
            spec = layout[path]
            if dataset.dtype.str != spec["dtype"] or list(dataset.shape[1:]) != spec["shape"]:
                raise DatasetError(
                    src,
                    f"{dataset.dtype} {dataset.shape[1:]} differs from {demos[0]}'s "
                    f"{spec['dtype']} {tuple(spec['shape'])}",
                    f"data/{name}/{path}",
                )
    return layout


def _obs_type(key: str, shape: list[int], dtype: np.dtype) -> str:
    if len(shape) == 3 and shape[2] in (1, 3, 4) and dtype == np.uint8:
        return "rgb"
    if len(shape) == 3 and shape[2] == 1 and "depth" in key:
        return "depth"
    return "low_dim"


def _shape_meta(layout: dict[str, dict], src: Path) -> dict:
    obs = {}
    for path, spec in layout.items():
        if path.startswith("obs/"):
            key = path[len("obs/") :]
            if key == "action" or key in EXTRA_STEP_KEYS:
                raise DatasetError(src, f"obs key {key!r} clashes with our data/{key}", path)
            kind = _obs_type(key, spec["shape"], np.dtype(spec["dtype"]))
            obs[key] = {"shape": spec["shape"], "type": kind}
    return {"obs": obs, "action": {"shape": layout["actions"]["shape"]}}


def source_path_target(path: str) -> str | None:
    """The data/ key an HDF5 demo path is stored under, or None if it is kept in robomimic/."""
    if path.startswith("obs/"):
        return path[len("obs/") :]
    return STEP_KEYS.get(path)


def _stored_dtype(path: str, spec: dict) -> np.dtype:
    dtype = np.dtype(spec["dtype"])
    if path.startswith("obs/"):
        allowed = STORED_DTYPES[_obs_type(path[len("obs/") :], spec["shape"], dtype)]
    elif path == "actions":
        allowed = STORED_DTYPES["action"]
    else:
        allowed = (EXTRA_STEP_KEYS[STEP_KEYS[path]],)
    return dtype if dtype in allowed else allowed[0]


def _read_demo(
    demo: h5py.Group, layout: dict[str, dict], src: Path, name: str, inexact: dict
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(steps for the writer, arrays to keep in robomimic/) of one demo."""
    raw = {path: demo[path][()] for path in layout}
    length = raw["actions"].shape[0] if raw["actions"].ndim else 0
    steps, kept = {}, {}
    for path, values in raw.items():
        target = source_path_target(path)
        is_step_array = target is not None or path.startswith("next_obs/")
        if is_step_array and (values.ndim == 0 or values.shape[0] != length or length == 0):
            raise DatasetError(
                src,
                f"has shape {values.shape}, expected {length} >= 1 steps",
                f"data/{name}/{path}",
            )
        if target is not None:
            steps[target], example = exact_cast(values, _stored_dtype(path, layout[path]))
            if example is not None:
                kept[f"original/{path}"] = values
                inexact.setdefault(path, []).append(f"{example} in {name}")
        elif path.startswith("next_obs/"):
            key = path[len("next_obs/") :]
            obs = raw.get(f"obs/{key}")
            shifted = (
                obs is not None
                and obs.dtype == values.dtype
                and obs.shape == values.shape
                and np.array_equal(values[:-1], obs[1:])
            )
            if shifted:
                kept[f"next_obs_last/{key}"] = values[-1:]
            else:
                kept[path] = values
        else:
            kept[f"extra/{path}"] = values
    return steps, kept


def _write_kept(group: zarr.Group, kept: dict[str, np.ndarray], demo: h5py.Group, src: Path):
    for path, values in kept.items():
        array = group.create_array(path, shape=values.shape, dtype=values.dtype)
        array[...] = values
    attrs = {".": _encode_attrs(demo, src, demo.name)}
    demo.visititems(lambda path, item: attrs.update({path: _encode_attrs(item, src, path)}))
    group.attrs["h5_attrs"] = {path: tagged for path, tagged in attrs.items() if tagged}


def _encode_attrs(item: h5py.HLObject, src: Path, where: str) -> dict:
    try:
        return encode_attrs(item.attrs)
    except TypeError as error:
        raise DatasetError(src, f"cannot keep an attribute: {error}", where) from None


def _read_env_args(f: h5py.File, src: Path) -> dict | None:
    if "env_args" not in f["data"].attrs:
        return None
    try:
        env_args = json.loads(f["data"].attrs["env_args"])
    except (TypeError, ValueError) as error:
        raise DatasetError(src, f"is not valid JSON ({error})", "data.attrs.env_args") from None
    if not isinstance(env_args, dict):
        raise DatasetError(src, "must be a JSON object", "data.attrs.env_args")
    return env_args


def _read_masks(f: h5py.File, src: Path) -> dict[str, set[str]]:
    if "mask" not in f:
        return {}
    masks = {}
    for name, item in f["mask"].items():
        if not isinstance(item, h5py.Dataset) or item.ndim != 1:
            raise DatasetError(src, "expected a 1-D array of demo names", f"mask/{name}")
        masks[name] = {v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in item[()]}
    return masks


def _episode_fields(f: h5py.File, demos: list[str]) -> list[str]:
    """Demo attributes that are numeric scalars in every demo, except ``num_samples``."""

    def numeric(attrs: h5py.AttributeManager) -> set[str]:
        return {k for k, v in attrs.items() if isinstance(v, (np.number, np.bool_))}

    common = set.intersection(*(numeric(f["data"][name].attrs) for name in demos))
    return sorted(common - {"num_samples"})


def _fps(env_args: dict | None, fps: float | None, src: Path) -> float:
    if fps is not None:
        return float(fps)
    env_args = env_args or {}
    recorded = env_args.get("robopolicy", {}).get("fps") or env_args.get("env_kwargs", {}).get(
        "control_freq"
    )
    if recorded is None:
        raise DatasetError(
            src, "no env_kwargs.control_freq to take fps from; pass --fps", "data.attrs.env_args"
        )
    return float(recorded)


def _env_spec(env_args: dict | None) -> dict:
    if env_args is None:
        return {}
    if "env_spec" in env_args.get("robopolicy", {}):
        return dict(env_args["robopolicy"]["env_spec"])
    return {"id": env_args.get("env_name"), "source": "robomimic", "robomimic_env_args": env_args}
