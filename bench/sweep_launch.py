"""The benches' ``--launcher``: their train.py runs of one task or method, one per seed, as one
Hydra multirun (``train.py -m ... seed=0,1,2``) through a launcher of conf/hydra/launcher/ (e.g.
``slurm``: one SLURM job per seed; ``local``: submitit's local processes), instead of one
train.py after another. Each seed's run directory is the one the bench would have used
(``hydra.sweep.dir`` / ``hydra.sweep.subdir``), so results are read back the same way.
"""

from __future__ import annotations

import argparse
from pathlib import Path

CONF_LAUNCHERS = Path(__file__).resolve().parents[1] / "conf" / "hydra" / "launcher"


def launcher_names() -> list[str]:
    """The launchers a bench may name: the configs in conf/hydra/launcher/."""
    return sorted(path.stem for path in CONF_LAUNCHERS.glob("*.yaml"))


def add_launcher_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--launcher",
        choices=launcher_names(),
        help="run each task's (or method's) seeds as one train.py multirun through "
        "conf/hydra/launcher/LAUNCHER.yaml (override its keys with hydra.launcher.KEY=VALUE "
        "among the Hydra overrides); default: one train.py after another, here",
    )


def multirun_command(
    overrides: list[str], seeds: list[int], launcher: str, sweep_dir: Path, subdir: str
) -> list[str]:
    """train.py's arguments for one job per seed in ``sweep_dir/<subdir>`` (``subdir`` names
    the seed as ``${seed}``, resolved per job); ``overrides`` last, so that they can set the
    launcher's keys (``hydra.launcher.partition=gpu``)."""
    return [
        "train.py",
        "-m",
        f"hydra/launcher={launcher}",
        f"seed={','.join(str(seed) for seed in seeds)}",
        f"hydra.sweep.dir={sweep_dir}",
        f"hydra.sweep.subdir={subdir}",
        *overrides,
    ]
