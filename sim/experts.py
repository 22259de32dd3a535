"""Scripted-expert registry: every task registers a factory for its expert under its env id.

An expert sees the environment (privileged simulator state through ``env.unwrapped``) and the
observation, and returns one action per policy step. ``TeleopStyle`` makes its actions look like a
human teleoperator's rather than a straight line: Gaussian action noise and occasional pauses.
``datasets/collect.py`` looks experts up here by ``env.spec.id``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import gymnasium as gym
import numpy as np


@dataclass(frozen=True)
class TeleopStyle:
    """How human-like the expert's actions are. Zero noise and no pauses: a clean scripted expert."""

    action_noise_std: float = 0.0  # std of Gaussian noise added to each action (action units)
    pause_prob: float = 0.0  # chance per step of starting a pause (hold still)
    pause_steps: tuple[int, int] = (2, 6)  # a pause lasts this many steps, inclusive range


class Expert(Protocol):
    def reset(self, rng: np.random.Generator) -> None:
        """Start a new episode (call after env.reset); rng drives the expert's own randomness."""

    def act(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        """The next action, in the env's action space."""

    @property
    def mode(self) -> int | None:
        """The behaviour mode chosen this episode (multimodal tasks), else None."""


ExpertFactory = Callable[[gym.Env, TeleopStyle], Expert]
_FACTORIES: dict[str, ExpertFactory] = {}


def register_expert(env_id: str, factory: ExpertFactory) -> None:
    """Register the expert factory for a gymnasium env id (e.g. 'robopolicy/PushCube-v0')."""
    _FACTORIES[env_id] = factory


def make_expert(env: gym.Env, style: TeleopStyle | None = None) -> Expert:
    """Build the registered expert for ``env`` (looked up by ``env.spec.id``)."""
    env_id = env.spec.id if env.spec is not None else None
    if env_id not in _FACTORIES:
        known = ", ".join(sorted(_FACTORIES)) or "none"
        raise KeyError(f"no scripted expert registered for env id {env_id!r}; known: {known}")
    return _FACTORIES[env_id](env, style or TeleopStyle())
