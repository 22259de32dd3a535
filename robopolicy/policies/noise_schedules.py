"""Noise schedules for DDPM-style diffusion: betas, alphas and their cumulative products.

The forward process adds Gaussian noise over ``K`` steps with variances ``beta_k``::

    q(x_k | x_{k-1}) = N(sqrt(1 - beta_k) x_{k-1}, beta_k I)
    alpha_k = 1 - beta_k,    alpha_bar_k = prod_{j <= k} alpha_j
    q(x_k | x_0)     = N(sqrt(alpha_bar_k) x_0, (1 - alpha_bar_k) I)

Schedules (``k = 0 .. K-1``):

* ``squaredcos_cap_v2`` (Nichol & Dhariwal 2021, "improved DDPM"): define
  ``f(u) = cos((u + s) / (1 + s) * pi / 2) ** 2`` with ``s = 0.008`` and set
  ``beta_k = min(1 - f((k + 1) / K) / f(k / K), max_beta)``, ``max_beta = 0.999``.
  ``alpha_bar`` then follows the squared cosine, adding noise slowly at both ends.
* ``linear`` (Ho et al. 2020): ``beta_k`` evenly spaced from ``beta_start`` to ``beta_end``, with
  the DDPM values 1e-4 and 0.02 given for K = 1000 rescaled by ``1000 / K``.

Sampling visits a subset of the K steps; ``inference_timesteps`` chooses it (three spacings).
"""

from __future__ import annotations

import math

import torch

SCHEDULES = ("squaredcos_cap_v2", "linear")
TIMESTEP_SPACINGS = ("linspace", "leading", "trailing")


def squared_cosine_betas(num_steps: int, s: float = 0.008, max_beta: float = 0.999) -> torch.Tensor:
    """Betas whose ``alpha_bar`` follows ``cos((k/K + s)/(1 + s) * pi/2) ** 2``."""

    def f(u: float) -> float:
        return math.cos((u + s) / (1 + s) * math.pi / 2) ** 2

    betas = [min(1 - f((k + 1) / num_steps) / f(k / num_steps), max_beta) for k in range(num_steps)]
    return torch.tensor(betas, dtype=torch.float64)


def linear_betas(num_steps: int, beta_start: float = 1e-4, beta_end: float = 0.02) -> torch.Tensor:
    """DDPM's linear betas, rescaled so that any ``num_steps`` reaches a similar final noise."""
    scale = 1000.0 / num_steps
    return torch.linspace(beta_start * scale, beta_end * scale, num_steps, dtype=torch.float64)


def make_betas(name: str, num_steps: int) -> torch.Tensor:
    """``(K,)`` float64 betas of the named schedule."""
    if num_steps < 1:
        raise ValueError(f"num_train_timesteps must be >= 1, got {num_steps}")
    if name == "squaredcos_cap_v2":
        return squared_cosine_betas(num_steps)
    if name == "linear":
        return linear_betas(num_steps)
    raise ValueError(f"beta_schedule must be one of {SCHEDULES}, got {name!r}")


def alphas_cumprod(betas: torch.Tensor) -> torch.Tensor:
    """``alpha_bar_k = prod_{j <= k} (1 - beta_j)``."""
    return torch.cumprod(1.0 - betas, dim=0)


def inference_timesteps(num_train_steps: int, num_steps: int, spacing: str) -> list[int]:
    """``num_steps`` training-step indices to visit when sampling, from the noisiest down.

    With ``K = num_train_steps``, ``S = num_steps`` and ``i = 0 .. S-1`` (diffusers'
    ``DDIMScheduler.timestep_spacing``, with its ``steps_offset = 0`` as diffusion_policy and
    LeRobot configure it):

    * ``linspace``: ``round(K-1 - i (K-1) / (S-1))``, evenly spaced over ``[0, K-1]``: starts at
      the noisiest level and ends at 0. For ``S = 1``, ``[K-1]`` (diffusers: ``[0]``).
    * ``leading``: ``(S-1-i) * (K // S)``, diffusers' default for DDIM (e.g. ``[90, 80, ..., 0]``
      for K = 100, S = 10): ends at 0 but never visits the ``K - 1 - (S-1) (K//S)`` noisiest
      levels, so sampling starts from pure noise at a level the network saw as partly clean.
    * ``trailing``: ``round(K - i K / S) - 1`` (``[99, 89, ..., 9]``): starts at the noisiest
      level; the last step is at ``round(K / S) - 1``, not 0.

    With ``S == K`` all three visit every step. Python's ``round`` (half to even) matches
    NumPy's, which diffusers uses.
    """
    if not 1 <= num_steps <= num_train_steps:
        raise ValueError(f"num_steps must be in [1, {num_train_steps}], got {num_steps}")
    steps = range(num_steps)
    if spacing == "linspace":
        if num_steps == 1:
            return [num_train_steps - 1]
        points = torch.linspace(num_train_steps - 1, 0, num_steps, dtype=torch.float64)
        return [int(round(p)) for p in points.tolist()]
    if spacing == "leading":
        return [(num_steps - 1 - i) * (num_train_steps // num_steps) for i in steps]
    if spacing == "trailing":
        ratio = num_train_steps / num_steps
        return [int(round(num_train_steps - i * ratio)) - 1 for i in steps]
    raise ValueError(f"timestep_spacing must be one of {TIMESTEP_SPACINGS}, got {spacing!r}")
