"""Run an entry-point script many times from one warm interpreter, each run in a fresh fork.

``python tests/warm_entry.py SCRIPT`` imports every module SCRIPT imports at its top level
(torch, Hydra, MuJoCo, robopolicy: the seconds each cold start spends), then reads one JSON
request per stdin line, ``{"argv": [...], "stdout": PATH, "stderr": PATH}``. For each it forks;
the child points file descriptors 1 and 2 at the two files and runs SCRIPT as ``__main__`` with
that argv, exactly as ``python SCRIPT argv...`` would from there on (an uncaught exception prints
its traceback and exits 1, ``SystemExit`` exits with its code). The parent answers one JSON line,
``{"returncode": int, "seconds": float}``, the child's wall time included its whole run.

The bad-config harness (tests/test_bad_configs.py) runs its ~160 cases through this: the same
entry points and checks, without paying the ~5 s interpreter start each time.
"""

from __future__ import annotations

import ast
import contextlib
import importlib
import json
import os
import runpy
import sys
import time
import traceback
from pathlib import Path


def import_top_level_modules(script: Path) -> None:
    """Import what SCRIPT imports at module level, so that every fork starts warm."""
    for node in ast.parse(script.read_text()).body:
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        for name in names:
            with contextlib.suppress(ImportError):  # a module beside SCRIPT: the child's to import
                importlib.import_module(name)


def run_script_in_child(script: Path, argv: list[str], stdout: str, stderr: str) -> None:
    """In the forked child: redirect output, run SCRIPT as __main__, exit with its status."""
    for fd, path in ((1, stdout), (2, stderr)):
        target = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(target, fd)
        os.close(target)
    sys.argv = [str(script), *argv]
    sys.path.insert(0, str(script.parent))
    code = 0
    try:
        runpy.run_path(str(script), run_name="__main__")
    except SystemExit as stop:
        if stop.code is None or isinstance(stop.code, int):
            code = stop.code or 0
        else:
            print(stop.code, file=sys.stderr)
            code = 1
    except BaseException:  # what the interpreter does with an uncaught exception
        traceback.print_exc()
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def main() -> None:
    script = Path(sys.argv[1]).resolve()
    sys.path.pop(0)  # tests/; SCRIPT's own folder goes first only in the child, as `python
    #   SCRIPT` puts it: here it would shadow the standard library (datasets/inspect.py)
    import_top_level_modules(script)
    for line in sys.stdin:
        request = json.loads(line)
        start = time.perf_counter()
        pid = os.fork()
        if pid == 0:
            run_script_in_child(script, request["argv"], request["stdout"], request["stderr"])
        _, status = os.waitpid(pid, 0)
        answer = {"returncode": os.waitstatus_to_exitcode(status)}
        answer["seconds"] = time.perf_counter() - start
        print(json.dumps(answer), flush=True)


if __name__ == "__main__":
    main()
