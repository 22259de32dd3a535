"""Reading a gymnasium vector env's step info per env: the one place that knows its layout.

A vector env merges its envs' info dicts into arrays, ``info[key][j]``, with a mask
``info["_" + key]`` saying which envs reported the key. With ``SAME_STEP`` autoreset (the chunked
RL envs, robopolicy/rl/chunk_env.py) an env whose episode ended is reset within the step, so
``info`` holds its new episode's reset info and the ended episode's info is in
``info["final_info"]``, merged the same way; with gymnasium's default ``NEXT_STEP`` autoreset
(evaluation rollouts) ``info`` is the ended step's own. ``step_values`` gives, per env, the value
for the step just taken in both modes.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def step_values(
    info: dict, key: str, n_envs: int, default: Any, ended: np.ndarray | None = None
) -> np.ndarray:
    """``(n_envs,)`` values of ``info[key]`` for the step just taken, ``default`` where an env did
    not report it; for the envs in ``ended`` (same-step autoreset) from ``info["final_info"]``."""
    values = _merged(info, key, n_envs, default)
    if ended is not None and ended.any():
        final = _merged(info["final_info"], key, n_envs, default)
        values = np.where(ended, final, values)
    return values


def _merged(info: dict, key: str, n_envs: int, default: Any) -> np.ndarray:
    if key not in info:
        return np.full(n_envs, default)
    values = np.asarray(info[key])
    present = info.get(f"_{key}")
    if present is None:
        return values
    return np.where(np.asarray(present, bool), values, default)
