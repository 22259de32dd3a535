"""Schemas of the policy and backbone groups (conf/policy/<kind>.yaml, conf/backbone/<name>.yaml).

A policy config is its kind, its normalizer modes and ``args``, the constructor arguments of the
policy class (robopolicy/policies/<kind>.py). The denoiser network is chosen with the backbone
group and reaches ``args`` by interpolation (``${backbone.name}``, ``${backbone.kwargs}``).
The sets of choices below are the policies' and models' own; tests/test_bad_configs.py checks
that they still match.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from omegaconf import II

from robopolicy.config.checks import (
    ConfigError,
    at_least,
    in_range,
    non_negative,
    one_of,
    positive,
    require,
    widths,
)

BACKBONES = ("unet1d", "transformer", "mlp")  # robopolicy.policies.base.BACKBONES
UNET_LAYOUTS = ("diffusion_policy", "every_level")  # robopolicy.models.unet1d.LAYOUTS
AUTOCAST_DTYPES = ("none", "bf16")  # robopolicy.policies.base.AUTOCAST_DTYPES
ACTIVATIONS = ("mish", "relu", "gelu", "silu", "tanh")  # robopolicy.models.mlp.ACTIVATIONS
NORMALIZER_MODES = ("limits", "gaussian")  # robopolicy.data.normalizer.MODES (image: automatic)
DIFFUSION_SAMPLERS = ("ddim", "ddpm")  # robopolicy.policies.diffusion.SAMPLERS
DIFFUSION_PREDICTIONS = ("sample", "epsilon")  # robopolicy.policies.diffusion.PREDICTION_TYPES
BETA_SCHEDULES = ("squaredcos_cap_v2", "linear")  # robopolicy.policies.noise_schedules.SCHEDULES
TIMESTEP_SPACINGS = ("linspace", "leading", "trailing")  # noise_schedules.TIMESTEP_SPACINGS
FLOW_SOLVERS = ("euler", "midpoint", "heun")  # robopolicy.policies.flow.SOLVERS
FLOW_PREDICTIONS = ("sample", "velocity")  # robopolicy.policies.flow.PREDICTION_TYPES
TIME_SAMPLINGS = ("uniform", "beta")  # robopolicy.policies.flow.TIME_SAMPLINGS


@dataclass
class NormalizerConfig:
    """How observations and actions are normalised (robopolicy/data/normalizer.py)."""

    low_dim_mode: str = "limits"  # low-dim observations: limits (min-max to [-1, 1]) | gaussian
    action_mode: str = "limits"  # actions: limits (pairs with clip_sample: 1.0) | gaussian

    def check(self) -> None:
        one_of(self, "low_dim_mode", NORMALIZER_MODES)
        one_of(self, "action_mode", NORMALIZER_MODES)


@dataclass
class ChunkPolicyArgs:
    """Constructor arguments every policy kind takes (robopolicy/policies/base.py)."""

    horizon: int = 16  # T: predicted chunk length (>= n_obs_steps + n_action_steps - 1)
    n_obs_steps: int = 2  # To: observation steps the policy conditions on
    n_action_steps: int = 8  # Ta: actions executed from each chunk before replanning
    backbone: str = II("backbone.name")  # denoiser, chosen with the backbone group
    backbone_kwargs: dict[str, Any] = II("backbone.kwargs")  # its arguments (conf/backbone/)
    obs_encoder_kwargs: dict[str, Any] = field(default_factory=dict)  # ObsEncoder options
    #   (image crop, keypoints, camera sharing, ...: robopolicy/models/obs_encoder.py)
    mask_padding: bool = False  # leave padded action steps out of the loss (Diffusion Policy
    #   keeps them)

    def check(self) -> None:
        at_least(self, 1, "n_obs_steps", "n_action_steps")
        needed = self.n_obs_steps + self.n_action_steps - 1
        require(
            self.horizon >= needed,
            "horizon",
            self.horizon,
            f"expected an integer >= n_obs_steps + n_action_steps - 1 = {needed}",
        )
        one_of(self, "backbone", BACKBONES)


@dataclass
class DiffusionArgs(ChunkPolicyArgs):
    """DiffusionPolicy's arguments: DDPM training, DDIM/DDPM sampling."""

    num_inference_steps: int = 10  # default sampling steps (predict_action(num_steps=...))
    num_train_timesteps: int = 100  # K: diffusion steps in training
    beta_schedule: str = "squaredcos_cap_v2"  # noise schedule: squaredcos_cap_v2 | linear
    prediction_type: str = "sample"  # what the denoiser predicts: sample (the clean chunk) |
    #   epsilon; on low-dim PushCube, epsilon's clean-chunk estimate amplifies the denoiser's
    #   error by sqrt((1 - abar) / abar) at the noisiest steps, and it did markedly worse there
    clip_sample: float | None = 1.0  # clamp the predicted clean chunk to [-1, 1] while
    #   sampling (null: none)
    sampler: str = "ddim"  # default sampler: ddim | ddpm
    eta: float = 0.0  # DDIM eta: 0 deterministic, 1 DDPM-like noise
    timestep_spacing: str = "linspace"  # which of the K steps sampling visits (formulas:
    #   robopolicy/policies/noise_schedules.py inference_timesteps): linspace (evenly from K-1
    #   to 0; every figure and checkpoint before the option used it, and checkpoints without
    #   the key keep it) | leading (diffusers' DDIM default, as diffusion_policy and LeRobot
    #   sample: [90, 80, ..., 0] for K=100 and 10 steps, never starting at the noisiest level) |
    #   trailing ([99, 89, ..., 9])

    def check(self) -> None:
        super().check()
        at_least(self, 1, "num_train_timesteps")
        one_of(self, "timestep_spacing", TIMESTEP_SPACINGS)
        in_range(self, 1, self.num_train_timesteps, "num_inference_steps")
        one_of(self, "beta_schedule", BETA_SCHEDULES)
        one_of(self, "prediction_type", DIFFUSION_PREDICTIONS)
        positive(self, "clip_sample")
        one_of(self, "sampler", DIFFUSION_SAMPLERS)
        in_range(self, 0, 1, "eta")


