"""``meta/robopolicy.json``: what our dataset has and LeRobot's format has no slot for.

LeRobot's ``info.json`` is read into a fixed set of fields by newer LeRobot versions, so the
extras live in a file of their own beside it, which LeRobot ignores::

    {"format": "robopolicy-lerobot-sidecar", "version": 1,
     "env_spec": {...}, "shape_meta": {...}, "fps": 10.0,
     "lerobot_keys": {"observation.eef_pos": "eef_pos", ...},   LeRobot feature -> our key
     "has_task_index": false,          whether our dataset had data/task_index (else one task
                                       was made up for LeRobot and is not imported back)
     "episode_meta": {"seed": {"dtype": "<i8", "values": [...]}, ...},
     "provenance": {...}}

Import (``lerobot_import``) restores each of these when the file is there.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from robopolicy.data.errors import DatasetError

SIDECAR_PATH = "meta/robopolicy.json"
SIDECAR_FORMAT = "robopolicy-lerobot-sidecar"
SIDECAR_VERSION = 1


def sidecar_record(
    buffer_attrs: dict,
    fps: float,
    lerobot_keys: dict[str, str],
    has_task_index: bool,
    episode_meta: dict[str, np.ndarray],
) -> dict[str, Any]:
    return {
        "format": SIDECAR_FORMAT,
        "version": SIDECAR_VERSION,
        "env_spec": buffer_attrs.get("env_spec", {}),
        "shape_meta": buffer_attrs.get("shape_meta"),
        "fps": fps,
        "lerobot_keys": lerobot_keys,
        "has_task_index": has_task_index,
        "episode_meta": {
            name: {"dtype": values.dtype.str, "values": values.tolist()}
            for name, values in episode_meta.items()
        },
        "provenance": buffer_attrs.get("provenance", {}),
    }


def write_sidecar(root: Path, record: dict) -> None:
    (root / SIDECAR_PATH).write_text(json.dumps(record, indent=2) + "\n")


def read_sidecar(root: Path) -> dict[str, Any]:
    """The sidecar's contents (per-episode values as numpy arrays), or ``{}`` if there is none."""
    path = root / SIDECAR_PATH
    if not path.is_file():
        return {}
    try:
        record = json.loads(path.read_text())
    except ValueError as error:
        raise DatasetError(path, f"is not valid JSON ({error})") from None
    if record.get("format") != SIDECAR_FORMAT or record.get("version", 0) > SIDECAR_VERSION:
        raise DatasetError(
            path, f"expected format {SIDECAR_FORMAT!r} version <= {SIDECAR_VERSION}", "format"
        )
    record["episode_meta"] = {
        name: np.array(field["values"], dtype=np.dtype(field["dtype"]))
        for name, field in record.get("episode_meta", {}).items()
    }
    return record
