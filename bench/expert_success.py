"""Scripted-expert success rates for the PushT, PickLift, Stack and AroundObstacle tasks.

    MUJOCO_GL=egl .venv/bin/python bench/expert_success.py                  # 100 seeds each
    MUJOCO_GL=egl .venv/bin/python bench/expert_success.py --episodes 10 --tasks robopolicy/PushT-v0

Each task runs state-only (no rendering) with two styles: ``clean`` (no noise) and ``teleop``
(``action_noise_std=0.05``, ``pause_prob=0.02``), on env seeds 0..N-1, the expert's rng seeded
with the same number. Prints success rate, mean / max episode length, and for AroundObstacle the
expert's mode counts and whether the env's detected ``info["mode"]`` agreed every time; writes
everything to ``bench/results/expert_success.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import gymnasium as gym
import numpy as np

import sim  # noqa: F401  (registers the base ids and expert registry)
import sim.envs.register_tasks  # noqa: F401
from sim.experts import TeleopStyle, make_expert

STYLES = {
    "clean": TeleopStyle(),
    "teleop": TeleopStyle(action_noise_std=0.05, pause_prob=0.02),
}
RESULTS = Path(__file__).parent / "results" / "expert_success.json"


def measure(env_id: str, style: TeleopStyle, episodes: int) -> dict:
    env = gym.make(env_id, obs_mode="state")
    expert = make_expert(env, style)
    successes, lengths, modes, agree = 0, [], [], True
    start = time.perf_counter()
    for seed in range(episodes):
        obs, info = env.reset(seed=seed)
        expert.reset(np.random.default_rng(seed))
        done, steps = False, 0
        while not done:
            obs, _, terminated, truncated, info = env.step(expert.act(obs))
            steps += 1
            done = terminated or truncated
        successes += bool(info["is_success"])
        lengths.append(steps)
        if expert.mode is not None:
            modes.append(expert.mode)
            agree &= info.get("mode") == expert.mode
    env.close()
    result = {
        "episodes": episodes,
        "success_rate": successes / episodes,
        "mean_length": float(np.mean(lengths)),
        "max_length": int(np.max(lengths)),
        "seconds": time.perf_counter() - start,
    }
    if modes:
        result["mode_counts"] = {str(m): modes.count(m) for m in sorted(set(modes))}
        result["detected_mode_agrees"] = bool(agree)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=100)
    parser.add_argument("--tasks", nargs="+", default=list(sim.envs.register_tasks.TASKS))
    args = parser.parse_args()
    results = {}
    for env_id in args.tasks:
        for name, style in STYLES.items():
            result = measure(env_id, style, args.episodes)
            results[f"{env_id} {name}"] = result
            print(f"{env_id:32s} {name:6s} " + json.dumps(result), flush=True)
    if args.episodes >= 100:
        RESULTS.parent.mkdir(exist_ok=True)
        RESULTS.write_text(json.dumps(results, indent=2) + "\n")
        print(f"wrote {os.path.relpath(RESULTS)}")


if __name__ == "__main__":
    main()
