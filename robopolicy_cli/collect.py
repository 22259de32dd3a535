"""Collect scripted-expert demonstrations into a zarr dataset.

    python datasets/collect.py task=push_cube n_episodes=50 out=datasets/data/push.zarr
    python datasets/collect.py n_workers=2 teleop.action_noise_std=0.1 teleop.pause_prob=0.05

Episode ``i`` runs with seed ``seed + i``; only successful episodes are written, in seed order,
so the same command writes the same dataset whatever ``n_workers`` is. Workers are separate
processes (``spawn``), each building its own env and, lazily, its own renderer. Every step's
raw simulator state is stored beside the observations (``store_sim_state``) so that images can
be re-rendered later. Config: conf/collect.yaml and conf/task/<name>.yaml.
"""

from __future__ import annotations

import functools
import logging
import multiprocessing
from dataclasses import asdict
from pathlib import Path

import gymnasium as gym
import hydra
import numpy as np
from hydra.utils import to_absolute_path
from omegaconf import DictConfig, OmegaConf

from robopolicy.config import ConfigError, validate
from robopolicy.config.locate import conf_dir
from robopolicy.eval.env_check import EnvConfigError, make_checked_env
from robopolicy.utils.console import progress_bar
from robopolicy.utils.quiet import inheriting
from robopolicy_cli.command import HYDRA_NOTE, Usage, run_hydra_program, run_in_run_dir
from sim.experts import TeleopStyle, make_expert  # (importing sim registers ids)
from sim.rollout import init_worker, worker_episode

USAGE = Usage(
    summary="Collect scripted-expert demonstrations of a task into a zarr dataset (only successful "
    "episodes; DART noise, human-like pauses and DAgger on request).",
    config="collect",
    schema="robopolicy/config/collect.py CollectConfig",
    examples=(
        "task=push_cube n_episodes=50 out=datasets/data/push.zarr",
        "n_workers=2 teleop.action_noise_std=0.1 teleop.pause_prob=0.05",
        "append=true seed=10000 dagger.checkpoint=<checkpoint>",
    ),
    groups=(),
    notes=(HYDRA_NOTE,),
)

log = logging.getLogger("collect")  # every message: the terminal and <run_dir>/collect.log


def check_config(cfg: DictConfig) -> tuple[dict, TeleopStyle, dict]:
    """Validate the config before any work starts; raise one ``ConfigError`` if it is wrong.

    The schema's rules first (robopolicy/config/collect.py CollectConfig), then the task's env,
    built here once. Returns the resolved task config, the teleop style, and the dataset's
    shape_meta (from that env).
    """
    validate(cfg)
    task = OmegaConf.to_container(cfg.task, resolve=True)
    try:  # the task's env, exactly as the dataset's env_spec will describe it
        env = make_checked_env(task["env_id"], task["env_kwargs"], (), task["max_episode_steps"])
    except EnvConfigError as error:
        raise ConfigError(str(error)) from None
    try:
        make_expert(env)
        shape_meta = shape_meta_for(env)
    except KeyError as error:
        raise ConfigError(f"task.env_id={task['env_id']!r}: {error.args[0]}") from error
    finally:
        env.close()
    teleop = cfg.teleop
    style = TeleopStyle(
        action_noise_std=float(teleop.action_noise_std),
        pause_prob=float(teleop.pause_prob),
        pause_steps=(int(teleop.pause_steps[0]), int(teleop.pause_steps[1])),
    )
    return task, style, shape_meta


def shape_meta_for(env: gym.Env) -> dict:
    """The dataset's ``shape_meta`` from the env's observation and action spaces."""
    obs = {}
    for key, space in env.observation_space.spaces.items():
        if key.endswith("_depth"):
            kind = "depth"
        elif space.dtype == np.uint8 and len(space.shape) == 3:
            kind = "rgb"
        else:
            kind = "low_dim"
        obs[key] = {"shape": list(space.shape), "type": kind}
    action = {"shape": list(env.action_space.shape)}
    hold = getattr(env.unwrapped, "action_hold", None)  # how the env's actions hold still
    if hold is not None:
        action["hold"] = list(hold)
    return {"obs": obs, "action": action}


