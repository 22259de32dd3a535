"""Convert demonstration datasets between robomimic HDF5, diffusion_policy zarr, LeRobot and ours.

    robopolicy-convert robomimic-to-zarr src=IN.hdf5 dst=OUT.zarr[.zip] [fps=N]
    robopolicy-convert zarr-to-robomimic src=IN.zarr[.zip] dst=OUT.hdf5 [next_obs=true]
    robopolicy-convert diffusion-policy-to-zarr src=IN.zarr[.zip] dst=OUT.zarr[.zip] fps=N \\
        [env_spec=JSON|FILE.json|{id: ..., kwargs: {...}}] [shape_meta=...]
    robopolicy-convert lerobot-to-zarr src=LEROBOT_DIR dst=OUT.zarr[.zip] \\
        ['rename=["SRC=DST"]'] [drop=[KEY]] [env_spec=...]
    robopolicy-convert zarr-to-lerobot src=IN.zarr[.zip] dst=LEROBOT_DIR \\
        [codebase_version=v2.1|v3.0] [task=TEXT] [robot_type=NAME] [crf=N] [rename=...] [drop=...]

(``python datasets/convert.py ...`` from the repository.) Every command takes ``overwrite=true``
to replace an existing output; without it an existing output is refused. Output is written under
a temporary name and renamed into place only when complete. A problem with the arguments or the
input (missing file, not a dataset, bad layout, a lossy cast) prints one line naming the key or
the file and the problem, and exits with status 2. Config: conf/convert.yaml
(robopolicy/config/dataset_tools.py ConvertConfig, which says which command takes which key).

The conversions themselves live in ``robopolicy.data.convert``; see its modules for what maps
to what and what round-trips exactly.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from typing import Any

from numcodecs.errors import UnknownCodecError
from omegaconf import DictConfig

from robopolicy.config import ConfigError, validate
from robopolicy.config.dataset_tools import CONVERSIONS
from robopolicy.data.convert import (
    diffusion_policy_to_zarr,
    lerobot_to_zarr,
    robomimic_to_zarr,
    zarr_to_lerobot,
    zarr_to_robomimic,
)
from robopolicy.data.convert.lerobot_features import parse_rename
from robopolicy.data.convert.lerobot_video import VideoSettings
from robopolicy.data.errors import DatasetError
from robopolicy_cli.command import Usage, run_config_tool

USAGE = Usage(
    summary="Convert a demonstration dataset to or from robopolicy's zarr format. COMMAND: "
    + ", ".join(CONVERSIONS),
    config="convert",
    schema="robopolicy/config/dataset_tools.py ConvertConfig",
    examples=(
        "robomimic-to-zarr src=lift_ph.hdf5 dst=datasets/data/lift.zarr",
        "zarr-to-robomimic src=datasets/data/push_cube.zarr dst=push_cube.hdf5 next_obs=true",
        "diffusion-policy-to-zarr src=pusht_cchi_v7_replay.zarr dst=pusht.zarr fps=10",
        "lerobot-to-zarr src=path/to/lerobot_dataset dst=datasets/data/from_lerobot.zarr",
        "zarr-to-lerobot src=datasets/data/push_cube.zarr dst=push_cube_lerobot "
        "codebase_version=v3.0",
    ),
    arguments="COMMAND src=IN dst=OUT [KEY=VALUE ...]",
)


def json_object(key: str, value: Any) -> dict | None:
    """``value`` as a dict: a mapping given as one, JSON text, or the path of a .json file."""
    if value is None or isinstance(value, dict):
        return value
    text = str(value)
    if os.path.isfile(text):
        with open(text) as f:
            text = f.read()
    try:
        parsed = json.loads(text)
    except ValueError as error:
        raise ConfigError(key, value, f"not a JSON object or .json file: {error}") from None
    if not isinstance(parsed, dict):
        raise ConfigError(key, value, "expected a JSON object")
    return parsed


def lerobot_options(cfg: Any) -> dict:
    """The key renames and dropped keys both LeRobot commands take."""
    return {"renames": dict(parse_rename(item) for item in cfg.rename), "drop": set(cfg.drop)}


def to_lerobot(cfg: Any) -> str:
    """zarr-to-lerobot: its summary (output and PSNR per camera) is what it prints."""
    video = VideoSettings() if cfg.crf is None else VideoSettings(crf=cfg.crf)
    version = {} if cfg.codebase_version is None else {"version": cfg.codebase_version}
    return zarr_to_lerobot(
        cfg.src,
        cfg.dst,
        **lerobot_options(cfg),
        task=cfg.task,
        video=video,
        robot_type=cfg.robot_type,
        overwrite=cfg.overwrite,
        **version,
    ).summary()


def convert(composed: DictConfig) -> str:
    cfg = validate(composed)
    logging.basicConfig(level=logging.WARNING, format="warning: %(message)s")
    try:
        if cfg.command == "zarr-to-lerobot":
            summary = to_lerobot(cfg)
            print(summary)
            return summary
        if cfg.command == "lerobot-to-zarr":
            out = lerobot_to_zarr(
                cfg.src,
                cfg.dst,
                **lerobot_options(cfg),
                env_spec=json_object("env_spec", cfg.env_spec),
                overwrite=cfg.overwrite,
            )
        elif cfg.command == "robomimic-to-zarr":
            out = robomimic_to_zarr(cfg.src, cfg.dst, fps=cfg.fps, overwrite=cfg.overwrite)
        elif cfg.command == "zarr-to-robomimic":
            out = zarr_to_robomimic(
                cfg.src, cfg.dst, overwrite=cfg.overwrite, next_obs=cfg.next_obs
            )
        else:
            out = diffusion_policy_to_zarr(
                cfg.src,
                cfg.dst,
                fps=cfg.fps,
                env_spec=json_object("env_spec", cfg.env_spec),
                shape_meta=json_object("shape_meta", cfg.shape_meta),
                overwrite=cfg.overwrite,
            )
    except UnknownCodecError as error:  # diffusion_policy real-robot stores need imagecodecs
        raise DatasetError(cfg.src, f"{error} (a codec that is not installed)") from None
    print(f"wrote {out}")
    return str(out)


def main(argv: list[str] | None = None) -> int:
    """``COMMAND`` (the first argument, unless it is a ``key=value``) is ``command=COMMAND``."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and "=" not in argv[0] and not argv[0].startswith("-"):
        argv = [f"command={argv[0]}", *argv[1:]]
    run_config_tool("convert", USAGE, argv, convert)
    return 0
