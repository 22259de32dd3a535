"""Schema of train.py's config (conf/config.yaml): the run's own keys, ``task``, ``data``,
``eval`` and ``logger``; the group nodes ``policy``, ``backbone`` and ``algo`` are typed by the
schema their group file selects (robopolicy/config/policy.py, algos.py, chain_ppo.py).

Also here: the parts eval.py and collect.py share with it (the task, the sampling options, the
device and thread settings).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import II, MISSING

from robopolicy.config.checks import (
    ConfigError,
    at_least,
    in_range,
    non_negative,
    one_of,
    require,
)
from robopolicy.config.console import ConsoleOptions
from robopolicy.config.policy import (
    AUTOCAST_DTYPES,
    DIFFUSION_SAMPLERS,
    FLOW_SOLVERS,
    TIMESTEP_SPACINGS,
)

END_PADDING = ("full", "action_steps")  # robopolicy.data.sampler.END_PADDING
PAD_ACTION = ("auto", "hold", "repeat")  # robopolicy.data.sampler.PAD_ACTION
WANDB_MODES = ("offline", "online", "disabled")
RL_ALGORITHMS = ("dppo", "reinflow", "fpo", "dsrl")  # the algorithms that fine-tune a checkpoint
DEVICE = re.compile(r"auto|cpu|mps|cuda(:\d+)?")
RUNTIMES = ("eager", "onnx")  # robopolicy.policies.runtime.RUNTIMES


def check_runtime(node: Any) -> None:
    """``device`` and ``torch_threads``, as train.py and eval.py take them."""
    require(
        DEVICE.fullmatch(node.device) is not None,
        "device",
        node.device,
        "expected auto, cpu, cuda, cuda:N or mps",
    )
    at_least(node, 1, "torch_threads")


def check_file(node: Any, name: str, what: str) -> None:
    """``name`` is null or the path of an existing file (relative to the launch directory)."""
    path = getattr(node, name)
    if path is not None:
        require(Path(path).is_file(), name, path, f"no such file; expected the path of {what}")


@dataclass
class TaskConfig:
    """A task (conf/task/<name>.yaml): its env, its demonstrations, its observation keys."""

    name: str = MISSING  # short task name, used in run and dataset names
    env_id: str = MISSING  # gymnasium id, registered by importing env_modules (`import sim`)
    fps: int = MISSING  # policy steps per second; the dataset's fps and the env's policy_hz
    max_episode_steps: int | None = None  # time limit in policy steps (truncation; null: the
    #   env's registered limit)
    dataset_path: str = MISSING  # where collect.py writes and training reads demos
    env_kwargs: dict[str, Any] = field(default_factory=dict)  # passed to gym.make(env_id,
    #   **env_kwargs); also stored in the dataset's env_spec. The env checks them: train.py and
    #   collect.py build it once at start-up
    obs_keys: dict[str, list[str]] = field(default_factory=dict)  # observation-key sets a
    #   policy can be trained on (config.yaml's `obs`)

    def check(self) -> None:
        at_least(self, 1, "fps", "max_episode_steps")
        require(bool(self.name), "name", self.name, "expected a non-empty task name")


@dataclass
class SamplerOptions:
    """Sampling options for predict_action; null entries keep the policy's own."""

    num_steps: int | None = None  # sampling steps (null: the policy's num_inference_steps)
    sampler: str | None = None  # diffusion only: ddim | ddpm (null: the policy's default)
    eta: float | None = None  # diffusion only: DDIM eta, 0 deterministic (null: the policy's)
    solver: str | None = None  # flow only: euler | midpoint | heun (null: the policy's default)
    noise_std: float | None = None  # flow only: per-step noise, 0 deterministic (null: the
    #   policy's default)
    timestep_spacing: str | None = None  # diffusion only: linspace | leading | trailing (null:
    #   the policy's timestep_spacing)
    autocast_dtype: str | None = None  # none (float32) | bf16 (the observation encoder and the
    #   denoiser under bfloat16 autocast; on this project's CPU it was ~1.35x slower at batch 1:
    #   docs/benchmarks.md, issue 18); null: none
    runtime: str = "eager"  # eager (the policy's torch code) | onnx (the encoder and the whole
    #   deterministic chain as one graph on onnxruntime, cached per weights and settings:
    #   robopolicy/policies/runtime.py)

    def check(self) -> None:
        at_least(self, 1, "num_steps")
        one_of(self, "sampler", DIFFUSION_SAMPLERS)
        in_range(self, 0, 1, "eta")
        one_of(self, "solver", FLOW_SOLVERS)
        non_negative(self, "noise_std")
        one_of(self, "timestep_spacing", TIMESTEP_SPACINGS)
        one_of(self, "autocast_dtype", AUTOCAST_DTYPES)
        one_of(self, "runtime", RUNTIMES)
        stochastic = self.sampler == "ddpm" or bool(self.eta) or bool(self.noise_std)
        require(
            self.runtime != "onnx" or not stochastic,
            "runtime",
            self.runtime,
            "onnx runs a deterministic sampler only (ddim with eta=0, or noise_std=0): use "
            "runtime=eager for ddpm, eta > 0 or noise_std > 0",
        )
        require(
            self.runtime != "onnx" or self.autocast_dtype in (None, "none"),
            "autocast_dtype",
            self.autocast_dtype,
            "none with runtime=onnx (the graph runs in float32)",
        )


