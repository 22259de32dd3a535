"""Schemas of the dataset tools' configs: robopolicy-inspect (conf/inspect.yaml), robopolicy-convert
(conf/convert.yaml) and robopolicy-teleop (conf/teleop.yaml). Like every program they take
``key=value`` arguments, composed and checked as here before any work."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from omegaconf import II, MISSING

from robopolicy.config.checks import (
    ConfigError,
    at_least,
    default_of,
    in_range,
    one_of,
    positive,
    require,
)
from robopolicy.config.run import END_PADDING, TaskConfig


@dataclass
class QualityConfig:
    """robopolicy-inspect's QA report (robopolicy/data/quality.py): a table and a ``flags``
    section in the terminal, and for programs ``<out>/qa.json`` (always written; its fields:
    datasets/README.md "Quality report"), with qa_lengths.png, qa_coverage.png and
    qa_divergence.png beside it. Actions are measured as the policy sees them (the default
    limits normalization: each dimension in units of half its range over the dataset); a distance
    between two actions is the RMS over dimensions (a gripper open against closed, in a 7-dim
    action: 0.76)."""

    end_padding: str = "full"  # the sampler rule training uses (train.py's data.end_padding):
    #   coverage under it is flagged (the table shows every rule)
    coverage_min: float = 0.95  # flag when fewer steps than this serve as a conditioning step
    #   (train.py warns at the same share: robopolicy/algos/bc.py COVERAGE_WARNING)
    neighbours: int = 10  # k: the nearest states from other episodes of each query step
    query_steps: int = 2000  # steps drawn at random (without replacement) for divergence and
    #   modes, all of them where fewer: bounds the time (about 1 s at 100k steps)
    seed: int = 0  # seed of that draw
    divergence_threshold: float = 0.4  # a query step diverges when its action is on average
    #   this far from its neighbours' (100 scripted PickLift / PushCube demos: 2-9% of steps)
    divergence_quantile: float = 0.9  # the high quantile of divergence reported beside its mean
    divergence_share_max: float = 0.15  # flag when more query steps than this diverge
    mode_distance: float = 0.5  # actions closer than this (average linkage) are one mode
    mode_min_share: float = 0.2  # a mode holds at least this share of a query step's action and
    #   its neighbours' (a lone noisy action is no mode)
    multimodal_share_max: float = 0.25  # flag when more query steps than this have >= 2 modes
    #   (modes exist at forks only: AroundObstacle's left / right gives 13%)
    outlier_k: float = 3.5  # an episode's length, jerk or idle share is an outlier when its
    #   modified z-score |x - median| / (1.4826 MAD) exceeds this (Iglewicz and Hoaglin's 3.5)
    idle_threshold: float = 0.05  # a step is idle when no action dimension moves more than this
    #   (a delta dimension, hold "zero": its value; any other: its change)

    def check(self) -> None:
        one_of(self, "end_padding", END_PADDING)
        at_least(self, 1, "neighbours", "query_steps")
        positive(self, "divergence_threshold", "mode_distance", "outlier_k", "idle_threshold")
        in_range(
            self,
            0,
            1,
            "coverage_min",
            "divergence_quantile",
            "divergence_share_max",
            "mode_min_share",
            "multimodal_share_max",
        )


@dataclass
class InspectConfig:
    """robopolicy-inspect: a dataset's statistics, QA report, an image grid and an episode
    video, or with ``verify=true`` every chunk decoded and every problem listed."""

    path: str = MISSING  # the dataset: ours or a diffusion_policy store (.zarr directory or
    #   .zarr.zip)
    episode: int = 0  # the episode shown in the video
    out: str | None = None  # folder for grid.png, the video, qa.json and the QA plots (null:
    #   <dataset name>_inspect beside the dataset)
    verify: bool = False  # instead: read and decode every chunk of every array, one line per
    #   problem and a summary; exit status 2 if there is any
    policy: Any = MISSING  # conf/policy/<name>.yaml (policy=NAME): the coverage table's
    #   chunking defaults to its own
    backbone: Any = MISSING  # conf/backbone/<name>.yaml: the policy config's denoiser (unused
    #   here; the policy's config refers to it)
    horizon: int = II("policy.args.horizon")  # chunking for coverage (table and QA): the window
    #   length, the steps a window conditions on, the actions it executes
    n_obs_steps: int = II("policy.args.n_obs_steps")
    n_action_steps: int = II("policy.args.n_action_steps")
    qa: QualityConfig = field(default_factory=QualityConfig)  # the QA report's settings

    def check(self) -> None:
        at_least(self, 0, "episode")
        at_least(self, 1, "horizon", "n_obs_steps", "n_action_steps")


# robopolicy-convert's commands, each: the keys it takes beyond src, dst and overwrite
CONVERSIONS = {
    "robomimic-to-zarr": ("fps",),  # robomimic HDF5 -> our zarr
    "zarr-to-robomimic": ("next_obs",),  # our zarr -> robomimic HDF5
    "diffusion-policy-to-zarr": ("fps", "env_spec", "shape_meta"),  # diffusion_policy -> ours
    "lerobot-to-zarr": ("rename", "drop", "env_spec"),  # LeRobot v2.0 / v2.1 / v3.0 -> ours
    "zarr-to-lerobot": ("rename", "drop", "task", "robot_type", "crf", "codebase_version"),
}
COMMAND_KEYS = sorted({key for keys in CONVERSIONS.values() for key in keys})  # refused by the
#   commands that do not take them, unless left at their defaults


@dataclass
class ConvertConfig:
    """robopolicy-convert COMMAND src=IN dst=OUT ...: one dataset converted into another format;
    the output appears only once complete (robopolicy.data.convert)."""

    command: str = MISSING  # a key of CONVERSIONS, the first word on the command line
    src: str = MISSING  # the input dataset (.hdf5, or a .zarr directory or .zarr.zip)
    dst: str = MISSING  # the output to write (same kinds)
    overwrite: bool = False  # replace an existing output (false: refuse it)
    fps: float | None = None  # control rate of the demos: required by diffusion-policy-to-zarr;
    #   robomimic-to-zarr reads env_args' env_kwargs.control_freq where null
    next_obs: bool = False  # zarr-to-robomimic: add next_obs (obs shifted one step, the last
    #   repeated) to a dataset that has none
    env_spec: Any = None  # diffusion-policy-to-zarr: the env spec ({id: ..., kwargs: {...}}),
    #   as a mapping, JSON text or the path of a .json file (null: none recorded)
    shape_meta: Any = None  # diffusion-policy-to-zarr: shape_meta, given as env_spec is
    #   (null: inferred from the arrays)
    rename: list[str] = field(default_factory=list)  # LeRobot commands: "SRC=DST" key renames
    #   on top of the standard mapping (docs/lerobot.md), e.g. ["observation.state=state"]
    drop: list[str] = field(default_factory=list)  # LeRobot commands: keys left out
    task: str | None = None  # zarr-to-lerobot: the task string of every frame (null: the
    #   dataset's own tasks, else its env spec id)
    robot_type: str | None = None  # zarr-to-lerobot: info.json's robot_type (null: none)
    crf: int | None = None  # zarr-to-lerobot: AV1 quality, lower is better (null: 30, LeRobot's;
    #   robopolicy/data/convert/lerobot_video.py VideoSettings)
    codebase_version: str | None = None  # zarr-to-lerobot: v2.1 (LeRobot 0.3) or v3.0 (LeRobot
    #   0.4 and later); null: v2.1 (robopolicy/data/convert/lerobot_export.py DEFAULT_VERSION)

    def check(self) -> None:
        one_of(self, "command", CONVERSIONS)
        takes = CONVERSIONS[self.command]
        for key in COMMAND_KEYS:
            value = getattr(self, key)
            if key not in takes and value != default_of(self, key):
                expected = f"{self.command} takes no {key} (it takes {', '.join(takes)})"
                raise ConfigError(key, value, expected)
        positive(self, "fps")
        if self.crf is not None:
            at_least(self, 0, "crf")
        if self.codebase_version is not None:
            one_of(self, "codebase_version", ("v2.1", "v3.0"))
        for item in self.rename:
            require(
                item.count("=") == 1 and "" not in item.split("="),
                "rename",
                item,
                "expected SRC=DST",
            )
        if self.command == "diffusion-policy-to-zarr":
            require(self.fps is not None, "fps", None, "expected the demos' control rate (Hz)")


@dataclass
class TeleopRecordingConfig:
    """robopolicy-teleop: teleoperated demonstrations recorded on the sim arm or a real one."""

    task: TaskConfig = MISSING  # conf/task/<name>.yaml: its env, fps, time limit, dataset path
    hardware: Any = MISSING  # conf/hardware/<robot>.yaml: the robot (sim: the task's env on the
    #   MuJoCo arm in real time)
    out: str | None = None  # dataset to write (null: the task's dataset_path with _teleop)
    device: str = "keyboard"  # keyboard | spacemouse
    speed: float = 0.5  # share of a full step per key press (or full spacemouse deflection)
    episodes: int = 0  # quit after this many saved episodes (0: when the operator quits)
    seed: int = 0  # seed of the first sim episode (episode i: seed + i)
    append: bool = False  # add the episodes to the dataset at `out` if it exists
    overwrite: bool = False  # replace the dataset at `out` (false: refuse an existing one)

    def check(self) -> None:
        one_of(self, "device", ("keyboard", "spacemouse"))
        positive(self, "speed")
        at_least(self, 0, "episodes")
        if self.overwrite and self.append:
            raise ConfigError(
                "append", True, "expected at most one of overwrite=true and append=true"
            )
