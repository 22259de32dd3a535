"""Record teleoperated demonstrations into a zarr dataset, on the sim arm or a real one.

    robopolicy-teleop task=push_cube out=datasets/data/push_teleop.zarr
    robopolicy-teleop hardware=ur5e device=spacemouse task.env_kwargs.obs_mode=rgb

(``python datasets/teleop.py ...`` from the repository.) The robot comes from
``conf/hardware/<name>.yaml`` (``hardware=NAME``) through ``hardware.factory.make_robot`` (every
arm behind its safety layer); the default, ``sim``, is the MuJoCo arm stepping in real time and
playing the task's env, so demos are collected on it exactly as on a real arm. Every key
(``task.*`` overrides the task config too): conf/teleop.yaml,
robopolicy/config/dataset_tools.py TeleopRecordingConfig.

The loop runs at the dataset's fps. Each tick it reads one observation frame through
``hardware.robot_io.RobotIO`` (the task's ``shape_meta``, the keys and dtypes robopolicy-collect
records), polls the teleop device (``hardware/teleop.py``: keys are listed when it starts),
sends the ``ee_delta`` action to be reached by the next tick, and, while an episode records,
keeps the frame with that action: what was commanded, in the dataset's action space. The arm
is commanded between episodes too, so the operator can set it up.

``n`` starts an episode (on a robot whose episodes software can reset, the sim, the world is
reset with seed ``seed + i`` first), ``y`` saves it (one atomic append through
``DatasetWriter``; the sim's episodes also store the seed and whether the task was solved),
``x`` discards it, ``q`` (or the end of the input, or Ctrl-C) quits, discarding an unsaved
episode. An episode reaching the task's ``max_episode_steps`` is saved on its own, so every demo
fits the time limit that evaluation uses. ``episodes=N`` quits after N saved episodes. A run that
created its dataset and saved no episode removes it on exit, so the next run starts afresh
(``append=true`` also takes an existing dataset that holds no episode yet).
"""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

import numpy as np
from omegaconf import DictConfig, OmegaConf

from robopolicy.config import ConfigError, validate
from robopolicy_cli.command import Usage, run_config_tool

SIM_ROBOT = "hardware.sim_robot.make_sim_robot"
USAGE = Usage(
    summary="Record teleoperated demonstrations into a zarr dataset, on the sim arm (default) or "
    "a real one; the device's keys are listed when it starts.",
    config="teleop",
    schema="robopolicy/config/dataset_tools.py TeleopRecordingConfig",
    examples=(
        "task=push_cube out=datasets/data/push_teleop.zarr",
        "hardware=ur5e device=spacemouse task.env_kwargs.obs_mode=rgb",
    ),
    groups=("hardware",),
)


def task_shape_meta(task: dict) -> dict:
    """The dataset ``shape_meta`` of the task's env, exactly as ``collect.py`` records it."""
    import gymnasium as gym

    import sim  # noqa: F401  (registers the env ids)
    from robopolicy_cli.collect import shape_meta_for

    env = gym.make(task["env_id"], **task["env_kwargs"])
    try:
        return shape_meta_for(env)
    finally:
        env.close()


def robot_config(composed: DictConfig, task: dict, seed: int) -> dict:
    """The robot of ``hardware=NAME``, resolved; the sim robot plays the task's env."""
    hardware = OmegaConf.to_container(composed.hardware, resolve=True)
    if hardware.get("_target_") == SIM_ROBOT:
        hardware.update(env_id=task["env_id"], env_kwargs=task["env_kwargs"], seed=seed)
    return hardware


def robot_label(hardware: dict) -> str:
    """The robot in the dataset's provenance: the sim arm, or the real arms' drivers."""
    if hardware.get("_target_") == SIM_ROBOT:
        return "the sim arm"
    return ", ".join(arm["_target_"] for arm in hardware.get("arms", {}).values())


class TeleopRecorder:
    """The recording loop (module doc): ``robot_io`` (a ``RobotIO`` in ``ee_delta``),
    ``teleop`` (a ``hardware.teleop.TeleopDevice``), ``writer`` (a ``DatasetWriter``)."""

    def __init__(self, robot_io, teleop, writer, fps, max_steps, seed=0, episodes=0, log=print):
        self.io = robot_io
        self.robot = robot_io.robot
        self.teleop = teleop
        self.writer = writer
        self.period = 1.0 / float(fps)
        self.max_steps = int(max_steps)
        self.seed = int(seed)
        self.episodes = int(episodes)
        self.log = log
        self.resettable = self.robot.task is not None
        self.started = 0  # episodes started, for their seeds
        self.saved = 0  # episodes saved by this run
        self.steps: list[tuple[dict, np.ndarray]] | None = None  # None: not recording

    def run(self) -> int:
        """Run until quit (Ctrl-C too) or ``episodes`` saved; returns the number of episodes
        saved (an episode still recording is discarded)."""
        self.saved = 0
        try:
            self._loop()
        except KeyboardInterrupt:
            self.log("interrupted (Ctrl-C)")
        self._discard()
        return self.saved

    def _loop(self) -> None:
        tick = time.monotonic()
        while True:
            command = self.teleop.poll()
            for event in command.events:
                if event == "start":
                    self._start()
                elif event == "save":
                    self.saved += self._save()
                elif event == "discard":
                    self._discard()
            if "quit" in command.events or (self.episodes and self.saved >= self.episodes):
                return
            obs, _ = self.io.observe()
            action = command.ee_delta_action()
            self.io.act(action, tick + self.period)
            if self.steps is not None:
                self.steps.append((obs, action))
                if len(self.steps) >= self.max_steps:
                    self.log(f"episode reached max_episode_steps={self.max_steps}")
                    self.saved += self._save()
            tick += self.period
            time.sleep(max(tick - time.monotonic(), 0.0))

    def _start(self) -> None:
        if self.steps is not None:
            self.log("already recording: save (y) or discard (x) first")
            return
        if self.resettable:
            self.robot.reset_episode(self.seed + self.started)
        self.started += 1
        self.steps = []
        self.log(f"recording episode {self.writer.n_episodes}")

    def _save(self) -> int:
        if not self.steps:
            self.log("nothing recorded to save")
            self.steps = None
            return 0
        keys = self.steps[0][0].keys()
        episode = {key: np.stack([obs[key] for obs, _ in self.steps]) for key in keys}
        episode["action"] = np.stack([action for _, action in self.steps]).astype(np.float32)
        meta = {}
        if self.resettable:
            meta = {
                "seed": self.seed + self.started - 1,
                "success": bool(self.robot.task_info()["is_success"]),
            }
        index = self.writer.append_episode(episode, episode_meta=meta)
        self.log(f"saved episode {index}: {len(self.steps)} steps {meta}")
        self.steps = None
        return 1

    def _discard(self) -> None:
        if self.steps is not None:
            self.log(f"discarded an episode of {len(self.steps)} steps")
        self.steps = None


def main(argv: list[str] | None = None) -> int:
    return run_config_tool("teleop", USAGE, argv, record)


def record(composed: DictConfig) -> int:
    """Check the config, build the robot and the writer, run the recorder (module doc)."""
    cfg = validate(composed)
    from hardware.factory import make_robot
    from hardware.robot_io import RobotIO

    task = OmegaConf.to_container(composed.task, resolve=True)
    action_space = task["env_kwargs"].get("action_space", "ee_delta")
    if action_space != "ee_delta":
        raise ConfigError(
            "task.env_kwargs.action_space",
            action_space,
            "expected ee_delta: teleop records ee_delta actions",
        )
    default_out = Path(task["dataset_path"]).with_name(f"{Path(task['dataset_path']).stem}_teleop")
    out = Path(cfg.out or f"{default_out}.zarr")
    if out.exists() and not (cfg.append or cfg.overwrite):
        raise ConfigError(
            "out", out, "exists; pass append=true to add episodes or overwrite=true to replace it"
        )
    shape_meta = task_shape_meta(task)
    hardware = robot_config(composed, task, cfg.seed)
    robot = make_robot(hardware)
    try:
        robot_io = RobotIO(robot, shape_meta, action_space)
        created = not (cfg.append and out.exists())  # false: episodes go to an existing store
        writer = open_writer(cfg, task, shape_meta, hardware, out, created)
        try:
            saved = run_recorder(cfg, task, robot_io, writer)
        finally:
            if created and writer.n_episodes == 0:
                remove_store(out)
    finally:
        robot.close()
    kept = out.exists()
    print(f"saved {saved} episodes to {out}" if kept else f"saved no episode; removed {out}")
    return 0


def remove_store(out: Path) -> None:
    """Remove a dataset this run created and saved no episode to: left, it would stop the next
    run (``exists``) for nothing."""
    shutil.rmtree(out) if out.is_dir() else out.unlink(missing_ok=True)


def open_writer(cfg, task: dict, shape_meta: dict, hardware: dict, out: Path, create: bool):
    """The ``DatasetWriter`` of ``out``: a new dataset when ``create``, else the existing one."""
    from robopolicy.data.writer import DatasetWriter, default_provenance

    if not create:
        return DatasetWriter.open_for_append(out)
    provenance = default_provenance(f"robopolicy-teleop ({cfg.device} on {robot_label(hardware)})")
    env_spec = {
        "id": task["env_id"],
        "kwargs": task["env_kwargs"],
        "max_episode_steps": task["max_episode_steps"],
    }
    return DatasetWriter.create(
        out, shape_meta, task["fps"], env_spec, provenance, overwrite=cfg.overwrite
    )


def run_recorder(cfg, task: dict, robot_io, writer) -> int:
    """The recording loop with the operator's device, into ``writer`` (closed on return)."""
    from hardware.teleop import KEYS_HELP, make_teleop

    with writer, make_teleop(cfg.device, speed=cfg.speed) as teleop:
        print(KEYS_HELP, file=sys.stderr)
        recorder = TeleopRecorder(
            robot_io,
            teleop,
            writer,
            task["fps"],
            task["max_episode_steps"],
            cfg.seed,
            cfg.episodes,
            log=lambda message: print(f"[teleop] {message}", file=sys.stderr),
        )
        return recorder.run()
