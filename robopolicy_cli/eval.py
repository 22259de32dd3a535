"""Evaluate a checkpoint closed-loop in simulation: ``python eval.py checkpoint=PATH``, or deploy
it on a robot: ``python eval.py checkpoint=PATH hardware=sim``.

Loads the policy without executing pickle (safetensors), rebuilds the env recorded in the
checkpoint (or the one given), runs ``n_episodes`` seeded episodes in parallel envs and writes
``eval.json`` (success rate with a 95% Wilson interval, return, episode length, per-mode counts,
inference latency) and mp4 videos to the run directory. Sampling steps and sampler are chosen
here, independently of training: ``sampler.num_steps=4 sampler.sampler=ddim``.

With ``hardware=<robot>`` (conf/hardware/) the policy instead drives a robot in real time through
``hardware.deploy.DeployRuntime``: the robot server runs in its own process (started here on
loopback, or reached at ``hardware.address``), each episode starts with ``reset_episode(seed + i)``
and lasts at most ``max_episode_steps`` policy ticks (null: the task's limit), success is the
robot's ``task_info()``. ``eval.json`` then holds the success rate with its Wilson interval,
the latency figures (median/p99 observation age, inference, command lateness, loop jitter) and
the safety layer's counts; ``record=PATH`` also writes the deployed episodes (each tick's
observation and the action sent) into a zarr dataset.
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import signal
import socket
import subprocess
import sys
from pathlib import Path

import hydra
import numpy as np
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from hardware.deploy import SENT_KEYS
from hardware.latency import LatencyStats
from robopolicy.config import validate
from robopolicy.config.locate import conf_dir
from robopolicy.data.writer import DatasetWriter, default_provenance
from robopolicy.eval.env_check import check_env_config
from robopolicy.eval.evaluate import EVAL_RESULTS, evaluate, summarize
from robopolicy.policies.registry import load_policy
from robopolicy.training.run_logger import RunLogger
from robopolicy.utils.device import resolve_device
from robopolicy.utils.stats import wilson_interval
from robopolicy_cli.command import HYDRA_NOTE, Usage, override, run_hydra_program, run_in_run_dir

log = logging.getLogger("eval")  # every message: the terminal and <run_dir>/eval.log (Hydra)
deploy_log = logging.getLogger("eval.deploy")

SIM_ROBOT = "hardware.sim_robot.make_sim_robot"  # the sim arm's builder (conf/hardware/sim.yaml)


USAGE = Usage(
    summary="Evaluate a checkpoint closed-loop in simulation (success rate with a 95% interval, "
    "videos, latency), or deploy it on a robot with hardware=NAME; eval.json goes to the run "
    "directory.",
    config="eval",
    schema="robopolicy/config/evaluation.py EvalConfig",
    examples=(
        "checkpoint=outputs/train/<run>/checkpoints/latest.safetensors sampler.num_steps=4",
        "checkpoint=<checkpoint> hardware=sim n_episodes=5",
    ),
    groups=("hardware",),
    arguments="checkpoint=PATH [KEY=VALUE ...]",
    notes=(HYDRA_NOTE,),
)


def run(cfg: DictConfig) -> dict:
    validate(cfg)  # types, ranges, cross-field rules: one line naming the key, before any work
    out_dir = Path(HydraConfig.get().runtime.output_dir)
    device = resolve_device(cfg.device)
    if cfg.torch_threads:
        torch.set_num_threads(cfg.torch_threads)
    policy, checkpoint = load_policy(cfg.checkpoint, device=device, use_ema=cfg.use_ema)
    env_spec = checkpoint.get("env_spec") or {}
    env_id = cfg.env_id or env_spec.get("id")
    if not env_id:
        raise ValueError("the checkpoint records no env; pass env_id=<gymnasium id>")
    env_kwargs = {**env_spec.get("kwargs", {}), **OmegaConf.to_container(cfg.env_kwargs)}
    sampler = OmegaConf.to_container(cfg.sampler, resolve=True)
    if cfg.get("hardware") is not None:
        return deploy(cfg, policy, checkpoint, env_id, env_kwargs, sampler, out_dir)
    # the env is built once here: a bad env_id or env kwarg stops the run before any episode
    check_env_config(env_id, env_kwargs, cfg.env_modules, cfg.max_episode_steps, key="")
    log.info(f"{cfg.checkpoint} on {env_id}: {cfg.n_episodes} episodes, sampler {sampler}")
    result = evaluate(
        policy,
        env_id,
        env_kwargs,
        cfg.n_episodes,
        n_envs=cfg.n_envs,
        seed=cfg.seed,
        env_modules=list(cfg.env_modules),
        video_episodes=cfg.video_episodes,
        sampler_options=sampler,
        max_episode_steps=cfg.max_episode_steps,
        progress=cfg.progress,
    )
    summary = {
        "checkpoint": str(cfg.checkpoint),
        "env_id": env_id,
        "env_kwargs": env_kwargs,
        "sampler": sampler,
        **summarize(result),
    }
    logger = RunLogger(out_dir, wandb_mode="disabled")
    fps = env_spec.get("kwargs", {}).get("policy_hz", 10)
    videos = [
        logger.video(f"episode{i}", frames, fps=fps) for i, frames in enumerate(result.videos)
    ]
    summary["videos"] = [str(v) for v in videos]
    (out_dir / EVAL_RESULTS).write_text(json.dumps(summary, indent=2))
    low, high = summary["success_ci95"]
    modes = f", modes {summary['mode_counts']}" if "mode_counts" in summary else ""
    log.info(
        f"success {summary['successes']}/{summary['n_episodes']} = "
        f"{summary['success_rate']:.1%} (95% CI {low:.1%}-{high:.1%}), mean length "
        f"{summary['length_mean']:.1f}{modes}, inference "
        f"{summary['inference_ms_median']:.1f} ms median per chunk"
    )
    log.info(f"results: {out_dir / EVAL_RESULTS}")
    return summary


def deploy(cfg, policy, checkpoint, env_id, env_kwargs, sampler, out_dir: Path) -> dict:
    """Run ``n_episodes`` deployed episodes on the robot of ``cfg.hardware``; see the module doc."""
    # imported here: a sim evaluation needs neither ZeroMQ nor the robot drivers
    from hardware.client import connect
    from hardware.deploy import DeployRuntime
    from hardware.factory import make_robot
    from hardware.robot_io import RobotIO

    settings = cfg.deploy
    hardware = OmegaConf.to_container(cfg.hardware, resolve=True)
    env_kwargs = {**env_kwargs, **hardware.get("env_kwargs", {})}
    fps = settings.fps or checkpoint.get("config", {}).get("task", {}).get("fps")
    fps = float(fps or env_kwargs.get("policy_hz") or 0)
    if fps <= 0:
        raise ValueError("the checkpoint records no dataset fps; pass deploy.fps=<Hz>")
    server = recorder = runtime = None
    robot, where = None, "this process"
    try:
        if settings.address:
            where = settings.address
            robot = connect(where, settings.token, settings.connect_timeout)
        elif hardware.get("_target_") == SIM_ROBOT and settings.server:
            server, where = start_server(hardware, env_id, env_kwargs, settings, out_dir)
            robot = connect(where, settings.token, settings.connect_timeout)
        else:
            if hardware.get("_target_") == SIM_ROBOT:
                hardware.update(env_id=env_id, env_kwargs=env_kwargs)
            robot = make_robot(hardware)
        max_ticks = cfg.max_episode_steps or robot.info.get("max_episode_steps")
        if not max_ticks:
            raise ValueError("the robot reports no episode limit; pass max_episode_steps=<ticks>")
        robot_io = RobotIO(robot, policy.shape_meta, env_kwargs.get("action_space", "ee_delta"))
        runtime = DeployRuntime(
            robot_io,
            policy,
            fps=fps,
            act_delay=settings.act_delay,
            replan_every=settings.replan_every,
            temporal_ensembling=settings.temporal_ensembling,
            ensemble_decay=settings.ensemble_decay,
            sampler_options=sampler,
        )
        if cfg.record is not None:
            recorder = DatasetWriter.create(
                cfg.record,
                policy.shape_meta,
                fps,
                env_spec={"id": env_id, "kwargs": env_kwargs},
                provenance=default_provenance(f"eval.py hardware deploy of {cfg.checkpoint}"),
            )
        deploy_log.info(
            f"{cfg.checkpoint} on {env_id} via {where} at {fps:g} Hz: "
            f"{cfg.n_episodes} episodes of up to {max_ticks} ticks"
        )
        episodes, latency = run_deploy_episodes(cfg, robot, runtime, int(max_ticks), recorder)
        safety = {name: _safety_report(arm) for name, arm in robot.arms.items()}
    finally:
        if runtime is not None:
            runtime.close()
        if robot is not None:
            robot.close()
        if recorder is not None:
            recorder.close()
        stop_server(server)
    successes = sum(episode["success"] for episode in episodes)
    summary = {
        "checkpoint": str(cfg.checkpoint),
        "hardware": hardware,
        "deploy": OmegaConf.to_container(settings, resolve=True),
        "robot": where,
        "env_id": env_id,
        "env_kwargs": env_kwargs,
        "sampler": sampler,
        "fps": fps,
        "n_episodes": len(episodes),
        "successes": successes,
        "success_rate": successes / len(episodes),
        "success_ci95": list(wilson_interval(successes, len(episodes))),
        "length_mean": float(np.mean([episode["ticks"] for episode in episodes])),
        "latency": latency.summary(),
        "safety": safety,
        "seeds": [cfg.seed + i for i in range(len(episodes))],
        "record": None if cfg.record is None else str(cfg.record),
        "episodes": episodes,
    }
    (out_dir / EVAL_RESULTS).write_text(json.dumps(summary, indent=2))
    low, high = summary["success_ci95"]
    figures = ", ".join(
        f"{name} {fig['median_ms']:.1f}/{fig['p99_ms']:.1f}"
        for name, fig in summary["latency"].items()
        if fig["n"]
    )
    deploy_log.info(
        f"success {successes}/{len(episodes)} = {summary['success_rate']:.1%} "
        f"(95% CI {low:.1%}-{high:.1%}); latency median/p99 ms: {figures}"
    )
    deploy_log.info(f"results: {out_dir / EVAL_RESULTS}")
    return summary


def run_deploy_episodes(cfg, robot, runtime, max_ticks: int, recorder) -> tuple[list, LatencyStats]:
    """Episodes ``seed + i``: reset the robot's task, run the runtime, record if asked."""
    episodes, latency = [], LatencyStats()
    keys = [*runtime.robot_io.shape_meta["obs"], "action"]
    for i in range(cfg.n_episodes):
        seed = cfg.seed + i
        robot.reset_episode(seed)
        result = runtime.run_episode(
            max_ticks,
            is_success=lambda: bool(robot.task_info()["is_success"]),
            record=recorder is not None,
        )
        latency.merge(result.latency)
        episodes.append(
            {
                "seed": seed,
                "success": bool(result.success),
                "ticks": result.ticks,
                "actions_sent": result.actions_sent,
                "actions_not_forwarded": result.actions_not_forwarded,  # withheld by the layer
                "missed_ticks": result.missed_ticks,
                "stale_actions": result.stale_actions,
            }
        )
        deploy_log.info(f"episode {i}: {episodes[-1]}")
        if recorder is not None and result.frames:
            sent = [key for key in SENT_KEYS if key in result.frames[0]]  # what reached the arm
            recorded = [*keys, *sent]
            steps = {key: np.stack([frame[key] for frame in result.frames]) for key in recorded}
            recorder.append_episode(steps, {"seed": seed, "success": result.success})
    return episodes, latency


