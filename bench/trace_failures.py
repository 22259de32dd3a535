"""Trace a trained policy's failures frame by frame, beside the scripted expert on the same seeds.

    MUJOCO_GL=egl .venv/bin/python bench/trace_failures.py RUN_DIR            # its failed seeds
    MUJOCO_GL=egl .venv/bin/python bench/trace_failures.py RUN_DIR --seeds 100003 100007
    MUJOCO_GL=egl .venv/bin/python bench/trace_failures.py RUN_DIR --also-successes 5

RUN_DIR is a train.py run directory: its ``checkpoints/latest.safetensors`` is rolled out with
the run's own task and evaluation settings (``.hydra/config.yaml``), one episode per seed, with
the evaluation's seeded noise (the same episodes as the run's ``eval.json`` for a deterministic
sampler). Default seeds: the ``failed_seeds`` of the run's ``eval.json`` (at most
``--max-seeds``), plus ``--also-successes`` of its successful seeds for contrast. The task's
scripted expert (sim/experts.py) runs on each seed too, state-only.

Per episode it prints success and length for both, and for every low-dim observation key of up
to three values: where it started, ended, and its range over the episode (e.g. ``object_pos``'s
height, ``eef_to_object``'s norm, ``gripper_pos``), so a failure's stage shows (never reached
the object, grasped and dropped, lifted too late). Everything, step by step (observations and
actions of both), goes to ``<RUN_DIR>/trace/trace.npz`` (``--out``) and the summary to
``summary.json`` beside it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
from omegaconf import OmegaConf

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from robopolicy.eval.envs import make_vector_env, policy_act_fn  # noqa: E402
from robopolicy.eval.rollout import run_episodes  # noqa: E402
from robopolicy.policies.registry import load_policy  # noqa: E402

MAX_SUMMARY_DIMS = 3  # keys of up to this many values are summarised (positions, offsets, gripper)


class StepRecorder(gym.Wrapper):
    """Keeps every step's low-dim observations and the action that led to them."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self.steps: dict[str, list[np.ndarray]] = {}

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        self.steps = {"action": []}
        self._keep(obs)
        return obs, info

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.steps["action"].append(np.asarray(action, dtype=np.float32))
        if not (terminated or truncated):  # the final observation is the next episode's reset
            self._keep(obs)
        return obs, reward, terminated, truncated, info

    def _keep(self, obs: dict) -> None:
        for key, value in obs.items():
            if np.asarray(value).dtype != np.uint8:  # images are left out
                self.steps.setdefault(key, []).append(np.asarray(value, dtype=np.float32))


def policy_episode(policy, cfg, seed: int) -> dict:
    """One seeded episode of ``policy`` with the run's evaluation settings, recorded."""
    recorders: list[StepRecorder] = []

    def wrap(env: gym.Env) -> gym.Env:
        recorders.append(StepRecorder(env))
        return recorders[-1]

    envs = make_vector_env(
        cfg.task.env_id,
        OmegaConf.to_container(cfg.task.env_kwargs, resolve=True),
        1,
        env_modules=list(cfg.env_modules),
        asynchronous=False,
        max_episode_steps=cfg.task.get("max_episode_steps"),
        wrapper=wrap,
    )
    try:
        sampler = OmegaConf.to_container(cfg.eval.sampler, resolve=True)
        result = run_episodes(
            envs, policy_act_fn(policy, **sampler), 1, policy.n_obs_steps, seed=seed
        )
        steps = {key: np.stack(values) for key, values in recorders[-1].steps.items()}
    finally:
        envs.close()
    return {"success": bool(result.success[0]), "length": int(result.lengths[0]), "steps": steps}