@dataclass
class FlowArgs(ChunkPolicyArgs):
    """FlowPolicy's arguments: flow matching along the linear (rectified) path."""

    num_inference_steps: int = 10  # default ODE steps (predict_action(num_steps=...) overrides)
    time_sampling: str = "beta"  # training times: uniform | beta (pi0's, more weight on noisy
    #   times)
    beta_alpha: float = 1.5  # Beta distribution alpha for time_sampling=beta
    beta_beta: float = 1.0  # Beta distribution beta for time_sampling=beta
    time_cutoff: float = 0.999  # largest training time for time_sampling=beta
    solver: str = "euler"  # default ODE solver: euler | midpoint | heun
    noise_std: float = 0.0  # Gaussian noise added per sampling step (0: deterministic ODE)
    prediction_type: str = "sample"  # what the network predicts: sample (the clean chunk; the
    #   velocity follows from the path) | velocity. Main job on PushCube, 50 episodes: sample
    #   26/50, velocity 10/50 (beta times) and 16/50 (uniform times)
    clip_sample: float | None = 1.0  # clamp the predicted clean chunk to [-1, 1] (pairs with
    #   limits actions; needs prediction_type=sample; null: no clamp)

    def check(self) -> None:
        super().check()
        at_least(self, 1, "num_inference_steps")
        one_of(self, "time_sampling", TIME_SAMPLINGS)
        positive(self, "beta_alpha", "beta_beta")
        in_range(self, 0, 1, "time_cutoff", open_low=True)
        one_of(self, "solver", FLOW_SOLVERS)
        non_negative(self, "noise_std")
        one_of(self, "prediction_type", FLOW_PREDICTIONS)
        positive(self, "clip_sample")
        if self.clip_sample is not None and self.prediction_type != "sample":
            raise ConfigError(
                "clip_sample", self.clip_sample, "expected null unless prediction_type=sample"
            )


@dataclass
class RegressionArgs(ChunkPolicyArgs):
    """RegressionPolicy's arguments: the chunk predicted directly with MSE."""


@dataclass
class PolicyConfig:
    """What every policy group entry holds: its kind and its normalizer modes."""

    kind: str = "diffusion"  # robopolicy.policies.registry.POLICY_KINDS
    normalizer: NormalizerConfig = field(default_factory=NormalizerConfig)


@dataclass
class DiffusionPolicyConfig(PolicyConfig):
    """conf/policy/diffusion.yaml: a diffusion policy over action chunks."""

    kind: str = "diffusion"  # robopolicy.policies.registry.POLICY_KINDS
    args: DiffusionArgs = field(default_factory=DiffusionArgs)

    def check(self) -> None:
        one_of(self, "kind", ["diffusion"])


