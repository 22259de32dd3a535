"""Shared pytest setup: headless MuJoCo rendering and the tests folder on sys.path for helpers."""

import os
import sys

os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("PYOPENGL_PLATFORM", os.environ["MUJOCO_GL"])
sys.path.insert(0, os.path.dirname(__file__))
