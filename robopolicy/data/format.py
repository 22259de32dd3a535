"""The on-disk dataset format: its name, version and the reserved names the writer and reader share.

Layout (see datasets/README.md for the full spec)::

    /                      attrs: format, format_version, fps, shape_meta, env_spec, provenance
    data/<obs key>         (N, *shape) per step; rgb uint8, one frame per chunk; low_dim float32
    data/action            (N, Da) float32
    data/sim_state         (N, S) float64, optional: raw simulator state for re-rendering
    data/reward, data/done (N,) optional
    data/sent_command      (N, C) float64, optional: deploy recordings, what reached the robot
                           (the safety layer's forwarded arm target and gripper opening)
    data/sent_forwarded    (N,) bool, optional: False where the arm got nothing that tick
    data/task_index        (N,) int64, optional: index into attrs["tasks"] (the task strings)
    meta/episode_ends      (E,) int64, cumulative end index of each episode
    meta/episode_<name>    (E,) optional per-episode scalars (e.g. mode label, seed)

``meta.attrs[PENDING_ATTR]`` marks an append in progress (the crash-safety protocol is described
in ``robopolicy.data.writer``).
"""

from __future__ import annotations

import numpy as np

FORMAT_NAME = "robopolicy-replay"
FORMAT_VERSION = 1
PENDING_ATTR = "pending_append"

# Optional per-step arrays beside the observations and the action, with their stored dtypes.
EXTRA_STEP_KEYS: dict[str, np.dtype] = {
    "sim_state": np.dtype(np.float64),
    "reward": np.dtype(np.float32),
    "done": np.dtype(np.bool_),
    "sent_command": np.dtype(np.float64),  # deploy recordings (hardware/deploy.py module doc)
    "sent_forwarded": np.dtype(np.bool_),
    # the task each step belongs to, an index into attrs["tasks"] (LeRobot's per-frame task_index)
    "task_index": np.dtype(np.int64),
}
