"""LeRobot features <-> our keys and ``shape_meta``, and parquet columns <-> numpy arrays.

Default mapping (the same both ways, so an export imports back under the same names)::

    LeRobot feature                     ours
    observation.images.<name> (video)   <name>        rgb  (H, W, 3) uint8
    observation.<name>                  <name>        low_dim, float32
    action                              action
    next.reward / next.done             reward / done
    sim_state, sent_command, ...        the same name (our optional step arrays)
    task_index (every frame)            task_index    int64, with the strings in attrs["tasks"]
    any other numeric feature           its LeRobot name, low_dim

``timestamp``, ``frame_index``, ``episode_index`` and ``index`` are LeRobot's bookkeeping and are
rebuilt on export. ``renames`` (``{source key: destination key}``, from ``rename=["SRC=DST"]``)
replaces the default for the keys it names: LeRobot names on import, ours on export. A feature
listed in ``drop`` is skipped; a string feature must be (zarr stores numbers only).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from robopolicy.data.errors import DatasetError
from robopolicy.data.format import EXTRA_STEP_KEYS

IMAGES_PREFIX = "observation.images."
OBS_PREFIX = "observation."
# LeRobot's names for our per-step arrays (the rest of EXTRA_STEP_KEYS keep their own name)
LEROBOT_NAMES = {"action": "action", "reward": "next.reward", "done": "next.done"}
TASK_INDEX = "task_index"  # LeRobot's per-frame task column and our per-step array of it
# Columns LeRobot adds to every frame: bookkeeping, rebuilt on export, not features to import.
DEFAULT_BOOKKEEPING = ("timestamp", "frame_index", "episode_index", "index", TASK_INDEX)
CAMERA_DTYPES = ("video", "image")
NUMERIC_DTYPES = ("float32", "float64", "int64", "int32", "int16", "int8", "uint8", "bool")


@dataclass(frozen=True)
class Mapped:
    """One LeRobot feature and where it goes in our dataset."""

    lerobot: str
    ours: str
    role: str  # "rgb" | "low_dim" | "action" | "extra"
    shape: tuple[int, ...]  # per step, as stored on our side (images HWC)


def parse_rename(item: str) -> tuple[str, str]:
    """``"SRC=DST"`` as ``(SRC, DST)``; a ``ValueError`` otherwise (argparse reports it)."""
    source, sep, target = item.partition("=")
    if not sep or not source or not target:
        raise ValueError(f"expected SRC=DST, got {item!r}")
    return source, target


def image_shape(feature: dict, where: Path, key: str) -> tuple[int, int, int]:
    """A camera feature's (H, W, C): LeRobot writes HWC, some converted datasets CHW."""
    shape, names = list(feature.get("shape", [])), feature.get("names") or []
    if len(shape) == 3 and list(names)[:1] in (["channels"], ["channel"]):
        shape = [shape[1], shape[2], shape[0]]
    if len(shape) != 3 or shape[2] != 3:
        raise DatasetError(where, f"camera shape {feature.get('shape')}: expected [H, W, 3]", key)
    return int(shape[0]), int(shape[1]), int(shape[2])


def default_ours(key: str) -> str:
    """Our name for a LeRobot feature (the table above)."""
    for ours, theirs in LEROBOT_NAMES.items():
        if key == theirs:
            return ours
    if key.startswith(IMAGES_PREFIX):
        return key[len(IMAGES_PREFIX) :]
    if key.startswith(OBS_PREFIX):
        return key[len(OBS_PREFIX) :]
    return key


def default_lerobot(key: str, role: str) -> str:
    """LeRobot's name for one of our keys (the inverse of ``default_ours``)."""
    if role == "rgb":
        return IMAGES_PREFIX + key
    if role == "low_dim":
        return OBS_PREFIX + key
    return LEROBOT_NAMES.get(key, key)


def plan_import(
    features: dict[str, dict], renames: dict[str, str], drop: set[str], info_path: Path
) -> list[Mapped]:
    """Where each LeRobot feature goes, checked: known dtypes, no clashes, renames that apply."""
    unknown = sorted((set(renames) | drop) - set(features))
    if unknown:
        raise DatasetError(
            info_path, f"no such feature to rename or drop (has {sorted(features)})", unknown[0]
        )
    plan, taken = [], {}
    for key, feature in features.items():
        if key in drop or key in DEFAULT_BOOKKEEPING:
            continue
        dtype = feature.get("dtype")
        ours = renames.get(key, default_ours(key))
        if dtype in CAMERA_DTYPES:
            plan.append(Mapped(key, ours, "rgb", image_shape(feature, info_path, key)))
        elif dtype in NUMERIC_DTYPES:
            shape = tuple(int(d) for d in feature.get("shape", []))
            role = (
                "action" if ours == "action" else "extra" if ours in EXTRA_STEP_KEYS else "low_dim"
            )
            if role == "extra" and EXTRA_STEP_KEYS[ours].kind in "fb" and shape == (1,):
                shape = ()  # reward, done: one value per step, stored (N,) on our side
            plan.append(Mapped(key, ours, role, shape))
        else:
            raise DatasetError(
                info_path,
                f"dtype {dtype!r} cannot be stored in zarr; skip it with drop=[{key}]",
                f"features.{key}",
            )
        if ours in taken or ours == TASK_INDEX:
            raise DatasetError(
                info_path, f"maps to {ours!r} like {taken.get(ours, TASK_INDEX)}; rename one", key
            )
        taken[ours] = key
    if "action" not in taken:
        raise DatasetError(
            info_path, 'no feature maps to our action (rename=["KEY=action"])', "features"
        )
    return plan


def shape_meta_for(plan: list[Mapped]) -> dict:
    obs = {
        m.ours: {"shape": list(m.shape), "type": m.role}
        for m in plan
        if m.role in ("rgb", "low_dim")
    }
    action = next(m for m in plan if m.role == "action")
    return {"obs": obs, "action": {"shape": list(action.shape)}}


def column_values(table: pa.Table, key: str, shape: tuple[int, ...], path: Path) -> np.ndarray:
    """A numeric parquet column as ``(rows, *shape)``: LeRobot writes a shape-[1] feature as a
    plain column, a vector as a (fixed-size) list, a 2-D feature as a list of lists."""
    if key not in table.column_names:
        raise DatasetError(path, f"has no column {key} (a feature in info.json)")
    column = table[key].combine_chunks()
    while pa.types.is_list(column.type) or pa.types.is_fixed_size_list(column.type):
        column = column.flatten()
    values = column.to_numpy(zero_copy_only=False)
    rows = table.num_rows
    per_row = int(np.prod(shape)) if shape else 1
    if values.size != rows * per_row:
        raise DatasetError(
            path,
            f"{values.size // max(rows, 1)} values per frame, "
            f"info.json says shape {list(shape) or [1]}",
            key,
        )
    return values.reshape(rows, *shape)
