"""Measure a registered scripted expert's success rate over seeded episodes.

    MUJOCO_GL=egl python -m sim.suites.measure_experts robosuite/Lift-v0 --episodes 100
    MUJOCO_GL=egl python -m sim.suites.measure_experts metaworld/push-v3 --noise 0.1 --pause 0.05

Episode ``i`` resets the env with seed ``start + i`` and the expert with ``default_rng(start + i)``,
so any episode can be replayed alone. Prints one line per failure and a summary line with the
success count, a Wilson 95% interval, mean episode length and env steps per second (state-only,
expert included).
"""

from __future__ import annotations

import argparse
import math
import time

import gymnasium as gym
import numpy as np

import sim.suites  # noqa: F401  (registers the ids and experts)
from sim.experts import TeleopStyle, make_expert


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval for a success rate (sensible at 0 and n, unlike the normal one)."""
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("env_id")
    parser.add_argument("--episodes", type=int, default=20)
    parser.add_argument("--start", type=int, default=0, help="first seed")
    parser.add_argument("--noise", type=float, default=0.0, help="TeleopStyle.action_noise_std")
    parser.add_argument("--pause", type=float, default=0.0, help="TeleopStyle.pause_prob")
    args = parser.parse_args()

    env = gym.make(args.env_id)
    expert = make_expert(env, TeleopStyle(action_noise_std=args.noise, pause_prob=args.pause))
    successes, steps, start = 0, 0, time.perf_counter()
    for seed in range(args.start, args.start + args.episodes):
        obs, _ = env.reset(seed=seed)
        expert.reset(np.random.default_rng(seed))
        length, done, success = 0, False, False
        while not done:
            obs, _, terminated, truncated, info = env.step(expert.act(obs))
            length += 1
            success = success or bool(info["is_success"])
            done = terminated or truncated
        steps += length
        successes += success
        if not success:
            print(f"seed {seed}: failed after {length} steps", flush=True)
    elapsed = time.perf_counter() - start
    env.close()
    low, high = wilson_interval(successes, args.episodes)
    print(
        f"{args.env_id} noise={args.noise} pause={args.pause}: {successes}/{args.episodes} "
        f"success (95% CI {low:.2f}-{high:.2f}), mean length {steps / args.episodes:.0f}, "
        f"{steps / elapsed:.0f} steps/s"
    )


if __name__ == "__main__":
    main()
