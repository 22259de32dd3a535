"""Evaluate or deploy a checkpoint: ``python eval.py checkpoint=PATH [hardware=sim]``; the
program is ``robopolicy_cli.eval`` (see its docstring)."""

from robopolicy_cli.eval import main

if __name__ == "__main__":
    main()
