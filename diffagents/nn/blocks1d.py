"""Convolutional building blocks of the temporal U-Net (Janner et al. 2022, Diffuser, Sec. 3.3 and App. C;
``jannerm/diffuser`` ``models/helpers.py`` and ``models/temporal.py``).

All blocks take channel-first features ``(B, C, H)``.
"""

from __future__ import annotations

import torch
from torch import nn

from diffagents.nn.embeddings import make_activation


class Conv1dBlock(nn.Sequential):
    """``Conv1d -> GroupNorm -> act`` with "same" padding (Diffuser's ``Conv1dBlock``).

    Args:
        in_channels: input channels.
        out_channels: output channels (divisible by ``n_groups``).
        kernel_size: odd kernel size.
        activation: activation name (Diffuser: Mish).
        n_groups: GroupNorm groups.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 5, activation: str = "mish",
                 n_groups: int = 8) -> None:
        super().__init__(
            nn.Conv1d(in_channels, out_channels, kernel_size, padding=kernel_size // 2),
            nn.GroupNorm(n_groups, out_channels),
            make_activation(activation),
        )


class ResidualTemporalBlock(nn.Module):
    """Two :class:`Conv1dBlock` s with the time (and condition) embedding injected after the first, plus a
    residual 1x1 convolution (Diffuser's ``ResidualTemporalBlock``).

    The embedding ``e`` enters as an additive shift ``h + W e`` (Diffuser) or, with ``film=True``, as FiLM
    (Perez et al. 2018) ``h * (1 + scale) + shift`` with ``[scale, shift] = W e``, as in Chi et al.'s
    ``ConditionalResidualBlock1D`` (Diffusion Policy, Sec. 3.4; there ``scale * h + shift``; the ``1 +`` is a
    reparameterisation that starts near identity).

    Args:
        in_channels: input channels.
        out_channels: output channels.
        embed_dim: size of the embedding vector.
        kernel_size: odd kernel size.
        activation: activation name.
        n_groups: GroupNorm groups.
        film: scale-and-shift modulation instead of a shift only.
    """

    def __init__(self, in_channels: int, out_channels: int, embed_dim: int, kernel_size: int = 5,
                 activation: str = "mish", n_groups: int = 8, film: bool = False) -> None:
        super().__init__()
        self.film = film
        self.conv1 = Conv1dBlock(in_channels, out_channels, kernel_size, activation, n_groups)
        self.conv2 = Conv1dBlock(out_channels, out_channels, kernel_size, activation, n_groups)
        self.emb_proj = nn.Sequential(make_activation(activation),
                                      nn.Linear(embed_dim, out_channels * (2 if film else 1)))
        self.residual: nn.Module = (
            nn.Conv1d(in_channels, out_channels, 1) if in_channels != out_channels else nn.Identity()
        )

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        """``x``: ``(B, C_in, H)``, ``emb``: ``(B, E)`` -> ``(B, C_out, H)``."""
        h = self.conv1(x)
        e = self.emb_proj(emb)[:, :, None]  # (B, C_out or 2 C_out, 1)
        if self.film:
            scale, shift = e.chunk(2, dim=1)  # (B, C_out, 1) each
            h = torch.addcmul(shift, h, scale + 1.0)
        else:
            h = h + e
        return self.conv2(h) + self.residual(x)


class Downsample1d(nn.Conv1d):
    """Stride-2 convolution ``(B, C, H) -> (B, C, ceil(H / 2))`` (kernel 3, padding 1)."""

    def __init__(self, channels: int) -> None:
        super().__init__(channels, channels, 3, stride=2, padding=1)


class Upsample1d(nn.ConvTranspose1d):
    """Stride-2 transposed convolution ``(B, C, H) -> (B, C, 2 H)`` (kernel 4, padding 1)."""

    def __init__(self, channels: int) -> None:
        super().__init__(channels, channels, 4, stride=2, padding=1)
