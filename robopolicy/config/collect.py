"""Schema of datasets/collect.py's config (conf/collect.yaml): scripted-expert demonstrations,
optionally noise-injected (DART), human-styled (teleop) or driven by a trained policy (DAgger),
into a zarr dataset."""

from __future__ import annotations

from dataclasses import dataclass, field

from omegaconf import II, MISSING

from robopolicy.config.checks import ConfigError, at_least, in_range, non_negative, require
from robopolicy.config.console import ConsoleOptions
from robopolicy.config.run import TaskConfig, check_file


@dataclass
class DaggerConfig:
    """DAgger (sim/rollout.py): a trained policy drives, the expert labels every visited state."""

    checkpoint: str | None = None  # the policy checkpoint that drives (null: the expert drives,
    #   plain demos); its episodes are all kept, failed ones included (use a seed range of their
    #   own)
    use_ema: bool = True  # drive with the checkpoint's EMA weights (what eval.py runs)

    def check(self) -> None:
        check_file(self, "checkpoint", "a policy checkpoint (.safetensors) written by train.py")


@dataclass
class TeleopConfig:
    """How human-like the expert's actions are (sim.experts.TeleopStyle)."""

    action_noise_std: float = 0.0  # std of Gaussian noise on each action entry, in action units
    pause_prob: float = 0.0  # chance per step of starting a pause (the arm holds still)
    pause_steps: list[int] = field(default_factory=lambda: [2, 6])  # a pause lasts between these
    #   many steps, inclusive

    def check(self) -> None:
        non_negative(self, "action_noise_std")
        in_range(self, 0, 1, "pause_prob")
        steps = list(self.pause_steps)
        require(
            len(steps) == 2 and 1 <= steps[0] <= steps[1],
            "pause_steps",
            steps,
            "expected [shortest, longest] with 1 <= shortest <= longest",
        )


@dataclass
class CollectConfig(ConsoleOptions):
    """datasets/collect.py: scripted-expert demonstrations -> a zarr dataset."""

    task: TaskConfig = MISSING  # conf/task/<name>.yaml: its env, expert, fps, dataset path
    n_episodes: int = 50  # successful episodes to write (failed ones are discarded)
    out: str = II("task.dataset_path")  # dataset to create: a *.zarr directory or a *.zarr.zip
    overwrite: bool = False  # replace an existing dataset at `out` (false: stop with an error)
    append: bool = False  # add the episodes to the dataset at `out` (same task and shape_meta)
    #   if it exists
    seed: int = 0  # episode i of the run uses env/expert seed `seed + i`
    max_failures: int = 20  # give up (with an error) when more than this many episodes fail
    n_workers: int = 1  # worker processes running episodes in parallel, each with its own env
    store_sim_state: bool = True  # also store the raw MuJoCo state per step, to re-render
    #   observations
    write_every: int = 25  # episodes written to the dataset together (one zarr write per array
    #   for the group: ~10x faster than one at a time for short episodes); a crash loses at most
    #   the episodes not yet written, never those already in the dataset
    injected_noise_std: float = 0.0  # DART: Gaussian noise on the executed actions only (the
    #   dataset keeps the expert's clean actions), so demos show corrections from slightly-off
    #   states (sim/rollout.py)
    dagger: DaggerConfig = field(default_factory=DaggerConfig)
    teleop: TeleopConfig = field(default_factory=TeleopConfig)

    def check(self) -> None:
        at_least(self, 1, "n_episodes", "n_workers", "write_every")
        at_least(self, 0, "max_failures")
        non_negative(self, "injected_noise_std")
        require(bool(self.out), "out", self.out, "expected the path of the dataset to write")
        if self.overwrite and self.append:
            raise ConfigError(
                "append", True, "expected at most one of overwrite=true and append=true"
            )
