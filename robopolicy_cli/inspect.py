"""Summarise a dataset: statistics and a QA report in the terminal, the QA report's qa.json and
plots, an image grid and an episode video on disk.

    robopolicy-inspect path=PATH [episode=N] [out=DIR] [policy=NAME]
        [horizon=T n_obs_steps=To n_action_steps=Ta] [qa.end_padding=RULE] [qa.KEY=VALUE ...]
    robopolicy-inspect path=PATH verify=true

(``python datasets/inspect.py ...`` from the repository.) ``verify=true`` reads and decodes
every chunk of every array instead and prints one line per problem (missing or undecodable
chunks, damaged metadata, NaN / inf in the data, bad attributes: see ``robopolicy.data.verify``)
and a summary; exit status 2 if there is any.

PATH is a dataset in our format or a diffusion_policy store (a ``.zarr`` directory or a
``.zarr.zip``). Images go to DIR (default: ``<dataset name>_inspect`` beside the dataset). A bad
key, path or episode, or a damaged store, prints one line (``robopolicy-inspect: error: ...``)
and exits with status 2 (``ROBOPOLICY_TRACEBACK=1`` shows the stack). The work is done by
``robopolicy.data.inspect_report`` (the QA report: ``robopolicy.data.quality``). The coverage
table and the QA report use the chunking of ``conf/policy/<policy>.yaml`` (default diffusion)
where the keys do not set it; the QA report flags coverage under ``qa.end_padding`` (default
full, train.py's default data.end_padding) and writes ``qa.json`` into DIR. Config:
conf/inspect.yaml (robopolicy/config/dataset_tools.py InspectConfig).
"""

from __future__ import annotations

from numcodecs.errors import UnknownCodecError
from omegaconf import DictConfig

from robopolicy.config import validate
from robopolicy.data.errors import DatasetError
from robopolicy.data.inspect_report import inspect_dataset
from robopolicy.data.verify import check_dataset, verify_dataset
from robopolicy_cli.command import Usage, run_config_tool

USAGE = Usage(
    summary="Summarise a demonstration dataset (statistics, a QA report with flags and qa.json, "
    "an image grid, an episode video), or with verify=true decode every chunk and list every "
    "problem.",
    config="inspect",
    schema="robopolicy/config/dataset_tools.py InspectConfig",
    examples=(
        "path=datasets/data/push_cube.zarr episode=3 out=inspect/",
        "path=datasets/data/push_cube.zarr verify=true",
        "path=pusht.zarr.zip policy=flow horizon=16",
        "path=datasets/data/pick_lift.zarr n_action_steps=4 qa.end_padding=action_steps",
    ),
    groups=("policy",),
    arguments="path=PATH [KEY=VALUE ...]",
)


def main(argv: list[str] | None = None) -> int:
    return run_config_tool("inspect", USAGE, argv, run)


def run(composed: DictConfig) -> int:
    cfg = validate(composed)
    if cfg.verify:
        return verify(cfg.path)
    chunking = (cfg.horizon, cfg.n_obs_steps, cfg.n_action_steps)
    try:
        inspect_dataset(
            cfg.path, episode=cfg.episode, out_dir=cfg.out, chunking=chunking, quality=cfg.qa
        )
    except UnknownCodecError as error:  # diffusion_policy real-robot stores need imagecodecs
        raise DatasetError(cfg.path, f"{error} (a codec that is not installed)") from None
    except DatasetError:
        raise
    except Exception:  # a codec or zarr error from damaged data the reader does not read itself
        check_dataset(cfg.path)  # names the damaged file in one line
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
