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
    """How human-like the expert's actions are; zero noise and no pauses: a clean expert."""

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


class TeleopNoise:
    """Applies a ``TeleopStyle`` to a clean expert's actions, so experts don't reimplement it.

    Each step either continues a pause (returns the expert's "hold still" action), starts one
    with probability ``pause_prob``, or returns the clean action plus Gaussian noise of
    ``action_noise_std``, clipped to the action space. The gripper entry (the last) is never
    noised: a jittering gripper command would open a grasp, which no teleoperator does.
    """

    def __init__(self, style: TeleopStyle, action_space: gym.spaces.Box) -> None:
        self.style = style
        self.low = action_space.low
        self.high = action_space.high
        self._rng = np.random.default_rng(0)
        self._pause_left = 0

    def reset(self, rng: np.random.Generator) -> None:
        self._rng = rng
        self._pause_left = 0

    def __call__(self, action: np.ndarray, hold_action: np.ndarray) -> np.ndarray:
        style = self.style
        if self._pause_left == 0 and style.pause_prob > 0 and self._rng.random() < style.pause_prob:
            low, high = style.pause_steps
            self._pause_left = int(self._rng.integers(low, high + 1))
        if self._pause_left > 0:
            self._pause_left -= 1
            return np.asarray(hold_action, dtype=np.float32)
        noisy = np.array(action, dtype=np.float64)
        if style.action_noise_std > 0:
            noisy[:-1] += self._rng.normal(0.0, style.action_noise_std, len(noisy) - 1)
        return np.clip(noisy, self.low, self.high).astype(np.float32)
