"""Headless camera rendering with ``mujoco.Renderer``, created lazily.

The OpenGL context is made on the first image request, not when the env is built. That keeps
state-only envs free of any GL work, and it makes rendering work in
``gymnasium.vector.AsyncVectorEnv``: each worker process builds its env and then its own context
(a context created in a parent process does not survive ``fork``). Choose the backend with
``MUJOCO_GL`` *before* mujoco is first imported; ``import sim`` defaults it to ``egl``.

Depth comes back in metres (float32), as ``mujoco.Renderer`` gives it.
"""

from __future__ import annotations

import weakref

import mujoco
import numpy as np


class CameraRenderer:
    """Renders named cameras of one model at one resolution."""

    def __init__(self, model: mujoco.MjModel, height: int, width: int) -> None:
        self.model = model
        self.height = height
        self.width = width
        self._renderer: mujoco.Renderer | None = None

    def _get(self) -> mujoco.Renderer:
        if self._renderer is None:
            self._renderer = mujoco.Renderer(self.model, self.height, self.width)
            # Free the GL context when this object goes away or, at the latest, at interpreter
            # exit: left to module teardown, EGL is gone first and freeing it raises noise.
            self._finalizer = weakref.finalize(self, self._renderer.close)
        return self._renderer

    def rgb(self, data: mujoco.MjData, camera: str) -> np.ndarray:
        """(H, W, 3) uint8 image from ``camera``."""
        renderer = self._get()
        renderer.disable_depth_rendering()
        renderer.update_scene(data, camera=camera)
        return renderer.render().copy()

    def depth(self, data: mujoco.MjData, camera: str) -> np.ndarray:
        """(H, W, 1) float32 depth in metres from ``camera``."""
        renderer = self._get()
        renderer.enable_depth_rendering()
        renderer.update_scene(data, camera=camera)
        image = renderer.render().astype(np.float32)
        renderer.disable_depth_rendering()
        return image[..., None]

    def close(self) -> None:
        if self._renderer is not None:
            self._finalizer()
            self._renderer = None
