"""Checkpoints: one safetensors file holding a whole training state, written atomically.

A training state is a nested tree of dicts and lists whose leaves are tensors or JSON values:
model and EMA weights, the normalizer (part of the model's state dict), optimizer and scheduler
state, RNG states, counters, and the resolved config. ``save_checkpoint`` stores every tensor leaf
as a safetensors tensor named by its path in the tree, and the rest of the tree as JSON in the
file's header metadata with ``{"__tensor__": path}`` where a tensor was. Loading rebuilds the
tree. No pickle is written or executed anywhere, so loading a checkpoint from an untrusted source
cannot run code.

The file is written beside its destination under a temporary name and renamed over it, so a crash
while saving leaves the previous checkpoint intact.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

CHECKPOINT_FORMAT = "robopolicy-checkpoint"
CHECKPOINT_VERSION = 1
_TENSOR = "__tensor__"
_TUPLE = "__tuple__"


class CheckpointError(ValueError):
    """A checkpoint file is missing, unreadable, from an unknown version, or does not fit."""

    def __init__(self, path: object, problem: str):
        super().__init__(f"checkpoint {path}: {problem}")


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> Path:
    """Write ``state`` (a tree of dicts/lists/tuples with tensor or JSON leaves) to ``path``."""
    path = Path(path)
    tensors: dict[str, torch.Tensor] = {}
    skeleton = _split(state, "", tensors)
    metadata = {
        "format": CHECKPOINT_FORMAT,
        "version": str(CHECKPOINT_VERSION),
        "tree": json.dumps(skeleton),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_orphan_temporaries(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata=metadata)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def remove_orphan_temporaries(path: str | os.PathLike) -> list[Path]:
    """Delete the temporary files a killed ``save_checkpoint`` of ``path`` left beside it (one
    process writes a given checkpoint, so none of them is in use); returns what was removed."""
    path = Path(path)
    orphans = sorted(path.parent.glob(f".{path.name}.*.tmp"))
    for orphan in orphans:
        orphan.unlink(missing_ok=True)
    return orphans


def load_checkpoint(path: str | os.PathLike, device: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by ``save_checkpoint``; tensors are placed on ``device``."""
    path = Path(path)
    tree = _stored_tree(path)
    try:
        tensors = load_file(path, device=str(device))
    except (SafetensorError, OSError) as error:
        raise CheckpointError(path, f"not a readable safetensors file ({error})") from None
    return _joined(path, tree, tensors)


def read_checkpoint_header(path: str | os.PathLike) -> Any:
    """A checkpoint's tree without reading one tensor: its JSON values (config, env spec,
    counters, ...) as saved, each tensor leaf left as ``{"__tensor__": name}``."""
    path = Path(path)
    return _joined(path, _stored_tree(path), None)


def _joined(path: Path, tree: Any, tensors: dict[str, torch.Tensor] | None) -> Any:
    try:
        return _join(tree, tensors)
    except (ValueError, KeyError, TypeError, AttributeError, IndexError) as error:
        problem = f"its header's 'tree' is damaged ({type(error).__name__}: {error})"
        raise CheckpointError(path, problem) from None


def _stored_tree(path: Path) -> Any:
    """The checked header of the checkpoint at ``path``: its tree as stored (JSON)."""
    if not path.is_file():
        raise CheckpointError(path, "no such file")
    try:
        with safe_open(path, framework="pt") as handle:
            metadata = handle.metadata() or {}
    except (SafetensorError, OSError) as error:
        raise CheckpointError(path, f"not a readable safetensors file ({error})") from None
    if metadata.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(path, "not a robopolicy checkpoint (no robopolicy header)")
    try:
        version = int(metadata.get("version", -1))
    except ValueError:
        raise CheckpointError(path, f"version {metadata['version']!r} is not a number") from None
    if version > CHECKPOINT_VERSION:
        raise CheckpointError(
            path,
            f"written by a newer robopolicy (checkpoint version {version}, this one reads "
            f"<= {CHECKPOINT_VERSION}); upgrade robopolicy",
        )
    if "tree" not in metadata:
        raise CheckpointError(path, "its header has no 'tree' entry (damaged, or not a checkpoint)")
    try:
        return json.loads(metadata["tree"])
    except ValueError as error:
        problem = f"its header's 'tree' is damaged ({type(error).__name__}: {error})"
        raise CheckpointError(path, problem) from None


def _split(node: Any, prefix: str, tensors: dict[str, torch.Tensor]) -> Any:
    """Move tensor leaves of ``node`` into ``tensors``; return the JSON-able remainder."""
    if isinstance(node, torch.Tensor):
        # safetensors needs dense, contiguous tensors that share no memory with each other
        tensors[prefix] = node.detach().to("cpu").contiguous().clone()
        return {_TENSOR: prefix}
    if isinstance(node, dict):
        for key in node:
            if not isinstance(key, (str, int)):
                raise TypeError(f"checkpoint keys must be str or int, got {key!r} at {prefix!r}")
        return {
            "__dict__": [
                [key, _split(value, f"{prefix}.{key}" if prefix else str(key), tensors)]
                for key, value in node.items()
            ]
        }
    if isinstance(node, (list, tuple)):
        items = [_split(value, f"{prefix}.{i}", tensors) for i, value in enumerate(node)]
        return {_TUPLE: items} if isinstance(node, tuple) else items
    if node is None or isinstance(node, (bool, int, float, str)):
        return node
    raise TypeError(f"cannot store {type(node).__name__} at {prefix!r} in a checkpoint")


def _join(node: Any, tensors: dict[str, torch.Tensor] | None) -> Any:
    """The tree ``_split`` stored, with its tensors (None: tensor leaves stay markers)."""
    if isinstance(node, dict):
        if _TENSOR in node:
            return node if tensors is None else tensors[node[_TENSOR]]
        if _TUPLE in node:
            return tuple(_join(value, tensors) for value in node[_TUPLE])
        return {key: _join(value, tensors) for key, value in node["__dict__"]}
    if isinstance(node, list):
        return [_join(value, tensors) for value in node]
    return node