@dataclass
class DataConfig:
    """The training data: loading, the validation split, batches and window padding."""

    in_memory: bool = True  # copy the dataset's compressed chunks into RAM before training
    decoded_cache_mb: int = 2048  # decode every image frame the policy uses into RAM once, at
    #   start, when they take at most this many MiB decoded (PushCube's 9k steps of two 96x96
    #   cameras: 500 MiB): an image sample is then a numpy gather, like low-dim data; above it,
    #   each sample decodes its frames from the compressed chunks (0: always). train.py prints
    #   which path it took
    preflight_decode_images_mb: int = 1024  # train.py's pre-flight decodes every image chunk
    #   (and checks its CRC-32) when all images are at most this many MiB uncompressed (~10 s
    #   from a cold disk); above, it checks each chunk's presence and header only (seconds for
    #   any size; datasets/inspect.py verify=true decodes everything)
    val_ratio: float = 0.05  # share of episodes held out for the validation loss (episode-level
    #   split)
    max_train_episodes: int | None = None  # cap on training episodes, for data-scaling runs
    #   (null: all)
    batch_size: int = 256  # samples per optimizer step
    num_workers: int | None = 0  # loader processes (0: in the training process, best for
    #   low-dim data on few cores; image datasets want 1-2; null: one per available core)
    val_batches: int = 8  # batches of the validation set scored at each validation
    end_padding: str = "full"  # how far windows run past an episode's end: full (every step is
    #   a step a window conditions on; short episodes need it) | action_steps (diffusion_policy's
    #   rule: n_action_steps - 1, which never trains on the last horizon - n_action_steps -
    #   n_obs_steps + 1 steps of an episode; robopolicy/data/sampler.py)
    pad_action: str = "auto"  # padded actions past the end: auto (the dataset's hold action
    #   where it defines one, else repeat) | hold | repeat (the last action)

    def check(self) -> None:
        require(0 <= self.val_ratio < 1, "val_ratio", self.val_ratio, "expected a number in [0, 1)")
        at_least(self, 1, "max_train_episodes", "batch_size", "val_batches")
        at_least(self, 0, "num_workers", "preflight_decode_images_mb", "decoded_cache_mb")
        one_of(self, "end_padding", END_PADDING)
        one_of(self, "pad_action", PAD_ACTION)


@dataclass
class TrainEvalConfig:
    """The closed-loop evaluations of a training run (robopolicy/eval/evaluate.py)."""

    n_episodes: int = 50  # episodes of the final evaluation that train.py runs after training
    n_episodes_during_training: int = 20  # episodes of each periodic evaluation
    n_envs: int = 2  # parallel envs (worker processes) for rollouts
    seed: int = 100000  # first evaluation seed (far from the collection seeds 0, 1, ...)
    video_episodes: int = 1  # episodes recorded as mp4 at each evaluation (0: none)
    sampler: SamplerOptions = field(default_factory=SamplerOptions)

    def check(self) -> None:
        at_least(self, 1, "n_episodes", "n_episodes_during_training", "n_envs")
        at_least(self, 0, "video_episodes")


