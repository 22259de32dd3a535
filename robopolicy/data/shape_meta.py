"""``shape_meta``: what each observation key and the action look like, stored in the dataset.

Layout (a plain dict, JSON-serialisable, also written in Hydra task configs)::

    {"obs": {"scene_rgb": {"shape": [96, 96, 3], "type": "rgb"},
             "eef_pos":   {"shape": [3], "type": "low_dim"}},
     "action": {"shape": [7], "hold": ["zero", "zero", "zero", "zero", "zero", "zero", "last"]}}

Shapes are per time step, as stored: images are height x width x channels (HWC), uint8.
``action.hold`` is optional: how to form the action that holds the robot still, per action
dimension, ``"zero"`` for a delta (0 holds) or ``"last"`` for an absolute target or a gripper
command (its last value holds). The sampler pads windows past an episode's end with it.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import numpy as np

from robopolicy.data.errors import DatasetError

OBS_TYPES = ("rgb", "depth", "low_dim")

# dtypes our writer stores for each observation type; the reader insists on these for our format.
STORED_DTYPES: dict[str, tuple[np.dtype, ...]] = {
    "rgb": (np.dtype(np.uint8),),
    "depth": (np.dtype(np.float32), np.dtype(np.uint16)),
    "low_dim": (np.dtype(np.float32),),
    "action": (np.dtype(np.float32),),
}


def validate_shape_meta(shape_meta: Any, where: object = "shape_meta") -> dict:
    """Check the structure of ``shape_meta`` and return a normalised deep copy (shapes as lists)."""
    if not isinstance(shape_meta, dict) and hasattr(shape_meta, "items"):
        shape_meta = {k: v for k, v in shape_meta.items()}
    if not isinstance(shape_meta, dict) or "obs" not in shape_meta or "action" not in shape_meta:
        raise DatasetError(
            where, "expected a dict with 'obs' and 'action' entries", key="shape_meta"
        )
    out: dict = {"obs": {}, "action": {}}
    obs = shape_meta["obs"]
    if not hasattr(obs, "items") or len(obs) == 0:
        raise DatasetError(where, "'obs' must map at least one key to {shape, type}", "shape_meta")
    for key, spec in obs.items():
        obs_type = spec.get("type", "low_dim") if hasattr(spec, "get") else None
        if obs_type not in OBS_TYPES:
            raise DatasetError(
                where, f"type {obs_type!r} is not one of {OBS_TYPES}", f"shape_meta.obs.{key}"
            )
        shape = _shape(spec, where, f"shape_meta.obs.{key}")
        if obs_type == "rgb" and (len(shape) != 3 or shape[2] not in (1, 3, 4)):
            raise DatasetError(
                where,
                f"rgb shape must be [H, W, C] with C in 1/3/4, got {shape}",
                f"shape_meta.obs.{key}",
            )
        out["obs"][str(key)] = {"shape": shape, "type": obs_type}
    out["action"] = {"shape": _shape(shape_meta["action"], where, "shape_meta.action")}
    hold = shape_meta["action"].get("hold")
    if hold is not None:
        out["action"]["hold"] = _hold(hold, out["action"]["shape"], where)
    return out


HOLD_KINDS = ("zero", "last")  # how each action dimension is held: 0 (a delta) or its last value


def _hold(hold: Any, action_shape: list[int], where: object) -> list[str]:
    hold = [str(kind) for kind in hold] if isinstance(hold, (list, tuple)) else hold
    if (
        not isinstance(hold, list)
        or len(action_shape) != 1
        or len(hold) != action_shape[0]
        or any(kind not in HOLD_KINDS for kind in hold)
    ):
        raise DatasetError(
            where,
            f"expected one of {HOLD_KINDS} per action dimension ({action_shape}), got {hold!r}",
            "shape_meta.action.hold",
        )
    return hold


def _shape(spec: Any, where: object, key: str) -> list[int]:
    shape = spec.get("shape") if hasattr(spec, "get") else None
    if (
        not isinstance(shape, Sequence)
        or isinstance(shape, str)
        or not all(
            isinstance(d, (int, np.integer)) and not isinstance(d, bool) and d > 0 for d in shape
        )
    ):
        raise DatasetError(where, f"'shape' must be a list of positive ints, got {shape!r}", key)
    return [int(d) for d in shape]


def obs_keys(shape_meta: dict, obs_type: str | None = None) -> list[str]:
    """Observation keys in ``shape_meta`` order, optionally only those of one type."""
    return [k for k, v in shape_meta["obs"].items() if obs_type is None or v["type"] == obs_type]


def infer_shape_meta(arrays: dict[str, Any], action_key: str = "action") -> dict:
    """Guess ``shape_meta`` for a store written without one (e.g. a diffusion_policy dataset).

    4-D arrays with 1, 3 or 4 trailing channels are images ('rgb'); everything else is 'low_dim'.
    """
    meta: dict = {"obs": {}, "action": {}}
    for key, arr in arrays.items():
        shape = [int(d) for d in arr.shape[1:]]
        if key == action_key:
            meta["action"] = {"shape": shape}
        elif len(shape) == 3 and shape[2] in (1, 3, 4):
            meta["obs"][key] = {"shape": shape, "type": "rgb"}
        else:
            meta["obs"][key] = {"shape": shape, "type": "low_dim"}
    return copy.deepcopy(meta)
