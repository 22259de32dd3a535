"""Registration of the schemas in Hydra's ConfigStore, in the ``schema`` group.

The YAML files select theirs first in their defaults list and then hold only what differs from
it: a group file names its schema relative to the root (``- /schema/algo/dppo@_here_``), a
primary config as ``- schema/train@_here_``. The schemas sit in a group of their own so that
they are not among a group's choices (``algo=...`` lists bc, dppo, dsrl, fpo, reinflow only).

Registration runs when ``robopolicy.config`` is imported; hydra_plugins/robopolicy_schemas.py
imports it for any Hydra composition (tests and tools that compose conf/ themselves), since
Hydra imports every module of the ``hydra_plugins`` namespace before it composes.
"""

from __future__ import annotations

from hydra.core.config_store import ConfigStore

from robopolicy.config.algos import BCConfig, DSRLConfig
from robopolicy.config.chain_ppo import DPPOConfig, ReinFlowConfig
from robopolicy.config.collect import CollectConfig
from robopolicy.config.dataset_tools import ConvertConfig, InspectConfig, TeleopRecordingConfig
from robopolicy.config.evaluation import EvalConfig
from robopolicy.config.fpo import FPOConfig
from robopolicy.config.hardware import RealRobotConfig, ServerConfig, SimRobotConfig
from robopolicy.config.policy import (
    DiffusionPolicyConfig,
    FlowPolicyConfig,
    MLPBackbone,
    RegressionPolicyConfig,
    TransformerBackbone,
    UNet1DBackbone,
)
from robopolicy.config.run import TrainConfig

SCHEMAS = {
    "schema": {
        "train": TrainConfig,
        "eval": EvalConfig,
        "collect": CollectConfig,
        "inspect": InspectConfig,
        "convert": ConvertConfig,
        "teleop": TeleopRecordingConfig,
        "server": ServerConfig,
    },
    "schema/algo": {
        "bc": BCConfig,
        "dppo": DPPOConfig,
        "reinflow": ReinFlowConfig,
        "fpo": FPOConfig,
        "dsrl": DSRLConfig,
    },
    "schema/policy": {
        "diffusion": DiffusionPolicyConfig,
        "flow": FlowPolicyConfig,
        "regression": RegressionPolicyConfig,
    },
    "schema/backbone": {
        "mlp": MLPBackbone,
        "transformer": TransformerBackbone,
        "unet1d": UNet1DBackbone,
    },
    "schema/hardware": {"sim": SimRobotConfig, "real": RealRobotConfig},
}


def register() -> None:
    """Store every schema (again: storing is idempotent) in Hydra's ConfigStore."""
    store = ConfigStore.instance()
    for group, schemas in SCHEMAS.items():
        for name, schema in schemas.items():
            store.store(group=group, name=name, node=schema)
