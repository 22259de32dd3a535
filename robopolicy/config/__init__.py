"""Typed configs: the one source of every config default, and the start-up validation.

Each schema is a dataclass (a Hydra structured config) whose fields carry their default and a
comment saying what it does; the YAML files in conf/ select a schema in their defaults list and
hold only what differs from it. Importing this package registers the schemas in Hydra's
ConfigStore (robopolicy/config/store.py). ``validate(cfg)`` checks a composed config before any
work starts and raises one ``ConfigError`` line naming the key, its value and what is expected.

- run.py: train.py's config (task, data, eval, logger, device and threads);
- policy.py: the policy kinds and the denoiser backbones;
- algos.py, chain_ppo.py, fpo.py: the training algorithms (BC, DSRL; DPPO and ReinFlow; FPO);
- evaluation.py, hardware.py: eval.py's config, the robots it deploys to and the robot server's
  config;
- collect.py: datasets/collect.py's config;
- dataset_tools.py: the configs of robopolicy-inspect, robopolicy-convert and robopolicy-teleop.
"""

from robopolicy.config.checks import ConfigError
from robopolicy.config.store import register
from robopolicy.config.validate import validate

register()

__all__ = ["ConfigError", "validate"]
