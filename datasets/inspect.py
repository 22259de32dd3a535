"""Summarise a dataset: statistics in the terminal, an image grid and an episode video on disk.

Usage (from the repository root)::

    python datasets/inspect.py PATH [--episode N] [--out DIR] [--policy NAME]
        [--horizon T --n-obs-steps To --n-action-steps Ta]

PATH is a dataset in our format or a diffusion_policy store (a ``.zarr`` directory or a
``.zarr.zip``). Images go to DIR (default: ``<dataset name>_inspect`` beside the dataset). A bad
path or episode prints one line and exits with status 2. The work is done by
``robopolicy.data.inspect_report``. The coverage table uses the chunking of
``conf/policy/<--policy>.yaml`` (default diffusion) unless the flags give it.
"""

import os
import sys

# This file is named inspect.py, and Python puts a script's folder first on sys.path, so the
# standard library's ``inspect`` (which torch, dataclasses and rich import) would resolve to
# this file. Drop the folder from sys.path before importing anything else.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]

import argparse  # noqa: E402
from pathlib import Path  # noqa: E402

from numcodecs.errors import UnknownCodecError  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402

from robopolicy.data.errors import DatasetError  # noqa: E402
from robopolicy.data.inspect_report import inspect_dataset  # noqa: E402

CONF_POLICY = Path(_HERE).parent / "conf" / "policy"


def policy_chunking(args: argparse.Namespace) -> tuple[int, int, int]:
    """(horizon, n_obs_steps, n_action_steps): the flags, else the policy config's defaults."""
    config = CONF_POLICY / f"{args.policy}.yaml"
    if not config.exists():
        choices = sorted(p.stem for p in CONF_POLICY.glob("*.yaml"))
        raise DatasetError(config, f"no such policy config; expected one of {choices}", "--policy")
    defaults = OmegaConf.load(config).args
    return (
        args.horizon or int(defaults.horizon),
        args.n_obs_steps or int(defaults.n_obs_steps),
        args.n_action_steps or int(defaults.n_action_steps),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Summarise a demonstration dataset.")
    parser.add_argument("path", help="dataset (.zarr directory or .zarr.zip)")
    parser.add_argument("--episode", type=int, default=0, help="episode for the video (default 0)")
    parser.add_argument("--out", help="folder for grid.png and the video")
    parser.add_argument(
        "--policy", default="diffusion", help="conf/policy/<name>.yaml for the chunking defaults"
    )
    for flag in ("--horizon", "--n-obs-steps", "--n-action-steps"):
        parser.add_argument(flag, type=int, help="chunking for the coverage table")
    args = parser.parse_args(argv)
    try:
        chunking = policy_chunking(args)
        inspect_dataset(args.path, episode=args.episode, out_dir=args.out, chunking=chunking)
    except DatasetError as error:
        print("error: " + str(error).replace("\n", " "), file=sys.stderr)
        return 2
    except UnknownCodecError as error:  # diffusion_policy real-robot stores need imagecodecs
        print(
            f"error: dataset {args.path}: {error} (a codec that is not installed)", file=sys.stderr
        )
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
