"""Per-key normalization of observations and actions, stored in the policy's state dict.

Each key has a mode:

- ``"limits"``: min-max over the training data to [-1, 1] per dimension;
- ``"gaussian"``: zero mean, unit standard deviation per dimension;
- ``"image"``: uint8 0..255 to [-1, 1] (a fixed map, no statistics).

Both fitted modes are one affine map per dimension, ``y = (x - loc) / scale``, inverted by
``x = y * scale + loc``; for limits ``loc`` is the mid-range and ``scale`` half the range, for
gaussian the mean and standard deviation. A dimension whose range (limits) or standard deviation
(gaussian) is below ``eps`` is constant in the data: its ``loc`` is set to its minimum and its
``scale`` to 1, so the constant maps to exactly 0 and 0 maps back to exactly the constant, and no
division by a tiny number ever amplifies noise.

State. ``loc``, ``scale``, a ``fitted`` flag and the mode (as an integer code) are buffers of one
submodule per key, so they travel in the policy's state dict (``normalizer.stats.<key>.loc``...):
a checkpoint carries its own normalization, and a normalizer that was neither fit nor loaded
refuses to normalize rather than silently passing data through.

Construction. The keys, modes and per-step shapes are given at construction (the policy knows
them from ``shape_meta``: see ``from_shape_meta``), so a policy can be built and then loaded from a
checkpoint without fitting. Loading a state dict whose keys, modes or shapes differ raises one
``ValueError`` naming the first key at fault, rather than torch's list of size mismatches.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
from torch import nn

from robopolicy.data.reader import ReplayBuffer

MODES = ("limits", "gaussian", "image")
_MODE_CODE = {mode: code for code, mode in enumerate(MODES)}


class _KeyStats(nn.Module):
    """The buffers of one key."""

    def __init__(self, mode: str, shape: Sequence[int]):
        super().__init__()
        stat_shape = () if mode == "image" else tuple(int(d) for d in shape)
        self.register_buffer("mode", torch.tensor(_MODE_CODE[mode], dtype=torch.int64))
        self.register_buffer("fitted", torch.tensor(mode == "image"))
        self.register_buffer("loc", torch.zeros(stat_shape))
        self.register_buffer("scale", torch.ones(stat_shape))


class Normalizer(nn.Module):
    """Normalize and unnormalize dicts of tensors, per key. See the module docstring."""

    def __init__(self, specs: Mapping[str, tuple[str, Sequence[int]]], eps: float = 1e-6):
        """``specs`` maps each key to ``(mode, per-step shape)``, e.g.
        ``{"action": ("limits", [7]), "agentview_rgb": ("image", [96, 96, 3])}``."""
        super().__init__()
        if not specs:
            raise ValueError("specs must name at least one key")
        for key, spec in specs.items():
            if not isinstance(key, str) or not key or "." in key:
                raise ValueError(f"normalizer key {key!r}: must be a non-empty str without '.'")
            if not isinstance(spec, (tuple, list)) or len(spec) != 2 or spec[0] not in MODES:
                raise ValueError(f"normalizer key {key!r}: spec must be (mode in {MODES}, shape)")
        self.eps = float(eps)
        self.shapes = {key: tuple(int(d) for d in shape) for key, (_, shape) in specs.items()}
        self.modes = {key: mode for key, (mode, _) in specs.items()}
        self.stats = nn.ModuleDict({key: _KeyStats(*spec) for key, spec in specs.items()})

    @classmethod
    def from_shape_meta(
        cls,
        shape_meta: dict,
        low_dim_mode: str = "limits",
        action_mode: str = "limits",
        eps: float = 1e-6,
    ) -> Normalizer:
        """rgb keys get "image", other obs keys ``low_dim_mode``, "action" ``action_mode``."""
        specs = {
            key: ("image" if spec["type"] == "rgb" else low_dim_mode, spec["shape"])
            for key, spec in shape_meta["obs"].items()
        }
        specs["action"] = (action_mode, shape_meta["action"]["shape"])
        return cls(specs, eps=eps)

    # ----------------------------------------------------------------------------- fitting
    def fit(self, data: Mapping[str, np.ndarray | torch.Tensor]) -> Normalizer:
        """Set the statistics of every fitted-mode key from ``data[key]`` of shape (N, *shape)."""
        for key, mode in self.modes.items():
            if mode == "image":
                continue
            if key not in data:
                raise ValueError(f"normalizer key {key!r}: no data given to fit it")
            values = np.asarray(data[key], dtype=np.float64)
            if values.ndim == 0 or values.shape[1:] != self.shapes[key] or len(values) == 0:
                raise ValueError(
                    f"normalizer key {key!r}: expected data of shape (N >= 1, "
                    f"{', '.join(map(str, self.shapes[key]))}), got {values.shape}"
                )
            low, high = values.min(axis=0), values.max(axis=0)
            if mode == "limits":
                loc, scale = (high + low) / 2, (high - low) / 2
                constant = high - low < self.eps
            else:
                loc, scale = values.mean(axis=0), values.std(axis=0)
                constant = scale < self.eps
            loc = np.where(constant, low, loc)
            scale = np.where(constant, 1.0, scale)
            stats = self.stats[key]
            stats.loc.copy_(torch.as_tensor(loc, dtype=stats.loc.dtype))
            stats.scale.copy_(torch.as_tensor(scale, dtype=stats.scale.dtype))
            stats.fitted.fill_(True)
        return self

    def fit_replay_buffer(self, replay_buffer: ReplayBuffer, episodes: Sequence[int]) -> Normalizer:
        """Fit on the steps of ``episodes`` only (pass the sampler's training episodes)."""
        episodes = np.asarray(episodes, dtype=np.int64)
        if episodes.size == 0:
            raise ValueError("episodes must name at least one training episode to fit on")
        slices = [replay_buffer.episode_slice(episode) for episode in episodes.tolist()]
        rows = np.concatenate([np.arange(s.start, s.stop) for s in slices])
        data = {}
        for key, mode in self.modes.items():
            if mode == "image":
                continue
            if key not in replay_buffer.data:
                raise ValueError(f"normalizer key {key!r}: not an array of {replay_buffer.path}")
            data[key] = replay_buffer.read_all(key)[rows]
        return self.fit(data)

    # ----------------------------------------------------------------------------- applying
    def normalize(self, data: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """``{key: normalized}`` for each key of ``data``; images become float in [-1, 1]."""
        out = {}
        for key, value in data.items():
            stats, mode = self._stats(key, value)
            if mode == "image":
                out[key] = value.to(stats.loc.dtype) / 127.5 - 1.0
            else:
                out[key] = (value - stats.loc) / stats.scale
        return out

    def unnormalize(self, data: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The inverse of ``normalize`` (images come back as float 0..255)."""
        out = {}
        for key, value in data.items():
            stats, mode = self._stats(key, value)
            if mode == "image":
                out[key] = (value + 1.0) * 127.5
            else:
                out[key] = value * stats.scale + stats.loc
        return out

    def _stats(self, key: str, value: torch.Tensor) -> tuple[_KeyStats, str]:
        if key not in self.stats:
            raise ValueError(f"normalizer key {key!r}: unknown (has {list(self.stats)})")
        stats, mode = self.stats[key], self.modes[key]
        if not bool(stats.fitted):
            raise ValueError(
                f"normalizer key {key!r}: no statistics; fit the normalizer or load a state dict"
            )
        shape = self.shapes[key]
        if tuple(value.shape[value.ndim - len(shape) :]) != shape:
            raise ValueError(
                f"normalizer key {key!r}: expected trailing shape {shape}, got {tuple(value.shape)}"
            )
        return stats, mode

    # ----------------------------------------------------------------------------- loading
    def _load_from_state_dict(
        self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
    ):
        """Check every key's mode and shapes before torch copies buffers (one clear error).

        torch calls this on the normalizer before its children, with the whole state dict.
        """
        inner = prefix + "stats."
        given = {name[len(inner) :].split(".")[0] for name in state_dict if name.startswith(inner)}
        if not given and not strict:
            return  # a non-strict partial load (e.g. backbone weights only) leaves the stats be
        extra = sorted(given - set(self.stats))
        if extra:
            raise ValueError(
                f"normalizer key {extra[0]!r}: in the state dict but not in this normalizer "
                f"(built for {list(self.stats)})"
            )
        for key, stats in self.stats.items():
            if key not in given:
                raise ValueError(
                    f"normalizer key {key!r}: missing from the state dict (it has {sorted(given)})"
                )
            mode = state_dict.get(f"{inner}{key}.mode")
            if mode is not None and int(mode) != int(stats.mode):
                saved = MODES[int(mode)] if 0 <= int(mode) < len(MODES) else int(mode)
                raise ValueError(
                    f"normalizer key {key!r}: state dict has mode {saved!r}, "
                    f"this normalizer {self.modes[key]!r}"
                )
            for name in ("loc", "scale"):
                saved = state_dict.get(f"{inner}{key}.{name}")
                own = getattr(stats, name)
                if saved is not None and tuple(saved.shape) != tuple(own.shape):
                    raise ValueError(
                        f"normalizer key {key!r}: state dict {name} has shape "
                        f"{tuple(saved.shape)}, this normalizer expects {tuple(own.shape)}"
                    )
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )
