"""Schema of eval.py's config (conf/eval.yaml): a checkpoint evaluated closed-loop in sim, or
deployed on a robot (``hardware=<robot>``, robopolicy/config/hardware.py)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from omegaconf import MISSING

from robopolicy.config.checks import ConfigError, at_least, non_negative, positive, require
from robopolicy.config.console import ConsoleOptions
from robopolicy.config.run import SamplerOptions, check_file, check_runtime


@dataclass
class DeployConfig:
    """Hardware only: how to reach the robot, and the real-time runtime (hardware/deploy.py)."""

    address: str | None = None  # a robot server already running, e.g. tcp://10.0.0.2:5555
    #   (null: see server)
    server: bool = True  # the sim robot runs in its own process (python -m hardware.server) on
    #   loopback; false: in this process. Other robots are built here by hardware.factory
    port: int | None = None  # loopback port of the server started here (null: a free one,
    #   picked by the OS)
    token: str | None = None  # shared secret of the server (needed when it binds a non-loopback
    #   address)
    connect_timeout: float = 60.0  # seconds to wait for the server (it builds the MuJoCo world
    #   first)
    fps: float | None = None  # control rate in Hz (null: the dataset fps recorded in the
    #   checkpoint)
    act_delay: float = 0.03  # seconds from a tick's observation to its action: the per-tick
    #   inference budget (0: the action paired with the newest frame is always late and dropped)
    replan_every: int | None = None  # ticks between policy queries (null: n_action_steps; 1
    #   with ensembling)
    temporal_ensembling: bool = False  # average the overlapping chunks' actions for each tick
    #   (ACT)
    ensemble_decay: float = 0.01  # ACT's m in the weights exp(-m * i), i = 0 for the oldest
    #   prediction

    def check(self) -> None:
        if self.port is not None:
            require(1 <= self.port <= 65535, "port", self.port, "expected a port in [1, 65535]")
        positive(self, "connect_timeout", "fps")
        non_negative(self, "act_delay", "ensemble_decay")
        at_least(self, 1, "replan_every")


@dataclass
class EvalConfig(ConsoleOptions):
    """eval.py: closed-loop evaluation of a checkpoint, or a deploy run (conf/eval.yaml)."""

    checkpoint: str = MISSING  # path to a .safetensors checkpoint written by train.py
    n_episodes: int = 100  # seeded episodes to run
    n_envs: int = 2  # parallel envs (worker processes)
    seed: int = 100000  # first episode seed (episode i uses seed + i)
    video_episodes: int = 2  # first episodes recorded as mp4 (0: none)
    use_ema: bool = True  # evaluate the EMA weights when the checkpoint has them
    device: str = "auto"  # auto (CUDA when present, else CPU) | cpu | cuda | cuda:N
    torch_threads: int | None = None  # torch intra-op threads (null: torch's default, one per
    #   core); 1 is faster when other processes (env workers, other jobs) share the cores
    env_modules: list[str] = field(default_factory=lambda: ["sim"])  # modules imported to
    #   register the gymnasium ids
    env_id: str | None = None  # env to evaluate in (null: the one recorded in the checkpoint)
    env_kwargs: dict[str, Any] = field(default_factory=dict)  # merged over the checkpoint's env
    #   kwargs, e.g. +env_kwargs.reward_type=sparse
    max_episode_steps: int | None = None  # time limit override (null: the env's registered
    #   limit); on hardware, policy ticks per episode (null: the limit the robot reports)
    record: str | None = None  # hardware only: zarr dataset to record the deployed episodes
    #   into (null: none)
    deploy: DeployConfig = field(default_factory=DeployConfig)
    sampler: SamplerOptions = field(default_factory=SamplerOptions)
    hardware: Any = None  # conf/hardware/<robot>.yaml (null: evaluate in sim, in vector envs)

    def check(self) -> None:
        check_file(self, "checkpoint", "a checkpoint (.safetensors) written by train.py")
        at_least(self, 1, "n_episodes", "n_envs", "max_episode_steps")
        at_least(self, 0, "video_episodes")
        check_runtime(self)
        if self.record is not None and self.hardware is None:
            raise ConfigError(
                "record", self.record, "record=PATH records deploy runs: it needs hardware=<robot>"
            )
