"""Axis 1: denoiser backbones, time and condition embeddings, and RL heads.

Every denoiser has the signature ``forward(x, t, cond=None, cond_mask=None) -> Tensor`` with the shape of ``x``:
``t`` is a ``(B,)`` float tensor of diffusion levels or sigmas, ``cond`` a ``(B, cond_dim)`` global condition
(required exactly when ``cond_dim > 0``) and ``cond_mask`` an optional bool ``(B,)`` where False selects the
learned null condition (valid only for models built with ``cfg_dropout > 0`` or ``cfg=True``; otherwise it
raises ``ValueError``).
"""

from diffagents.nn.attention import AgentAttention, LinearAttention1d
from diffagents.nn.blocks1d import Conv1dBlock, Downsample1d, ResidualTemporalBlock, Upsample1d
from diffagents.nn.embeddings import (
    ConditionEncoder,
    FourierFeatures,
    SinusoidalEmbedding,
    encode_condition,
    make_activation,
    time_embedding,
)
from diffagents.nn.heads import AgentInverseDynamics, InverseDynamics, TwinQ, ValueMLP
from diffagents.nn.joint_unet import JointTemporalUNet
from diffagents.nn.mlp import ConcatMLP, MLPDenoiser, ResidualBlock, ResidualMLPDenoiser, mlp
from diffagents.nn.transformer import DiT1D, DiTBlock
from diffagents.nn.unet1d import TemporalUNet, TemporalValue

__all__ = [
    "AgentAttention", "AgentInverseDynamics", "ConcatMLP", "ConditionEncoder", "Conv1dBlock", "DiT1D", "DiTBlock", "Downsample1d", "FourierFeatures",
    "InverseDynamics", "JointTemporalUNet", "LinearAttention1d", "MLPDenoiser", "ResidualBlock", "ResidualMLPDenoiser",
    "ResidualTemporalBlock", "SinusoidalEmbedding", "TemporalUNet", "TemporalValue", "TwinQ", "Upsample1d",
    "ValueMLP", "encode_condition", "make_activation", "mlp", "time_embedding",
]