@dataclass
class LoggerConfig:
    """Where metrics go besides <run_dir>/metrics.jsonl and the plots (conf/logger/)."""

    wandb_mode: str = "offline"  # offline (no account or network; `wandb sync` uploads later) |
    #   online (needs `wandb login` and network) | disabled
    project: str = "robopolicy"  # wandb project name

    def check(self) -> None:
        one_of(self, "wandb_mode", WANDB_MODES)


@dataclass
class TrainConfig(ConsoleOptions):
    """train.py: behaviour cloning, or RL fine-tuning of a trained policy (conf/config.yaml)."""

    task: TaskConfig = MISSING  # conf/task/<name>.yaml
    policy: Any = MISSING  # conf/policy/<kind>.yaml (robopolicy/config/policy.py)
    backbone: Any = MISSING  # conf/backbone/<name>.yaml (robopolicy/config/policy.py)
    algo: Any = MISSING  # conf/algo/<name>.yaml (robopolicy/config/algos.py, chain_ppo.py)
    logger: LoggerConfig = field(default_factory=LoggerConfig)  # conf/logger/<name>.yaml
    seed: int = 0  # seeds torch, numpy, python, the episode split and the data order
    device: str = "auto"  # auto (CUDA when present, else CPU) | cpu | cuda | cuda:N
    torch_threads: int | None = None  # torch intra-op threads (null: torch's default, one per
    #   core); 1 is faster when other processes (env workers, other jobs) share the cores
    amp: bool = True  # bfloat16 autocast on CUDA (ignored on CPU)
    obs: str = "state"  # which of the task's observation-key sets the policy sees: state | image
    obs_keys: list[str] = II("task.obs_keys.${obs}")  # the observation keys themselves
    #   (override to choose freely)
    env_modules: list[str] = field(default_factory=lambda: ["sim"])  # modules imported in every
    #   env process to register the gymnasium ids
    checkpoint: str | None = None  # RL fine-tuning (algo=dppo | reinflow | fpo | dsrl): the
    #   pretrained policy to start from
    resume: str | None = None  # path to a checkpoint (e.g. <run>/checkpoints/latest.safetensors)
    #   to continue from
    resume_new_dir: bool = False  # with resume: false continues in the checkpoint's run
    #   directory (metrics.jsonl, plots, checkpoints, train.log and the wandb run go on there);
    #   true writes the continuation to a new run directory
    data: DataConfig = field(default_factory=DataConfig)
    eval: TrainEvalConfig = field(default_factory=TrainEvalConfig)
    collect: Any = None  # experiments only (conf/experiment/): how bench/suite.py and
    #   scripts/main_job.py make the recipe's dataset, and the commands train.py names when it
    #   is missing (robopolicy/config/collect_plan.py)

    def check(self) -> None:
        check_runtime(self)
        require(len(self.obs_keys) > 0, "obs_keys", [], "expected at least one observation key")
        check_file(self, "checkpoint", "a checkpoint (.safetensors) written by train.py")
        check_file(self, "resume", "a checkpoint (.safetensors) written by train.py")
        if self.algo.name in RL_ALGORITHMS and not (self.checkpoint or self.resume):
            raise ConfigError(
                "checkpoint",
                None,
                f"algo={self.algo.name} fine-tunes a pretrained policy: expected checkpoint=PATH "
                "(e.g. a BC run's checkpoints/latest.safetensors)",
            )
        if self.algo.name == "dsrl" and self.eval.sampler.runtime != "eager":
            raise ConfigError(
                "eval.sampler.runtime",
                self.eval.sampler.runtime,
                "algo=dsrl evaluates its noise actor and the policy together: expected eager",
            )
