"""Build policies from config, and rebuild them from checkpoints.

A policy checkpoint names its policy by a short kind (``"diffusion"``, ``"flow"``) looked up in
``POLICY_KINDS``, never by an importable path, so a checkpoint cannot make the loader import or
run arbitrary code. It stores the constructor arguments (``policy.config``), the normalizer's
keys, modes and shapes, and the weights (the normalizer's statistics are among them).
"""

from __future__ import annotations

import os
from typing import Any

import torch

from robopolicy.data.normalizer import Normalizer
from robopolicy.policies.base import BasePolicy
from robopolicy.policies.diffusion import DiffusionPolicy
from robopolicy.policies.finetuned_diffusion import FinetunedDiffusionPolicy
from robopolicy.policies.flow import FlowPolicy
from robopolicy.policies.regression import RegressionPolicy
from robopolicy.policies.steered import SteeredPolicy
from robopolicy.training.checkpoint import CheckpointError, load_checkpoint
from robopolicy.training.run_state import StateOf

BASE_POLICY_KINDS: dict[str, type[BasePolicy]] = {
    "diffusion": DiffusionPolicy,
    "flow": FlowPolicy,
    "regression": RegressionPolicy,
    "diffusion_finetuned": FinetunedDiffusionPolicy,  # DPPO: last steps fine-tuned, rest frozen
}
POLICY_KINDS: dict[str, type[BasePolicy] | type[SteeredPolicy]] = {
    **BASE_POLICY_KINDS,
    "steered": SteeredPolicy,  # DSRL: a frozen base + a noise actor (not a BasePolicy subclass)
}


def build_policy(
    kind: str,
    shape_meta: dict,
    normalizer: Normalizer,
    policy_kwargs: dict[str, Any],
) -> BasePolicy:
    """A fresh policy of ``kind`` for ``shape_meta`` (constructor errors name the bad argument)."""
    if kind not in POLICY_KINDS:
        raise ValueError(f"policy kind {kind!r} is unknown; expected one of {list(POLICY_KINDS)}")
    return POLICY_KINDS[kind](shape_meta=shape_meta, normalizer=normalizer, **policy_kwargs)


def policy_kind(policy: BasePolicy) -> str:
    for kind, cls in POLICY_KINDS.items():
        if type(policy) is cls:
            return kind
    raise ValueError(f"{type(policy).__name__} is not a registered policy kind")


def policy_record(policy: BasePolicy, weights: dict[str, torch.Tensor]) -> dict[str, Any]:
    """What a checkpoint needs to rebuild ``policy`` with ``weights`` (its own or its EMA's)."""
    normalizer = policy.normalizer
    return {
        "kind": policy_kind(policy),
        "config": policy.config,
        "normalizer": {
            "specs": {
                key: [normalizer.modes[key], list(shape)]
                for key, shape in normalizer.shapes.items()
            },
            "eps": normalizer.eps,
        },
        "weights": weights,
    }


def policy_state(policy: BasePolicy, module: torch.nn.Module | None = None) -> StateOf:
    """A run-state part holding ``policy_record`` of ``module``'s weights (``policy`` itself, or
    its EMA copy); restoring loads the record's weights into ``module``."""
    module = policy if module is None else module
    return StateOf(
        lambda: policy_record(policy, module.state_dict()),
        lambda record: module.load_state_dict(record["weights"]),
    )


def policy_from_record(record: dict[str, Any], where: object = "checkpoint") -> BasePolicy:
    """Rebuild the policy described by ``policy_record`` and load its weights."""
    kind = record.get("kind")
    if kind not in POLICY_KINDS:
        raise CheckpointError(where, f"unknown policy kind {kind!r} (known: {list(POLICY_KINDS)})")
    specs = {key: (mode, shape) for key, (mode, shape) in record["normalizer"]["specs"].items()}
    normalizer = Normalizer(specs, eps=record["normalizer"]["eps"])
    policy = _fresh_policy(kind, record["config"], normalizer)
    try:
        policy.load_state_dict(record["weights"])
    except (RuntimeError, ValueError) as error:
        raise CheckpointError(where, f"weights do not fit the {kind} policy: {error}") from None
    return policy.eval()


def _fresh_policy(kind: str, config: dict, normalizer: Normalizer) -> BasePolicy | SteeredPolicy:
    """The policy ``kind`` with ``config`` and freshly initialised weights; a steered policy's
    frozen base is rebuilt from its own kind and config first."""
    if kind != "steered":
        return POLICY_KINDS[kind].from_config(_upgraded(config), normalizer)
    base_kind = config["base_kind"]
    if base_kind not in BASE_POLICY_KINDS:
        raise ValueError(f"a steered policy's base kind {base_kind!r} is not a base policy")
    base = BASE_POLICY_KINDS[base_kind].from_config(_upgraded(config["base_config"]), normalizer)
    return SteeredPolicy.from_config(config, base)


def _upgraded(config: dict) -> dict:
    """A base policy's recorded config with the entries older checkpoints lack: a UNet without
    a ``layout`` is the ``every_level`` network (the only one before the option existed)."""
    if config.get("backbone") != "unet1d" or "layout" in config.get("backbone_kwargs", {}):
        return config
    backbone_kwargs = {**config.get("backbone_kwargs", {}), "layout": "every_level"}
    return {**config, "backbone_kwargs": backbone_kwargs}


def load_policy(
    path: str | os.PathLike, device: str | torch.device = "cpu", use_ema: bool = True
) -> tuple[BasePolicy, dict[str, Any]]:
    """The policy in a checkpoint (its EMA weights when present and ``use_ema``), on ``device``,
    and the checkpoint's other contents (config, env spec, metrics, ...)."""
    checkpoint = load_checkpoint(path)
    key = "ema_policy" if use_ema and checkpoint.get("ema_policy") is not None else "policy"
    if key not in checkpoint:
        raise CheckpointError(path, "holds no policy (is it a training checkpoint?)")
    policy = policy_from_record(checkpoint[key], where=path).to(device)
    return policy, checkpoint