def expert_episode(cfg, seed: int) -> dict:
    """The task's scripted expert on the same seed, state-only, recorded."""
    import sim  # noqa: F401  (registers the ids and the experts)
    from sim.experts import make_expert
    from sim.rollout import record_expert_episode

    env_kwargs = OmegaConf.to_container(cfg.task.env_kwargs, resolve=True)
    env_kwargs["obs_mode"] = "state"
    env = gym.make(
        cfg.task.env_id, max_episode_steps=cfg.task.get("max_episode_steps"), **env_kwargs
    )
    try:
        episode = record_expert_episode(env, make_expert(env), seed, record_sim_state=False)
    finally:
        env.close()
    steps = {  # observations and actions, as the policy's trace holds them
        key: value.astype(np.float32)
        for key, value in episode.steps.items()
        if value.dtype != np.uint8 and key not in ("reward", "done")
    }
    return {"success": episode.success, "length": len(steps["action"]), "steps": steps}


def key_summary(values: np.ndarray) -> dict:
    """Start, end, min and max of one key over an episode (the norm too for vectors)."""
    values = values.reshape(len(values), -1)
    summary = {
        "start": values[0].round(4).tolist(),
        "end": values[-1].round(4).tolist(),
        "min": values.min(0).round(4).tolist(),
        "max": values.max(0).round(4).tolist(),
    }
    if values.shape[1] > 1:
        norms = np.linalg.norm(values, axis=1)
        summary["norm_min"] = round(float(norms.min()), 4)
        summary["norm_end"] = round(float(norms[-1]), 4)
    return summary


def episode_summary(episode: dict) -> dict:
    keys = {
        key: key_summary(values)
        for key, values in episode["steps"].items()
        if key != "action" and values.reshape(len(values), -1).shape[1] <= MAX_SUMMARY_DIMS
    }
    return {"success": episode["success"], "length": episode["length"], "keys": keys}


def chosen_seeds(run_dir: Path, args) -> list[int]:
    if args.seeds:
        return list(args.seeds)
    outcome = json.loads((run_dir / "eval.json").read_text())
    failed = list(outcome["failed_seeds"])[: args.max_seeds]
    passed = [seed for seed in outcome["seeds"] if seed not in set(outcome["failed_seeds"])]
    return failed + passed[: args.also_successes]


def print_pair(seed: int, ours: dict, expert: dict) -> None:
    def outcome(summary: dict) -> str:
        return f"{'ok  ' if summary['success'] else 'FAIL'} {summary['length']:4d} steps"

    print(f"seed {seed}: policy {outcome(ours)} | expert {outcome(expert)}")
    for key, summary in ours["keys"].items():
        theirs = expert["keys"].get(key)
        line = f"    {key:16s} end {summary['end']} range {summary['min']}..{summary['max']}"
        if "norm_min" in summary:
            line += f" |min| {summary['norm_min']}"
        if theirs is not None:
            line += f"   expert end {theirs['end']}"
        print(line)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path, help="a train.py run directory")
    parser.add_argument("--seeds", type=int, nargs="*", help="episode seeds (default: failed)")
    parser.add_argument("--max-seeds", type=int, default=20, help="failed seeds traced at most")
    parser.add_argument("--also-successes", type=int, default=0, help="successful seeds added")
    parser.add_argument("--out", type=Path, help="folder for the traces (default: RUN_DIR/trace)")
    args = parser.parse_args(argv)
    cfg = OmegaConf.load(args.run_dir / ".hydra" / "config.yaml")
    policy, _ = load_policy(args.run_dir / "checkpoints" / "latest.safetensors")
    policy.eval()
    out = args.out or args.run_dir / "trace"
    out.mkdir(parents=True, exist_ok=True)
    arrays, summary = {}, {}
    for seed in chosen_seeds(args.run_dir, args):
        ours, theirs = policy_episode(policy, cfg, seed), expert_episode(cfg, seed)
        for who, episode in (("policy", ours), ("expert", theirs)):
            for key, values in episode["steps"].items():
                arrays[f"{seed}/{who}/{key}"] = values
        summary[seed] = {"policy": episode_summary(ours), "expert": episode_summary(theirs)}
        print_pair(seed, summary[seed]["policy"], summary[seed]["expert"])
    np.savez_compressed(out / "trace.npz", **arrays)
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    print(f"wrote {out / 'trace.npz'} and {out / 'summary.json'}")


if __name__ == "__main__":
    main()
