"""Convert demonstration datasets between robomimic HDF5, diffusion_policy zarr and our zarr format.

Usage (from the repository root)::

    python datasets/convert.py robomimic-to-zarr IN.hdf5 OUT.zarr[.zip] [--fps N]
    python datasets/convert.py zarr-to-robomimic IN.zarr[.zip] OUT.hdf5 [--next-obs]
    python datasets/convert.py diffusion-policy-to-zarr IN.zarr[.zip] OUT.zarr[.zip] --fps N \
        [--env-spec JSON] [--shape-meta JSON]

Every subcommand takes ``--overwrite`` to replace an existing output; without it an existing
output is refused. Output is written under a temporary name and renamed into place only when
complete. A problem with the input (missing file, not a dataset, bad layout, a lossy cast) prints
one line naming the file, the key and the problem, and exits with status 2.

The conversions themselves live in ``robopolicy.data.convert``; see its modules for what maps
to what and what round-trips exactly.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys

from numcodecs.errors import UnknownCodecError

from robopolicy.data.convert import (
    diffusion_policy_to_zarr,
    robomimic_to_zarr,
    zarr_to_robomimic,
)
from robopolicy.data.errors import DatasetError


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

    for command in (rm_in, rm_out, dp_in):
        command.add_argument("--overwrite", action="store_true", help="replace an existing output")
    return parser


def run(args: argparse.Namespace) -> str:
    if args.command == "robomimic-to-zarr":
        out = robomimic_to_zarr(args.src, args.dst, fps=args.fps, overwrite=args.overwrite)
    elif args.command == "zarr-to-robomimic":
        out = zarr_to_robomimic(
            args.src, args.dst, overwrite=args.overwrite, next_obs=args.next_obs
        )
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
