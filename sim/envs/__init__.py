"""Tabletop tasks on MuJoCo: ``base.TabletopEnv`` (scene, arm, controller, observations) and the
tasks that subclass it, each with its scripted expert in ``<task>_expert.py``."""
