"""The state of a training run as one checkpoint: every stateful part, the RNGs, and run facts.

Every training loop (behaviour cloning, chain PPO for DPPO and ReinFlow, DSRL) builds a
``RunState`` from its parts, each anything with ``state_dict()`` / ``load_state_dict(state)``
(modules, optimizers, schedulers, the data loader, replay and reward-scaling buffers, counters;
``StateOf`` adapts a getter/setter pair, e.g. a torch generator), and from ``facts``: JSON values
written into every checkpoint and never restored (the env spec, the resolved config, the dataset
or base checkpoint). ``save`` writes parts, facts, the global RNG states, the latest metrics
and the run's progress (``step``: optimizer steps, PPO iterations or env steps, the loop's own
unit) into one safetensors file (robopolicy/training/checkpoint.py: no pickle, atomic rename);
``restore`` loads every part back, in order, then the RNGs, so the resumed run continues exactly
as the uninterrupted one. ``snapshot(..., parts=...)`` keeps only some parts: the best-k
checkpoints of behaviour cloning hold the policy and EMA weights (with the normalizer, in the
policy's state) and the facts, what eval, deploy and RL fine-tuning load; the optimizer and the
rest that only resume needs are in ``latest`` alone.

A checkpoint whose parts do not fit (another algorithm's, another policy's) is refused with one
``CheckpointError`` line naming the part.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

from omegaconf import DictConfig, OmegaConf

from robopolicy.training.checkpoint import (
    CheckpointError,
    load_checkpoint,
    remove_orphan_temporaries,
    save_checkpoint,
)
from robopolicy.training.rng import rng_state, set_rng_state

RNG_KEY = "rng"  # where the global RNG states sit in every training checkpoint
RESERVED_KEYS = (RNG_KEY, "metrics", "step")  # written by ``snapshot`` itself


class Stateful(Protocol):
    def state_dict(self) -> Any: ...

    def load_state_dict(self, state: Any) -> Any: ...


class StateOf:
    """A ``Stateful`` from a getter and a setter (for objects without ``state_dict``)."""

    def __init__(self, get: Callable[[], Any], set: Callable[[Any], Any]):
        self.get, self.set = get, set

    def state_dict(self) -> Any:
        return self.get()

    def load_state_dict(self, state: Any) -> None:
        self.set(state)


class Counters(dict):
    """A run's counters (steps, env steps, elapsed seconds, ...), a part like any other.

    Restoring keeps the keys this run counts; a counter missing from an older checkpoint keeps
    its current value.
    """

    def state_dict(self) -> dict:
        return dict(self)

    def load_state_dict(self, state: dict) -> None:
        self.update({key: state[key] for key in self if key in state})


def run_facts(cfg: DictConfig) -> dict[str, Any]:
    """The facts every training checkpoint of a train.py run holds: the env spec to evaluate it
    in (the task's env id and kwargs) and the resolved config."""
    return {
        "env_spec": {
            "id": cfg.task.env_id,
            "kwargs": OmegaConf.to_container(cfg.task.env_kwargs, resolve=True),
        },
        "config": OmegaConf.to_container(cfg, resolve=True),
    }


class RunState:
    """The parts and facts of one run (module docstring)."""

    def __init__(self, parts: dict[str, Stateful], facts: dict[str, Any] | None = None):
        for name in (*parts, *(facts or {})):
            if name in RESERVED_KEYS:
                raise ValueError(f"{name!r} is reserved in a training checkpoint")
        self.parts = parts
        self.facts = dict(facts or {})

    def snapshot(
        self, step: int, metrics: dict | None = None, parts: Sequence[str] | None = None
    ) -> dict[str, Any]:
        """Everything a checkpoint holds, as a tree of tensors and JSON values; ``parts`` limits
        the parts to those named (a weights-only checkpoint: the facts, RNGs and step stay)."""
        names = self.parts if parts is None else parts
        state = {name: self.parts[name].state_dict() for name in names}
        state.update(self.facts)
        state[RNG_KEY] = rng_state()
        state["step"] = int(step)
        state["metrics"] = dict(metrics or {})
        return state

    def save(self, path: str | os.PathLike, step: int, metrics: dict | None = None) -> Path:
        return save_checkpoint(path, self.snapshot(step, metrics))

    def restore(self, path: str | os.PathLike) -> dict[str, Any]:
        """Load every part and the RNGs from the checkpoint at ``path``; returns the checkpoint."""
        return self.restore_from(load_checkpoint(path), path)

    def restore_from(self, checkpoint: dict[str, Any], path: str | os.PathLike) -> dict[str, Any]:
        """``restore`` from a checkpoint already read from ``path``. Temporary files that a
        killed save of ``path`` left behind are removed."""
        for name, part in self.parts.items():
            if checkpoint.get(name) is None:
                raise CheckpointError(
                    path,
                    f"has no {name!r} state: it was written by another kind of run, or it is a "
                    "best-k checkpoint (weights only; resume from checkpoints/latest.safetensors)",
                )
            try:
                part.load_state_dict(checkpoint[name])
            except (RuntimeError, ValueError, KeyError, TypeError) as error:
                raise CheckpointError(
                    path, f"its {name!r} does not fit this run: {error}"
                ) from None
        set_rng_state(checkpoint[RNG_KEY])
        remove_orphan_temporaries(path)
        return checkpoint