def collect(cfg: DictConfig) -> Path:
    task, style, shape_meta = check_config(cfg)
    out = Path(to_absolute_path(str(cfg.out)))
    if out.exists() and not (cfg.overwrite or cfg.append):
        raise ConfigError(
            f"out={str(out)!r} already exists; pass overwrite=true to replace it or append=true "
            "to add episodes to it"
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    from robopolicy.data.writer import DatasetWriter, default_provenance

    provenance = {
        **default_provenance("datasets/collect.py"),
        "expert": f"scripted expert for {task['env_id']}",
        "teleop_style": asdict(style),
        "injected_noise_std": float(cfg.injected_noise_std),
        "first_seed": int(cfg.seed),
    }
    dagger = cfg.dagger.checkpoint
    driver_factory = None
    if dagger:
        from robopolicy.eval.step_actor import load_step_actor

        dagger = to_absolute_path(dagger)
        provenance["dagger_checkpoint"] = dagger
        driver_factory = functools.partial(
            load_step_actor, dagger, use_ema=bool(cfg.dagger.use_ema)
        )
        driver_factory()  # loaded once here first: a bad checkpoint is one line, not a worker pool
        #   respawning workers that fail on it
    # at most n_episodes + max_failures attempts: more failures than that and the run falls short
    seeds = range(int(cfg.seed), int(cfg.seed) + int(cfg.n_episodes) + int(cfg.max_failures))
    context = multiprocessing.get_context("spawn")
    init_args = (
        task["env_id"],
        task["env_kwargs"],
        task["max_episode_steps"],
        style,
        bool(cfg.store_sim_state),
        float(cfg.injected_noise_std),
        driver_factory,
    )
    written = failed = 0
    env_spec = {
        "id": task["env_id"],
        "kwargs": task["env_kwargs"],
        "max_episode_steps": task["max_episode_steps"],
    }
    if cfg.append and out.exists():
        writer = open_to_append(out, shape_meta, env_spec)
        writer.record_appended_run(provenance)
    else:
        writer = DatasetWriter.create(
            out,
            shape_meta=shape_meta,
            fps=task["fps"],
            env_spec=env_spec,
            provenance=provenance,
            overwrite=bool(cfg.overwrite),
        )
    with (
        writer,
        context.Pool(int(cfg.n_workers), inheriting(init_worker), init_args) as pool,
        progress_bar(
            int(cfg.n_episodes), f"collect {task['name']}", cfg.progress, unit="ep"
        ) as progress,
    ):
        pending: list[tuple[dict, dict]] = []  # kept episodes not yet in the dataset
        for episode in pool.imap(worker_episode, seeds):
            if episode.success or dagger:  # a learner's failures are labelled states too
                meta = {"seed": episode.seed}
                if episode.mode is not None:
                    meta["mode"] = episode.mode
                pending.append((episode.steps, meta))
                written += 1
                progress.update(1)
            else:
                failed += 1
            progress.set_postfix(failed=failed)
            if len(pending) >= int(cfg.write_every) or written == int(cfg.n_episodes):
                writer.append_episodes(pending)
                pending = []
            if written == int(cfg.n_episodes):
                break
        writer.append_episodes(pending)  # what was kept before the failures ran out
    if written < int(cfg.n_episodes):
        raise RuntimeError(
            f"only {written} of {cfg.n_episodes} episodes succeeded: more than max_failures="
            f"{cfg.max_failures} failed; {out} holds the {written} that did"
        )
    log.info(f"wrote {written} episodes ({failed} failed attempts discarded) to {out}")
    return out


def open_to_append(out: Path, shape_meta: dict, env_spec: dict):
    """The dataset at ``out`` reopened for appending, after checking it holds the same task."""
    from robopolicy.data.reader import ReplayBuffer
    from robopolicy.data.writer import DatasetWriter

    existing = ReplayBuffer.open(out)
    # The hold action is compared only where both record one (datasets before it lack it).
    old, new = existing.shape_meta, shape_meta
    same_hold = old["action"].get("hold", new["action"].get("hold")) == new["action"].get("hold")
    same_shapes = old["obs"] == new["obs"] and old["action"]["shape"] == new["action"]["shape"]
    if not (same_hold and same_shapes) or existing.env_spec.get("id") != env_spec["id"]:
        raise ConfigError(
            f"append=true: {out} holds {existing.env_spec.get('id')} with shape_meta "
            f"{existing.shape_meta}; this run collects {env_spec['id']} with {shape_meta}"
        )
    return DatasetWriter.open_for_append(out)


@hydra.main(
    config_path=str(conf_dir()),
    config_name="collect",
    version_base="1.3",
)
def hydra_main(cfg: DictConfig) -> None:
    run_in_run_dir(cfg, lambda: collect(cfg))


def main() -> None:
    run_hydra_program(USAGE, hydra_main)
