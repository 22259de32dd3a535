"""Learning-rate schedule: linear warm-up, then cosine decay to ``min_ratio`` of the base rate."""

from __future__ import annotations

import math

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR


def warmup_cosine(
    optimizer: Optimizer, warmup_steps: int, total_steps: int, min_ratio: float = 0.0
) -> LambdaLR:
    """Multiplier rises linearly 0 -> 1 over ``warmup_steps``, then follows a half cosine from 1
    down to ``min_ratio`` at ``total_steps`` (and stays there). Its state_dict resumes exactly."""
    if total_steps <= 0 or warmup_steps < 0 or not 0.0 <= min_ratio <= 1.0:
        raise ValueError(
            f"warmup_cosine needs total_steps > 0, warmup_steps >= 0 and 0 <= min_ratio <= 1; "
            f"got {total_steps}, {warmup_steps}, {min_ratio}"
        )

    def multiplier(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))

    return LambdaLR(optimizer, multiplier)
