"""Neural-network building blocks: denoiser backbones (1-D UNet, transformer, MLP), ResNet-18 with
GroupNorm, and the observation encoder that turns a dict of observations into one condition vector.

Every denoiser has the same signature, so a policy can use any of them::

    denoiser(x: (B, T, Da), t: (B,) float, cond: (B, Dc)) -> (B, T, Da)

``t`` is on the scale of diffusion steps, roughly ``[0, 1000]`` (see ``embeddings``): the diffusion
policy passes its step index, the flow policy ``1000 * t``.
"""

from robopolicy.models.embeddings import SinusoidalTimeEmbedding
from robopolicy.models.mlp import MLP, MLPDenoiser
from robopolicy.models.obs_encoder import ObsEncoder
from robopolicy.models.resnet import resnet18_groupnorm
from robopolicy.models.transformer import TransformerDenoiser
from robopolicy.models.unet1d import ConditionalUnet1D

__all__ = [
    "MLP",
    "ConditionalUnet1D",
    "MLPDenoiser",
    "ObsEncoder",
    "SinusoidalTimeEmbedding",
    "TransformerDenoiser",
    "resnet18_groupnorm",
]
