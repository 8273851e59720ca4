"""Temporal U-Net denoiser and value network over trajectories ``(B, H, D)``.

:class:`TemporalUNet` is Diffuser's ``TemporalUnet`` (Janner et al. 2022, Sec. 3.3 and Fig. 2; App. C:
``dim=32, dim_mults=(1, 2, 4, 8)``) with an optional global condition that modulates every residual block by
FiLM, as in Chi et al.'s ``ConditionalUnet1D`` (Diffusion Policy, Sec. 3.4) and Decision Diffuser (Ajay et al.
2023, returns conditioning with classifier-free guidance). :class:`TemporalValue` is Diffuser's
``ValueFunction`` (Sec. 3.2, Eq. 3: the guide ``J_phi(tau^i, i)`` for reward guidance on noisy plans).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial

import torch
from torch import nn

from diffagents.nn._checks import check_cond, check_positive, check_probability, check_sequence, check_time
from diffagents.nn.attention import LinearAttention1d
from diffagents.nn.blocks1d import Conv1dBlock, Downsample1d, ResidualTemporalBlock, Upsample1d
from diffagents.nn.embeddings import ConditionEncoder, encode_condition, make_activation, time_embedding

BlockFactory = Callable[[int, int], ResidualTemporalBlock]


class _Level(nn.Module):
    """One U-Net resolution: two residual blocks, optional attention, then a resampling layer."""

    def __init__(self, in_channels: int, out_channels: int, block: BlockFactory, attention: bool,
                 resample: nn.Module) -> None:
        super().__init__()
        self.res1 = block(in_channels, out_channels)
        self.res2 = block(out_channels, out_channels)
        self.attn: nn.Module = LinearAttention1d(out_channels) if attention else nn.Identity()
        self.resample = resample

    def forward(self, h: torch.Tensor, emb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return the features before resampling (the skip) and after."""
        h = self.attn(self.res2(self.res1(h, emb), emb))
        return h, self.resample(h)


def _validate(transition_dim: int, dim: int, dim_mults: Sequence[int], cond_dim: int, kernel_size: int,
              n_groups: int, cfg_dropout: float, cfg: bool) -> list[int]:
    """Check the shared U-Net arguments; return the channel list ``[transition_dim, dim * m, ...]``."""
    check_positive("transition_dim", transition_dim)
    check_positive("dim", dim)
    check_positive("n_groups", n_groups)
    check_probability("cfg_dropout", cfg_dropout)
    if not dim_mults or any(not isinstance(m, int) or m < 1 for m in dim_mults):
        raise ValueError(f"dim_mults: expected a non-empty sequence of positive integers, got {dim_mults!r}")
    if kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(f"kernel_size: expected an odd positive integer (same-length padding), got {kernel_size}")
    if cond_dim < 0:
        raise ValueError(f"cond_dim: expected >= 0, got {cond_dim}")
    if cond_dim == 0 and (cfg_dropout > 0 or cfg):
        raise ValueError(f"cfg_dropout: classifier-free guidance needs cond_dim > 0, got cond_dim={cond_dim}")
    channels = [dim * m for m in dim_mults]
    if any(c % n_groups for c in channels):
        raise ValueError(f"n_groups: must divide every level's channels {channels}, got {n_groups}")
    return [transition_dim, *channels]


def _embedding(dim: int, cond_dim: int, cfg_dropout: float, cfg: bool, activation: str
               ) -> tuple[nn.Sequential, ConditionEncoder | None]:
    """Diffuser's time MLP ``sin(dim) -> 4 dim -> dim`` and the condition encoder added to it."""
    time_mlp = time_embedding("sinusoidal", dim, dim, 4 * dim, activation)
    encoder = (ConditionEncoder(cond_dim, dim, dropout_prob=cfg_dropout, activation=activation, cfg=cfg)
               if cond_dim > 0 else None)
    return time_mlp, encoder


