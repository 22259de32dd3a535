"""Summarise a dataset: statistics in the terminal, an image grid and an episode video on disk.

Usage (from the repository root)::

    python datasets/inspect.py PATH [--episode N] [--out DIR]

PATH is a dataset in our format or a diffusion_policy store (a ``.zarr`` directory or a
``.zarr.zip``). Images go to DIR (default: ``<dataset name>_inspect`` beside the dataset). A bad
path or episode prints one line and exits with status 2. The work is done by
``robopolicy.data.inspect_report``.
"""

import os
import sys

# This file is named inspect.py, and Python puts a script's folder first on sys.path, so the
# standard library's ``inspect`` (which torch, dataclasses and rich import) would resolve to
# this file. Drop the folder from sys.path before importing anything else.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]

import argparse  # noqa: E402

from numcodecs.errors import UnknownCodecError  # noqa: E402

from robopolicy.data.errors import DatasetError  # noqa: E402
from robopolicy.data.inspect_report import inspect_dataset  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Summarise a demonstration dataset.")
    parser.add_argument("path", help="dataset (.zarr directory or .zarr.zip)")
    parser.add_argument("--episode", type=int, default=0, help="episode for the video (default 0)")
    parser.add_argument("--out", help="folder for grid.png and the video")
    args = parser.parse_args(argv)
    try:
        inspect_dataset(args.path, episode=args.episode, out_dir=args.out)
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
