"""Visuomotor policies over action chunks: diffusion (DDPM/DDIM) and flow matching, one interface
(``BasePolicy``): ``compute_loss``, ``predict_action``, ``sample_chain``, ``step_distribution``."""

from robopolicy.policies.base import BasePolicy, DenoisingStep, gaussian_log_prob
from robopolicy.policies.diffusion import DiffusionPolicy
from robopolicy.policies.flow import FlowPolicy

__all__ = ["BasePolicy", "DenoisingStep", "DiffusionPolicy", "FlowPolicy", "gaussian_log_prob"]