def _safety_report(arm) -> dict:
    """The safety layer's counts (forwarded commands, interventions by kind) for the report."""
    if hasattr(arm, "safety"):  # a served arm: its layer is in the server process
        return arm.safety(last=0)["summary"]
    return dict(arm.summary()) if hasattr(arm, "summary") else {}


def start_server(hardware: dict, env_id: str, env_kwargs: dict, settings, out_dir: Path):
    """``(process, address)``: ``python -m hardware.server`` serving the sim robot of
    ``hardware`` on loopback; its output goes to ``server.log`` in the run directory. The token
    travels in the server's environment, so it is neither logged nor shown by ``ps``."""
    from hardware.server import TOKEN_VARIABLE

    address = f"tcp://127.0.0.1:{settings.port or _free_port()}"
    keys = {
        "robot": "sim",
        "address": address,
        "env_id": env_id,
        "+env_kwargs": env_kwargs,  # +: a mapping merged into the schema's empty one
        "seed": hardware.get("seed", 0),
        "+limits": hardware.get("limits") or {},
        "camera_fps": hardware.get("camera_fps"),
    }
    command = [sys.executable, "-m", "hardware.server"]
    command += [override(key, value) for key, value in keys.items()]
    environment = {**os.environ, TOKEN_VARIABLE: settings.token} if settings.token else None
    deploy_log.info(f"starting the robot server: {shlex.join(command)}")
    with open(out_dir / "server.log", "wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=environment)
    return process, address


def stop_server(process) -> None:
    """Ask the server to shut down (SIGINT, as Ctrl-C), and kill it if it has not in 10 s."""
    if process is None or process.poll() is not None:
        return
    process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _free_port() -> int:
    """A loopback TCP port nobody listens on now (the OS's pick)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@hydra.main(
    config_path=str(conf_dir()),
    config_name="eval",
    version_base="1.3",
)
def hydra_main(cfg: DictConfig) -> None:
    run_in_run_dir(cfg, lambda: run(cfg))


def main() -> None:
    run_hydra_program(USAGE, hydra_main)
