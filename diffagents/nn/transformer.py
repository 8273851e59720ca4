"""Transformer denoiser over trajectories ``(B, H, D)`` with adaLN-Zero conditioning.

:class:`DiT1D` adapts DiT (Peebles & Xie 2023, Sec. 3.2, "adaLN-Zero" block and final layer) from image
patches to time steps: each time step is a token with a learned positional embedding, and the conditioning
vector ``c = emb(t) + emb(cond)`` regresses per-block shift, scale and gate parameters. The gates and the output
layer start at zero, so the network is the zero function at initialisation and every block starts as the
identity (DiT Sec. 3.2).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from diffagents.nn._checks import check_cond, check_positive, check_probability, check_sequence, check_time
from diffagents.nn.embeddings import ConditionEncoder, encode_condition, time_embedding


def _modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """``x * (1 + scale) + shift`` with ``(B, d)`` parameters broadcast over the ``H`` tokens of ``(B, H, d)``."""
    return torch.addcmul(shift[:, None], x, scale[:, None] + 1.0)


class DiTBlock(nn.Module):
    """DiT block with adaLN-Zero: ``x + g1 * Attn(mod(LN(x))) ; x + g2 * MLP(mod(LN(x)))`` (DiT Fig. 3).

    Args:
        d_model: token width.
        n_heads: attention heads (must divide ``d_model``).
        dropout: attention and MLP dropout.
        mlp_ratio: MLP hidden width multiplier.
    """

    def __init__(self, d_model: int, n_heads: int, dropout: float = 0.0, mlp_ratio: int = 4) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.dropout = dropout
        self.norm1 = nn.LayerNorm(d_model, elementwise_affine=False, eps=1e-6)
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.proj = nn.Linear(d_model, d_model)
        self.norm2 = nn.LayerNorm(d_model, elementwise_affine=False, eps=1e-6)
        self.mlp = nn.Sequential(
            nn.Linear(d_model, mlp_ratio * d_model), nn.GELU(approximate="tanh"), nn.Dropout(dropout),
            nn.Linear(mlp_ratio * d_model, d_model),
        )
        ada = nn.Linear(d_model, 6 * d_model)
        nn.init.zeros_(ada.weight)
        nn.init.zeros_(ada.bias)
        self.ada = nn.Sequential(nn.SiLU(), ada)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """``x``: ``(B, H, d)``, ``c``: ``(B, d)`` -> ``(B, H, d)``."""
        b, h, d = x.shape
        shift1, scale1, gate1, shift2, scale2, gate2 = self.ada(c).chunk(6, dim=1)  # (B, d) each
        qkv = self.qkv(_modulate(self.norm1(x), shift1, scale1))  # (B, H, 3 d)
        q, k, v = qkv.view(b, h, 3, self.n_heads, d // self.n_heads).permute(2, 0, 3, 1, 4)  # (B, heads, H, dh)
        a = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0)
        a = self.proj(a.transpose(1, 2).reshape(b, h, d))  # (B, H, d)
        x = torch.addcmul(x, gate1[:, None], a)
        return torch.addcmul(x, gate2[:, None], self.mlp(_modulate(self.norm2(x), shift2, scale2)))


class DiT1D(nn.Module):
    """Diffusion transformer denoiser over trajectories ``(B, H, transition_dim)`` (Peebles & Xie 2023).

    ``Linear(transition_dim, d_model) + pos[:H]`` -> ``n_layers`` :class:`DiTBlock` s -> adaLN final layer
    ``Linear(mod(LN(h))) -> transition_dim``. The conditioning vector is ``sin(t) -> d_model -> d_model`` plus,
    when ``cond_dim > 0``, a :class:`ConditionEncoder` embedding of the condition. With ``cfg_dropout > 0`` or
    ``cfg=True`` the encoder has a learned null embedding and ``cond_mask`` is valid; otherwise passing it
    raises. Attention is bidirectional over the horizon.

    Args:
        transition_dim: features per time step.
        horizon_max: the longest horizon (size of the positional table).
        d_model: token width.
        n_layers: number of blocks.
        n_heads: attention heads (must divide ``d_model``).
        cond_dim: size of the global condition (0: unconditional).
        cfg_dropout: classifier-free-guidance condition dropout.
        dropout: attention and MLP dropout.
        cfg: create the null condition even with ``cfg_dropout = 0``.
    """

    def __init__(self, transition_dim: int, horizon_max: int = 256, d_model: int = 128, n_layers: int = 4,
                 n_heads: int = 4, cond_dim: int = 0, cfg_dropout: float = 0.0, dropout: float = 0.0, *,
                 cfg: bool = False) -> None:
        super().__init__()
        for name, value in (("transition_dim", transition_dim), ("horizon_max", horizon_max),
                            ("d_model", d_model), ("n_layers", n_layers), ("n_heads", n_heads)):
            check_positive(name, value)
        if d_model % n_heads:
            raise ValueError(f"n_heads: must divide d_model={d_model}, got {n_heads}")
        check_probability("cfg_dropout", cfg_dropout)
        check_probability("dropout", dropout)
        if cond_dim < 0:
            raise ValueError(f"cond_dim: expected >= 0, got {cond_dim}")
        if cond_dim == 0 and (cfg_dropout > 0 or cfg):
            raise ValueError(f"cfg_dropout: classifier-free guidance needs cond_dim > 0, got cond_dim={cond_dim}")
        self.transition_dim = transition_dim
        self.horizon_max = horizon_max
        self.cond_dim = cond_dim
        self.in_proj = nn.Linear(transition_dim, d_model)
        self.pos = nn.Parameter(torch.randn(horizon_max, d_model) * 0.02)
        self.time_mlp = time_embedding("sinusoidal", d_model, d_model, d_model, "silu")
        self.cond_encoder = (ConditionEncoder(cond_dim, d_model, dropout_prob=cfg_dropout, activation="silu",
                                              cfg=cfg) if cond_dim > 0 else None)
        self.blocks = nn.ModuleList(DiTBlock(d_model, n_heads, dropout) for _ in range(n_layers))
        self.norm_out = nn.LayerNorm(d_model, elementwise_affine=False, eps=1e-6)
        ada_out = nn.Linear(d_model, 2 * d_model)
        self.ada_out = nn.Sequential(nn.SiLU(), ada_out)
        self.out = nn.Linear(d_model, transition_dim)
        for layer in (ada_out, self.out):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None = None,
                cond_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Predict the denoising target for ``x`` of shape ``(B, H, transition_dim)``; returns the same shape."""
        check_sequence(x, self.transition_dim)
        batch, horizon = x.shape[0], x.shape[1]
        if horizon > self.horizon_max:
            raise ValueError(f"horizon: expected at most horizon_max={self.horizon_max}, got {horizon}")
        t = check_time(t, batch)
        check_cond(cond, batch, self.cond_dim)
        c = self.time_mlp(t)  # (B, d)
        e = encode_condition(self.cond_encoder, cond, cond_mask, "DiT1D")
        if e is not None:
            c = c + e
        h = self.in_proj(x) + self.pos[:horizon]  # (B, H, d)
        for block in self.blocks:
            h = block(h, c)
        shift, scale = self.ada_out(c).chunk(2, dim=1)  # (B, d) each
        return self.out(_modulate(self.norm_out(h), shift, scale))  # (B, H, D)
