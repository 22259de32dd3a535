"""Convert demonstration datasets between robomimic HDF5, diffusion_policy zarr, LeRobot and ours.

Usage (from the repository root)::

    python datasets/convert.py robomimic-to-zarr IN.hdf5 OUT.zarr[.zip] [--fps N]
    python datasets/convert.py zarr-to-robomimic IN.zarr[.zip] OUT.hdf5 [--next-obs]
    python datasets/convert.py diffusion-policy-to-zarr IN.zarr[.zip] OUT.zarr[.zip] --fps N \
        [--env-spec JSON] [--shape-meta JSON]
    python datasets/convert.py lerobot-to-zarr IN_DIR OUT.zarr[.zip] [--rename SRC=DST]... \
        [--drop KEY]... [--env-spec JSON]
    python datasets/convert.py zarr-to-lerobot IN.zarr[.zip] OUT_DIR [--rename SRC=DST]... \
        [--drop KEY]... [--task TEXT] [--robot-type NAME] [--crf N] [--codebase-version V]

Every subcommand takes ``--overwrite`` to replace an existing output; without it an existing
output is refused. Output is written under a temporary name and renamed into place only when
complete. A problem with the input (missing file, not a dataset, bad layout, a lossy cast) prints
one line naming the file, the key and the problem, and exits with status 2.

The conversions themselves live in ``robopolicy.data.convert``; see its modules for what maps
to what and what round-trips exactly.
"""

from __future__ import annotations

import os
import sys

# A script's folder comes first on sys.path; this folder holds inspect.py, which would shadow
# the standard library's ``inspect`` for everything imported below.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]

import argparse  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402

from numcodecs.errors import UnknownCodecError  # noqa: E402

from robopolicy.data.convert import (  # noqa: E402
    diffusion_policy_to_zarr,
    lerobot_export,  # noqa: E402
    lerobot_to_zarr,
    robomimic_to_zarr,
    zarr_to_lerobot,
    zarr_to_robomimic,
)
from robopolicy.data.convert.lerobot_features import parse_rename  # noqa: E402
from robopolicy.data.convert.lerobot_video import VideoSettings  # noqa: E402
from robopolicy.data.errors import DatasetError  # noqa: E402


def _json_object(text: str) -> dict:
    """A JSON object given inline or as the path of a .json file."""
    if os.path.isfile(text):
        with open(text) as f:
            text = f.read()
    try:
        value = json.loads(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"not a JSON object or .json file: {error}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("expected a JSON object")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Convert demonstration datasets to and from robopolicy's zarr format."
    )
    commands = parser.add_subparsers(dest="command", required=True)

    rm_in = commands.add_parser("robomimic-to-zarr", help="robomimic HDF5 -> our zarr")
    rm_in.add_argument("src", help="robomimic .hdf5 file")
    rm_in.add_argument("dst", help="output dataset (.zarr directory or .zarr.zip)")
    rm_in.add_argument(
        "--fps", type=float, help="control rate (default: env_args' env_kwargs.control_freq)"
    )

    rm_out = commands.add_parser("zarr-to-robomimic", help="our zarr -> robomimic HDF5")
    rm_out.add_argument("src", help="dataset (.zarr directory or .zarr.zip)")
    rm_out.add_argument("dst", help="output .hdf5 file")
    rm_out.add_argument(
        "--next-obs",
        action="store_true",
        help="add next_obs (obs shifted one step, last repeated) to a dataset that has none",
    )

    dp_in = commands.add_parser("diffusion-policy-to-zarr", help="diffusion_policy zarr -> ours")
    dp_in.add_argument("src", help="diffusion_policy store (.zarr directory or .zarr.zip)")
    dp_in.add_argument("dst", help="output dataset (.zarr directory or .zarr.zip)")
    dp_in.add_argument("--fps", type=float, required=True, help="control rate of the demos")
    dp_in.add_argument("--env-spec", type=_json_object, help="env spec, JSON or a .json file")
    dp_in.add_argument(
        "--shape-meta", type=_json_object, help="shape_meta, JSON or a .json file (default: infer)"
    )

    lr_in = commands.add_parser("lerobot-to-zarr", help="LeRobot dataset (v2.x, v3.0) -> ours")
    lr_in.add_argument("src", help="LeRobot dataset directory (holding meta/info.json)")
    lr_in.add_argument("dst", help="output dataset (.zarr directory or .zarr.zip)")
    lr_in.add_argument("--env-spec", type=_json_object, help="env spec, JSON or a .json file")
    lr_out = commands.add_parser("zarr-to-lerobot", help="our zarr -> LeRobot (v2.1 or v3.0)")
    lr_out.add_argument("src", help="dataset (.zarr directory or .zarr.zip)")
    lr_out.add_argument("dst", help="output LeRobot dataset directory")
    lr_out.add_argument("--task", help="task string for every frame (default: the env spec id)")
    lr_out.add_argument("--robot-type", help="info.json's robot_type (default: null)")
    lr_out.add_argument(
        "--crf", type=int, default=VideoSettings.crf, help="AV1 quality, lower is better"
    )
    lr_out.add_argument(
        "--codebase-version",
        choices=list(lerobot_export.WRITERS),
        default=lerobot_export.DEFAULT_VERSION,
        help="LeRobot format: v2.1 (LeRobot 0.3) or v3.0 (LeRobot 0.4 and later)",
    )
    for command in (lr_in, lr_out):
        command.add_argument(
            "--rename",
            action="append",
            type=parse_rename,
            metavar="SRC=DST",
            help="map a key to another name",
        )
        command.add_argument("--drop", action="append", metavar="KEY", help="leave a key out")

    for command in (rm_in, rm_out, dp_in, lr_in, lr_out):
        command.add_argument("--overwrite", action="store_true", help="replace an existing output")
    return parser


def run(args: argparse.Namespace) -> str:
    if args.command == "robomimic-to-zarr":
        out = robomimic_to_zarr(args.src, args.dst, fps=args.fps, overwrite=args.overwrite)
    elif args.command == "zarr-to-robomimic":
        out = zarr_to_robomimic(
            args.src, args.dst, overwrite=args.overwrite, next_obs=args.next_obs
        )
    elif args.command == "lerobot-to-zarr":
        out = lerobot_to_zarr(
            args.src,
            args.dst,
            renames=dict(args.rename or ()),
            drop=set(args.drop or ()),
            env_spec=args.env_spec,
            overwrite=args.overwrite,
        )
    elif args.command == "zarr-to-lerobot":
        return zarr_to_lerobot(
            args.src,
            args.dst,
            renames=dict(args.rename or ()),
            drop=set(args.drop or ()),
            task=args.task,
            video=VideoSettings(crf=args.crf),
            robot_type=args.robot_type,
            version=args.codebase_version,
            overwrite=args.overwrite,
        ).summary()
    else:
        out = diffusion_policy_to_zarr(
            args.src,
            args.dst,
            fps=args.fps,
            env_spec=args.env_spec,
            shape_meta=args.shape_meta,
            overwrite=args.overwrite,
        )
    return str(out)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="warning: %(message)s")
    try:
        out = run(args)
    except DatasetError as error:
        print("error: " + str(error).replace("\n", " "), file=sys.stderr)
        return 2
    except UnknownCodecError as error:  # diffusion_policy real-robot stores need imagecodecs
        print(
            f"error: dataset {args.src}: {error} (a codec that is not installed)", file=sys.stderr
        )
        return 2
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
