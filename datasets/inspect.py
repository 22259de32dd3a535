"""Summarise or verify a dataset; the program is ``robopolicy_cli.inspect`` (see its docstring)."""

import os
import sys

# A script's folder comes first on sys.path; this folder holds inspect.py, which would shadow
# the standard library's ``inspect`` for everything imported below. The repository root goes
# there instead, so the packages import when the script runs from anywhere.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]
sys.path.insert(0, os.path.dirname(_HERE))

from robopolicy_cli.inspect import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
