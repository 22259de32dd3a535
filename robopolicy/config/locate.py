"""Where the Hydra config tree (conf/) is, for every program and tool that composes it.

In a source checkout (an editable install, or the repository on ``PYTHONPATH``) it is the
repository's conf/, beside the code that runs; an installed wheel carries the same files as the
package ``robopolicy_conf`` (pyproject.toml maps conf/ to that name). The checkout is looked at
first so that code run from one tree composes that tree's configs, even where another tree's
editable install is importable too.
"""

from __future__ import annotations

import importlib.resources
from pathlib import Path

CONF_PACKAGE = "robopolicy_conf"  # the name conf/ is installed under (pyproject.toml)
_CHECKOUT = Path(__file__).resolve().parents[2]  # the repository root, in a source checkout


def conf_dir() -> Path:
    """The folder holding config.yaml, eval.yaml, collect.yaml and the groups (task/, ...)."""
    checkout = _CHECKOUT / "conf"
    if (_CHECKOUT / "pyproject.toml").is_file() and (checkout / "config.yaml").is_file():
        return checkout
    return Path(str(importlib.resources.files(CONF_PACKAGE)))


def conf_options(group: str) -> list[str]:
    """The options of a config group (``task`` -> push_cube, stack, ...), sorted."""
    return sorted(path.stem for path in (conf_dir() / group).glob("*.yaml"))