@dataclass
class FlowPolicyConfig(PolicyConfig):
    """conf/policy/flow.yaml: a flow-matching policy over action chunks."""

    kind: str = "flow"  # robopolicy.policies.registry.POLICY_KINDS
    args: FlowArgs = field(default_factory=FlowArgs)

    def check(self) -> None:
        one_of(self, "kind", ["flow"])


@dataclass
class RegressionPolicyConfig(PolicyConfig):
    """conf/policy/regression.yaml: the action chunk regressed directly (a baseline)."""

    kind: str = "regression"  # robopolicy.policies.registry.POLICY_KINDS
    args: RegressionArgs = field(default_factory=RegressionArgs)

    def check(self) -> None:
        one_of(self, "kind", ["regression"])


@dataclass
class MLPKwargs:
    """MLP denoiser over the flattened chunk (robopolicy/models/mlp.py)."""

    hidden_dims: list[int] = field(default_factory=lambda: [512, 512, 512])  # hidden widths
    time_embed_dim: int = 64  # width of the sinusoidal time embedding
    activation: str = "mish"  # mish | relu | gelu | silu | tanh
    layer_norm: bool = True  # LayerNorm after each hidden layer

    def check(self) -> None:
        widths(self, "hidden_dims")
        at_least(self, 1, "time_embed_dim")
        one_of(self, "activation", ACTIVATIONS)


@dataclass
class TransformerKwargs:
    """Transformer denoiser over the action chunk (robopolicy/models/transformer.py)."""

    d_model: int = 256  # token width
    n_heads: int = 4  # attention heads (must divide d_model)
    n_layers: int = 6  # transformer layers
    n_cond_tokens: int = 1  # tokens the observation condition is split into
    dropout: float = 0.1  # dropout inside the transformer layers

    def check(self) -> None:
        at_least(self, 1, "d_model", "n_heads", "n_layers", "n_cond_tokens")
        require(
            self.d_model % self.n_heads == 0,
            "n_heads",
            self.n_heads,
            f"expected a divisor of d_model={self.d_model}",
        )
        in_range(self, 0, 1, "dropout")


@dataclass
class UNet1DKwargs:
    """1-D temporal UNet with FiLM conditioning (robopolicy/models/unet1d.py)."""

    down_dims: list[int] = field(default_factory=lambda: [64, 128, 256])  # channel widths per
    #   level (Diffusion Policy uses 256-512-1024 on GPU)
    kernel_size: int = 5  # temporal convolution width (odd: the convolutions keep the length)
    n_groups: int = 8  # GroupNorm groups (must divide every width)
    time_embed_dim: int = 128  # width of the sinusoidal time embedding
    layout: str = "diffusion_policy"  # up path: diffusion_policy (Chi et al.'s network: one up
    #   level fewer than down levels, the first level's skip unused; 4.58M parameters at
    #   64-128-256) | every_level (this project's first network: an up level per down level,
    #   +45% parameters, ~58% more FLOPs; checkpoints written before this option hold it).
    #   PickLift, one short run each: 52% vs 46% (docs/benchmarks.md, issue 18)

    def check(self) -> None:
        widths(self, "down_dims")
        one_of(self, "layout", UNET_LAYOUTS)
        at_least(self, 1, "kernel_size", "n_groups", "time_embed_dim")
        require(self.kernel_size % 2 == 1, "kernel_size", self.kernel_size, "expected an odd width")
        require(
            all(width % self.n_groups == 0 for width in self.down_dims),
            "n_groups",
            self.n_groups,
            f"expected a divisor of every width in down_dims={list(self.down_dims)}",
        )


@dataclass
class MLPBackbone:
    """conf/backbone/mlp.yaml: the fastest denoiser on a CPU."""

    name: str = "mlp"  # backbone kind passed to the policy
    kwargs: MLPKwargs = field(default_factory=MLPKwargs)

    def check(self) -> None:
        one_of(self, "name", ["mlp"])


@dataclass
class TransformerBackbone:
    """conf/backbone/transformer.yaml."""

    name: str = "transformer"  # backbone kind passed to the policy
    kwargs: TransformerKwargs = field(default_factory=TransformerKwargs)

    def check(self) -> None:
        one_of(self, "name", ["transformer"])


@dataclass
class UNet1DBackbone:
    """conf/backbone/unet1d.yaml."""

    name: str = "unet1d"  # backbone kind passed to the policy
    kwargs: UNet1DKwargs = field(default_factory=UNet1DKwargs)

    def check(self) -> None:
        one_of(self, "name", ["unet1d"])
