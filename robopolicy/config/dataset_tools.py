"""Schemas of the dataset tools' configs: robopolicy-inspect (conf/inspect.yaml), robopolicy-convert
(conf/convert.yaml) and robopolicy-teleop (conf/teleop.yaml). Like every program they take
``key=value`` arguments, composed and checked as here before any work."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, fields
from typing import Any

from omegaconf import II, MISSING

from robopolicy.config.checks import ConfigError, at_least, one_of, positive, require
from robopolicy.config.run import TaskConfig


@dataclass
class InspectConfig:
    """robopolicy-inspect: a dataset's statistics, an image grid and an episode video, or with
    ``verify=true`` every chunk decoded and every problem listed."""

    path: str = MISSING  # the dataset: ours or a diffusion_policy store (.zarr directory or
    #   .zarr.zip)
    episode: int = 0  # the episode shown in the video
    out: str | None = None  # folder for grid.png and the video (null: <dataset name>_inspect
    #   beside the dataset)
    verify: bool = False  # instead: read and decode every chunk of every array, one line per
    #   problem and a summary; exit status 2 if there is any
    policy: Any = MISSING  # conf/policy/<name>.yaml (policy=NAME): the coverage table's
    #   chunking defaults to its own
    backbone: Any = MISSING  # conf/backbone/<name>.yaml: the policy config's denoiser (unused
    #   here; the policy's config refers to it)
    horizon: int = II("policy.args.horizon")  # chunking for the coverage table: the window
    #   length, the steps a window conditions on, the actions it executes
    n_obs_steps: int = II("policy.args.n_obs_steps")
    n_action_steps: int = II("policy.args.n_action_steps")

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
        defaults = {
            item.name: item.default_factory()
            if item.default_factory is not dataclasses.MISSING
            else item.default
            for item in fields(self)
        }
        for key in COMMAND_KEYS:
            value = getattr(self, key)
            if key not in takes and value != defaults[key]:
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