class TemporalUNet(nn.Module):
    """Diffuser's temporal U-Net ``eps(tau, t, cond)`` over trajectories ``(B, H, transition_dim)``.

    Down path: per level two :class:`ResidualTemporalBlock` s (+ optional linear attention), then a stride-2
    convolution (not after the last level); middle: two blocks; up path: concatenate the skip, two blocks,
    transposed convolution; final ``Conv1dBlock -> Conv1d(1x1)``. Convolutions run over time on channel-first
    features. With ``dim=32, dim_mults=(1, 2, 4, 8)`` and ``transition_dim=23`` it has about 3.9M parameters.

    The time embedding ``sin(t) -> 4 dim -> dim`` plus, when ``cond_dim > 0``, a :class:`ConditionEncoder`
    embedding of the global condition (returns for Decision Diffuser, observations for Diffusion Policy) enters
    every residual block: by FiLM when ``film`` (default: when conditional), else by an additive shift
    (Diffuser). With ``cfg_dropout > 0`` or ``cfg=True`` the encoder has a learned null embedding and
    ``cond_mask`` is valid; otherwise passing it raises.

    Args:
        transition_dim: features per time step (states and actions).
        dim: channels of the first level and size of the embedding.
        dim_mults: channel multipliers per level; the horizon must be divisible by ``2 ** (len - 1)``.
        cond_dim: size of the global condition (0: unconditional).
        kernel_size: odd temporal kernel size.
        activation: activation name (Diffuser: Mish).
        n_groups: GroupNorm groups.
        cfg_dropout: classifier-free-guidance condition dropout (Decision Diffuser: 0.25).
        attention: Diffuser's linear attention after each level (used for HalfCheetah).
        film: FiLM (scale and shift) instead of a shift; default ``cond_dim > 0``.
        cfg: create the null condition even with ``cfg_dropout = 0``.
    """

    def __init__(self, transition_dim: int, dim: int = 32, dim_mults: Sequence[int] = (1, 2, 4, 8),
                 cond_dim: int = 0, kernel_size: int = 5, activation: str = "mish", n_groups: int = 8,
                 cfg_dropout: float = 0.0, attention: bool = False, *, film: bool | None = None,
                 cfg: bool = False) -> None:
        super().__init__()
        dims = _validate(transition_dim, dim, dim_mults, cond_dim, kernel_size, n_groups, cfg_dropout, cfg)
        self.transition_dim = transition_dim
        self.cond_dim = cond_dim
        self.downsample_factor = 2 ** (len(dim_mults) - 1)
        self.time_mlp, self.cond_encoder = _embedding(dim, cond_dim, cfg_dropout, cfg, activation)
        block = partial(ResidualTemporalBlock, embed_dim=dim, kernel_size=kernel_size, activation=activation,
                        n_groups=n_groups, film=cond_dim > 0 if film is None else film)
        in_out = list(zip(dims[:-1], dims[1:]))
        self.downs = nn.ModuleList(
            _Level(c_in, c_out, block, attention, Downsample1d(c_out) if i < len(in_out) - 1 else nn.Identity())
            for i, (c_in, c_out) in enumerate(in_out)
        )
        mid = dims[-1]
        self.mid1 = block(mid, mid)
        self.mid_attn: nn.Module = LinearAttention1d(mid) if attention else nn.Identity()
        self.mid2 = block(mid, mid)
        self.ups = nn.ModuleList(
            _Level(2 * c_out, c_in, block, attention, Upsample1d(c_in)) for c_in, c_out in reversed(in_out[1:])
        )
        self.final = nn.Sequential(Conv1dBlock(dim, dim, kernel_size, activation, n_groups),
                                   nn.Conv1d(dim, transition_dim, 1))

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None = None,
                cond_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Predict the denoising target for ``x`` of shape ``(B, H, transition_dim)``; returns the same shape."""
        check_sequence(x, self.transition_dim)
        batch, horizon = x.shape[0], x.shape[1]
        if horizon % self.downsample_factor:
            raise ValueError(
                f"horizon: expected a multiple of {self.downsample_factor} (2 ** (len(dim_mults) - 1)), got {horizon}"
            )
        t = check_time(t, batch)
        check_cond(cond, batch, self.cond_dim)
        emb = self.time_mlp(t)  # (B, dim)
        c = encode_condition(self.cond_encoder, cond, cond_mask, "TemporalUNet")
        if c is not None:
            emb = emb + c
        h = x.transpose(1, 2)  # (B, D, H)
        skips = []
        for level in self.downs:
            skip, h = level(h, emb)
            skips.append(skip)
        h = self.mid2(self.mid_attn(self.mid1(h, emb)), emb)
        for level in self.ups:
            h = torch.cat([h, skips.pop()], dim=1)  # (B, 2 C, H')
            _, h = level(h, emb)
        return self.final(h).transpose(1, 2)  # (B, H, D)


class TemporalValue(nn.Module):
    """Diffuser's value function ``J(tau^i, i)`` on (noisy) trajectories, returning ``(B,)``.

    The U-Net down path (two residual blocks and a stride-2 convolution per level), two more blocks that halve
    the channels (``8 dim -> 4 dim -> 2 dim`` for the default multipliers), each followed by a stride-2
    convolution, then ``MLP([flatten(h), emb]) -> 1``. Unlike the reference code, the flattened size is
    computed from the actual downsampled length, so any horizon works.

    Args:
        horizon: trajectory length ``H`` (fixed: the head is a dense layer over the flattened features).
        transition_dim: features per time step.
        dim: channels of the first level and size of the embedding.
        dim_mults: channel multipliers per level.
        cond_dim: size of an optional global condition, added to the time embedding.
        kernel_size: odd temporal kernel size.
        activation: activation name.
        n_groups: GroupNorm groups.
        cfg_dropout: classifier-free-guidance condition dropout.
        film: FiLM instead of a shift in the blocks; default ``cond_dim > 0``.
        cfg: create the null condition even with ``cfg_dropout = 0``.
    """

    def __init__(self, horizon: int, transition_dim: int, dim: int = 32, dim_mults: Sequence[int] = (1, 2, 4, 8),
                 cond_dim: int = 0, *, kernel_size: int = 5, activation: str = "mish", n_groups: int = 8,
                 cfg_dropout: float = 0.0, film: bool | None = None, cfg: bool = False) -> None:
        super().__init__()
        check_positive("horizon", horizon)
        dims = _validate(transition_dim, dim, dim_mults, cond_dim, kernel_size, n_groups, cfg_dropout, cfg)
        mid = dims[-1]
        if (mid // 4) % n_groups or mid // 4 == 0:
            raise ValueError(f"n_groups: must divide the head channels {mid // 4} (dim * dim_mults[-1] / 4), "
                             f"got {n_groups}")
        self.horizon = horizon
        self.transition_dim = transition_dim
        self.cond_dim = cond_dim
        self.time_mlp, self.cond_encoder = _embedding(dim, cond_dim, cfg_dropout, cfg, activation)
        block = partial(ResidualTemporalBlock, embed_dim=dim, kernel_size=kernel_size, activation=activation,
                        n_groups=n_groups, film=cond_dim > 0 if film is None else film)
        self.downs = nn.ModuleList(
            _Level(c_in, c_out, block, False, Downsample1d(c_out)) for c_in, c_out in zip(dims[:-1], dims[1:])
        )
        self.mid1 = block(mid, mid // 2)
        self.mid_down1 = Downsample1d(mid // 2)
        self.mid2 = block(mid // 2, mid // 4)
        self.mid_down2 = Downsample1d(mid // 4)
        lengths = [horizon]
        for _ in range(len(dim_mults) + 2):
            lengths.append((lengths[-1] + 1) // 2)  # a stride-2, padding-1, kernel-3 convolution: ceil(L / 2)
        if (mid // 4) // n_groups * lengths[-2] < 2:
            raise ValueError(
                f"n_groups: the last block's GroupNorm would normalise single values ({mid // 4} channels, "
                f"{n_groups} groups, length {lengths[-2]}); use fewer groups or a longer horizon, got {n_groups}"
            )
        fc = (mid // 4) * lengths[-1]
        self.head = nn.Sequential(nn.Linear(fc + dim, fc // 2 or 1), make_activation(activation),
                                  nn.Linear(fc // 2 or 1, 1))

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None = None,
                cond_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Value of ``x`` of shape ``(B, horizon, transition_dim)`` at level ``t``; returns ``(B,)``."""
        if x.ndim != 3 or x.shape[1] != self.horizon or x.shape[2] != self.transition_dim:
            raise ValueError(f"x: expected shape (B, {self.horizon}, {self.transition_dim}), got {tuple(x.shape)}")
        batch = x.shape[0]
        t = check_time(t, batch)
        check_cond(cond, batch, self.cond_dim)
        emb = self.time_mlp(t)  # (B, dim)
        c = encode_condition(self.cond_encoder, cond, cond_mask, "TemporalValue")
        if c is not None:
            emb = emb + c
        h = x.transpose(1, 2)  # (B, D, H)
        for level in self.downs:
            _, h = level(h, emb)
        h = self.mid_down1(self.mid1(h, emb))
        h = self.mid_down2(self.mid2(h, emb))  # (B, 2 dim, L)
        return self.head(torch.cat([h.flatten(1), emb], dim=1)).squeeze(-1)  # (B,)
