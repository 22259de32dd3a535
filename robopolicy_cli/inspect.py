"""Summarise a dataset: statistics in the terminal, an image grid and an episode video on disk.

Usage (from the repository root)::

    python datasets/inspect.py PATH [--episode N] [--out DIR] [--policy NAME]
        [--horizon T --n-obs-steps To --n-action-steps Ta]
    python datasets/inspect.py --verify PATH

``--verify`` reads and decodes every chunk of every array instead and prints one line per problem
(missing or undecodable chunks, damaged metadata, NaN / inf in the data, bad attributes: see
``robopolicy.data.verify``) and a summary; exit status 2 if there is any.

PATH is a dataset in our format or a diffusion_policy store (a ``.zarr`` directory or a
``.zarr.zip``). Images go to DIR (default: ``<dataset name>_inspect`` beside the dataset). A bad
path or episode, or a damaged store, prints one line (``inspect.py: error: ...``) and exits
with status 2 (``ROBOPOLICY_TRACEBACK=1`` shows the stack). The work is done by
``robopolicy.data.inspect_report``. The coverage table uses the chunking of
``conf/policy/<--policy>.yaml`` (default diffusion) unless the flags give it.
"""

import argparse
from pathlib import Path

from hydra import compose, initialize_config_dir
from numcodecs.errors import UnknownCodecError

import robopolicy.config  # noqa: F401  (registers the schemas with the policies' defaults)
from robopolicy.data.errors import DatasetError
from robopolicy.data.inspect_report import inspect_dataset
from robopolicy.data.verify import check_dataset, verify_dataset
from robopolicy.utils.cli import run_reporting_errors

CONF_POLICY = Path(__file__).resolve().parents[1] / "conf" / "policy"


def policy_chunking(args: argparse.Namespace) -> tuple[int, int, int]:
    """(horizon, n_obs_steps, n_action_steps): the flags, else the policy config's defaults."""
    config = CONF_POLICY / f"{args.policy}.yaml"
    if not config.exists():
        choices = sorted(p.stem for p in CONF_POLICY.glob("*.yaml"))
        raise DatasetError(config, f"no such policy config; expected one of {choices}", "--policy")
    with initialize_config_dir(config_dir=str(CONF_POLICY.parent), version_base="1.3"):
        defaults = compose("config", overrides=[f"policy={args.policy}"]).policy.args
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
    parser.add_argument(
        "--verify", action="store_true", help="decode every chunk and report every problem"
    )
    args = parser.parse_args(argv)
    return run_reporting_errors(
        "inspect.py", lambda: verify(args.path) if args.verify else run(args)
    )


def run(args: argparse.Namespace) -> int:
    chunking = policy_chunking(args)
    try:
        inspect_dataset(args.path, episode=args.episode, out_dir=args.out, chunking=chunking)
    except UnknownCodecError as error:  # diffusion_policy real-robot stores need imagecodecs
        raise DatasetError(args.path, f"{error} (a codec that is not installed)") from None
    except DatasetError:
        raise
    except Exception:  # a codec or zarr error from damaged data the reader does not read itself
        check_dataset(args.path)  # names the damaged file in one line
        raise  # the store verifies: a bug, keep its traceback
    return 0


def verify(path: str) -> int:
    """Print every problem of the dataset at ``path``, one line each, and a summary line."""
    report = verify_dataset(path, images="full", progress=True)  # drawn on a terminal only
    for problem in report.problems:
        print(f"problem: {problem}", flush=True)
    print(f"verified {path} in {report.seconds:.1f} s: {report.summary()}")
    if not report.ok:
        first = report.problems[0]
        raise DatasetError(path, f"{len(report.problems)} problem(s); the first: {first}")
    return 0
