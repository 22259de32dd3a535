"""Which seeds each kind of episode uses, so that no two kinds ever share one.

* demonstrations (datasets/collect.py): ``seed``, ``seed + 1``, ... from 0 (DART runs from 50000);
* evaluation (eval.py, train.py's evaluations): ``eval.seed`` (100000) onwards;
* RL training episodes: from ``TRAINING_SEED_OFFSET`` (10 million) onwards, in blocks: a run with
  seed ``s`` resets its ``n_envs`` envs for block ``b`` (an iteration of chain PPO, a reset of
  DSRL's envs) with ``training_reset_seeds(s, b, n_envs)``, distinct for every run seed below
  ``SEED_BLOCKS`` blocks, and repeatable, so a resumed run replays the same episodes.
"""

from __future__ import annotations

TRAINING_SEED_OFFSET = 10_000_000  # far above demonstration and evaluation seeds
SEED_BLOCKS = 100_000  # reset blocks per run seed before two run seeds' episodes could overlap


def training_reset_seeds(run_seed: int, block: int, n_envs: int) -> list[int]:
    """The reset seeds of ``n_envs`` training envs for reset block ``block`` of run ``run_seed``."""
    first = TRAINING_SEED_OFFSET + (int(run_seed) * SEED_BLOCKS + int(block)) * n_envs
    return [first + j for j in range(n_envs)]
