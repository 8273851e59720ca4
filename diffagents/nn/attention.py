"""Attention layers for the convolutional backbones.

* :class:`AgentAttention`: multi-head self-attention across the agents of a joint multi-agent trajectory,
  independently at every time step (MADiff, Zhu et al. 2024, Sec. 4.2: attention between agents inside the
  U-Net). It is permutation-equivariant over agents: no agent positional embedding is used.
* :class:`LinearAttention1d`: Diffuser's optional linear attention over the horizon
  (``models/helpers.py``: ``Residual(PreNorm(LinearAttention))``; Shen et al. 2021).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from diffagents.nn._checks import check_positive


class AgentAttention(nn.Module):
    """Pre-norm residual multi-head self-attention across agents, per time step.

    ``y[:, :, :, h] = x[:, :, :, h] + Attn(LN(x[:, :, :, h]))`` where the attention runs over the ``N`` agents
    with ``C`` channels as features. Permuting the agents of the input permutes the output the same way.

    Args:
        channels: feature channels ``C`` (divisible by ``n_heads``).
        n_heads: attention heads.
    """

    def __init__(self, channels: int, n_heads: int = 4) -> None:
        super().__init__()
        check_positive("channels", channels)
        check_positive("n_heads", n_heads)
        if channels % n_heads:
            raise ValueError(f"n_heads: must divide channels={channels}, got {n_heads}")
        self.channels = channels
        self.n_heads = n_heads
        self.norm = nn.LayerNorm(channels)
        self.qkv = nn.Linear(channels, 3 * channels)
        self.out = nn.Linear(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: ``(B, N, C, H)`` -> ``(B, N, C, H)``."""
        if x.ndim != 4 or x.shape[2] != self.channels:
            raise ValueError(f"x: expected shape (B, N, {self.channels}, H), got {tuple(x.shape)}")
        b, n, c, h = x.shape
        z = x.permute(0, 3, 1, 2).reshape(b * h, n, c)  # (B*H, N, C): one attention problem per time step
        q, k, v = self.qkv(self.norm(z)).view(b * h, n, 3, self.n_heads, c // self.n_heads).permute(2, 0, 3, 1, 4)
        a = F.scaled_dot_product_attention(q, k, v)  # (B*H, heads, N, C/heads)
        a = self.out(a.transpose(1, 2).reshape(b * h, n, c))  # (B*H, N, C)
        return x + a.view(b, h, n, c).permute(0, 2, 3, 1)  # (B, N, C, H)


class LinearAttention1d(nn.Module):
    """Residual, pre-normed linear attention over the horizon of ``(B, C, H)`` features (Diffuser).

    Keys are softmax-normalised over positions and queries scaled by ``head_dim^-1/2``; the cost is linear in
    ``H``. The norm is a LayerNorm over channels at each position.

    Args:
        channels: feature channels ``C``.
        n_heads: attention heads.
        head_dim: channels per head.
    """

    def __init__(self, channels: int, n_heads: int = 4, head_dim: int = 32) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.head_dim = head_dim
        self.gain = nn.Parameter(torch.ones(channels, 1))  # channel LayerNorm affine, (C, 1)
        self.bias = nn.Parameter(torch.zeros(channels, 1))
        self.to_qkv = nn.Conv1d(channels, 3 * n_heads * head_dim, 1, bias=False)
        self.to_out = nn.Conv1d(n_heads * head_dim, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: ``(B, C, H)`` -> ``(B, C, H)``."""
        b, _, h = x.shape
        var, mean = torch.var_mean(x, dim=1, correction=0, keepdim=True)  # (B, 1, H) each
        z = (x - mean) * torch.rsqrt(var + 1e-5) * self.gain + self.bias  # (B, C, H), normalised over C
        q, k, v = self.to_qkv(z).view(b, 3, self.n_heads, self.head_dim, h).unbind(1)  # (B, heads, d, H) each
        k = k.softmax(dim=-1)
        context = torch.einsum("bhdn,bhen->bhde", k, v)  # (B, heads, d, d)
        out = torch.einsum("bhde,bhdn->bhen", context, q * self.head_dim**-0.5)  # (B, heads, d, H)
        return x + self.to_out(out.reshape(b, self.n_heads * self.head_dim, h))
