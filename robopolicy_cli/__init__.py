"""The command-line programs: training, evaluation and deployment, the robot server and the
dataset tools.

Each module is one program with a ``main()``, on top of ``robopolicy``, ``sim`` and ``hardware``
(the only package that imports all three). The repository's ``train.py``, ``eval.py`` and
``datasets/*.py`` are thin scripts that call these ``main`` functions.
"""
