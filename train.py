"""Train a policy: ``python train.py task=push_cube policy=diffusion algo=bc``; the program is
``robopolicy_cli.train`` (see its docstring)."""

from robopolicy_cli.train import main

if __name__ == "__main__":
    main()
