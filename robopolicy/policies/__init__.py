"""Visuomotor policies over action chunks: diffusion (DDPM/DDIM), flow matching and a regression
baseline, one interface (``BasePolicy``): ``compute_loss``, ``predict_action``, ``sample_chain``,
``step_distribution``."""

from robopolicy.policies.base import BasePolicy, DenoisingStep
from robopolicy.policies.diffusion import DiffusionPolicy
from robopolicy.policies.flow import FlowPolicy
from robopolicy.policies.regression import RegressionPolicy

__all__ = [
    "BasePolicy",
    "DenoisingStep",
    "DiffusionPolicy",
    "FlowPolicy",
    "RegressionPolicy",
]
