"""Simulation throughput: our PushCube env against robosuite's Lift, measured in the same run.

    MUJOCO_GL=egl .venv/bin/python bench/bench_sim.py            # full run, ~2 minutes
    MUJOCO_GL=egl .venv/bin/python bench/bench_sim.py --quick    # smoke test, writes nothing

Figures (all wall-clock, on whatever CPU this runs on; rendering is Mesa/EGL on the CPU unless a
GPU driver is present):

* env steps/s with random actions, state only and with two 96x96 RGB cameras;
* ``gymnasium.vector.AsyncVectorEnv`` steps/s (summed over envs) with 1 and 2 worker processes;
* scripted-expert episodes/s and its success rate over ``--expert-episodes`` seeds (state only);
* robosuite Lift (Panda, OSC_POSE, control_freq 10 to match our 10 Hz policy rate) stepped the
  same way, state only and with its agentview + eye-in-hand cameras at 96x96.

Ratios "ours / robosuite" are printed, and everything is written to bench/results/sim.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import gymnasium as gym  # noqa: E402
import numpy as np  # noqa: E402

import sim  # noqa: E402
from sim.experts import make_expert  # noqa: E402
from sim.rollout import record_expert_episode  # noqa: E402

RESULTS = REPO / "bench" / "results" / "sim.json"


def steps_per_second(env: gym.Env, n_steps: int, seed: int = 0) -> float:
    """Random-action steps/s, resetting whenever an episode ends; the first reset is not timed."""
    env.reset(seed=seed)
    env.action_space.seed(seed)
    env.step(env.action_space.sample())  # builds lazy renderers outside the timed loop
    start = time.perf_counter()
    for _ in range(n_steps):
        *_, terminated, truncated, _ = env.step(env.action_space.sample())
        if terminated or truncated:
            env.reset()
    return n_steps / (time.perf_counter() - start)


def vector_steps_per_second(n_workers: int, n_steps: int, **env_kwargs) -> float:
    """Env steps/s summed over an AsyncVectorEnv's workers (autoreset on)."""

    def make():
        return gym.make(sim.PUSH_CUBE_ID, **env_kwargs)

    envs = gym.vector.AsyncVectorEnv([make] * n_workers, context="spawn")
    try:
        envs.reset(seed=list(range(n_workers)))
        envs.action_space.seed(0)
        envs.step(envs.action_space.sample())
        start = time.perf_counter()
        for _ in range(n_steps):
            envs.step(envs.action_space.sample())
        return n_steps * n_workers / (time.perf_counter() - start)
    finally:
        envs.close()


def expert_figures(n_episodes: int) -> dict:
    env = gym.make(sim.PUSH_CUBE_ID, obs_mode="state")
    expert = make_expert(env)
    start = time.perf_counter()
    episodes = [record_expert_episode(env, expert, seed) for seed in range(n_episodes)]
    elapsed = time.perf_counter() - start
    return {
        "episodes": n_episodes,
        "success_rate": float(np.mean([episode.success for episode in episodes])),
        "mean_length": float(np.mean([len(episode.steps["action"]) for episode in episodes])),
        "episodes_per_s": n_episodes / elapsed,
    }


class _RobosuiteStepper(gym.Env):
    """Just enough of the gymnasium API over a raw robosuite env for ``steps_per_second``."""

    def __init__(self, cameras: bool) -> None:
        import robosuite

        self.env = robosuite.make(
            "Lift",
            robots="Panda",
            has_renderer=False,
            has_offscreen_renderer=cameras,
            use_camera_obs=cameras,
            camera_names=["agentview", "robot0_eye_in_hand"],
            camera_heights=96,
            camera_widths=96,
            control_freq=10,
            horizon=100,
            ignore_done=False,
        )
        low, high = self.env.action_spec
        self.action_space = gym.spaces.Box(low.astype(np.float32), high.astype(np.float32))

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        if seed is not None:
            np.random.seed(seed)
        return self.env.reset(), {}

    def step(self, action):
        obs, reward, done, info = self.env.step(action)
        return obs, reward, done, False, info


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer steps (a smoke test)")
    parser.add_argument("--expert-episodes", type=int, default=100)
    args = parser.parse_args()
    n_state, n_image = (100, 20) if args.quick else (1000, 200)
    expert_episodes = 10 if args.quick else args.expert_episodes

    figures: dict = {
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "load_average_1min_at_start": os.getloadavg()[0],  # others' work skews the figures
        }
    }
    ours = {
        "state_steps_per_s": steps_per_second(
            gym.make(sim.PUSH_CUBE_ID, obs_mode="state"), n_state
        ),
        "rgb_2cams_96_steps_per_s": steps_per_second(
            gym.make(sim.PUSH_CUBE_ID, obs_mode="rgb", image_size=96), n_image
        ),
    }
    for workers in (1, 2):
        ours[f"async_state_{workers}_workers_steps_per_s"] = vector_steps_per_second(
            workers, n_state // 2, obs_mode="state"
        )
        ours[f"async_rgb_{workers}_workers_steps_per_s"] = vector_steps_per_second(
            workers, n_image // 2, obs_mode="rgb", image_size=96
        )
    ours["expert"] = expert_figures(expert_episodes)
    figures["push_cube"] = ours

    robosuite_lift = {
        "state_steps_per_s": steps_per_second(_RobosuiteStepper(cameras=False), n_state // 2),
        "rgb_2cams_96_steps_per_s": steps_per_second(_RobosuiteStepper(cameras=True), n_image),
    }
    figures["robosuite_lift"] = robosuite_lift
    figures["ratio_ours_over_robosuite"] = {
        key: ours[key] / robosuite_lift[key] for key in robosuite_lift
    }

    print(json.dumps(figures, indent=2))
    if args.quick:  # smoke-test figures are not worth quoting
        return
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    temporary = RESULTS.with_suffix(".json.tmp")
    temporary.write_text(json.dumps(figures, indent=2) + "\n")
    temporary.replace(RESULTS)
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
