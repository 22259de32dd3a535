"""Test helper: import robomimic's file utilities on this machine's CPU-only torch.

robopolicy itself never imports robomimic; tests/test_convert.py checks with robomimic's own
readers that the HDF5 files robopolicy exports are valid.

robomimic 0.3.0 imports torchvision at module level (``robomimic.utils.file_utils`` pulls in
``robomimic.models`` and through it ``torchvision``). The installed torchvision wheel is built
against CUDA torch: its compiled extension (``torchvision/_C.so``) does not load against the CPU
torch, and torchvision's Python side then fails while registering fake kernels with
``operator torchvision::nms does not exist``.

Declaring the two operator schemas that torchvision registers fake kernels for (``nms`` and
``qnms``) in a ``torchvision`` library fragment before torchvision is first imported lets the
import succeed. The operators have no kernels: calling them still fails, which robomimic's file
and dataset utilities never do. Where the extension does load (a matching torch/torchvision
pair) it registers the real operators and no schema is declared. The ``Library`` object is kept
in a module-level reference, since torch drops its definitions when it is garbage-collected.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import torch

_TORCHVISION_SCHEMAS = (
    "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
)

_torchvision_fragment: torch.library.Library | None = None
_checked = False


def _torchvision_extension_loads() -> bool:
    """True when torchvision's compiled ops load here (or torchvision is absent or imported)."""
    if "torchvision" in sys.modules:
        return True
    spec = importlib.util.find_spec("torchvision")
    if spec is None or spec.origin is None:
        return True
    for library in Path(spec.origin).parent.glob("_C*.so"):
        try:
            torch.ops.load_library(str(library))
        except OSError:
            return False
    return True


def _declare_torchvision_ops() -> None:
    """Declare the missing torchvision op schemas, once per process, where they are needed."""
    global _torchvision_fragment, _checked
    if _checked:
        return
    _checked = True
    if _torchvision_extension_loads():
        return
    fragment = torch.library.Library("torchvision", "FRAGMENT")
    for schema in _TORCHVISION_SCHEMAS:
        fragment.define(schema)
    _torchvision_fragment = fragment


def import_robomimic_file_utils() -> ModuleType:
    """Return ``robomimic.utils.file_utils``, importable on CPU torch (see the module docstring).

    Idempotent: the check and the schemas happen at most once per process; later calls return
    the already-imported module. Use it wherever robomimic's file or dataset utilities are needed.
    """
    _declare_torchvision_ops()
    return importlib.import_module("robomimic.utils.file_utils")
