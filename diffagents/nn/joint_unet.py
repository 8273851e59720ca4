"""The joint multi-agent temporal U-Net of MADiff (Zhu et al. 2024, Sec. 4.2 and Fig. 2): every agent's
trajectory goes through a shared temporal U-Net (Diffuser's, Janner et al. 2022) and the agents exchange
information by multi-head attention across agents on the skip connections and at the bottleneck
(``ConvAttentionDeconv`` in ``zbzhu99/madiff``); an optional learned agent-id embedding is added to the time
embedding. Used by :class:`~diffagents.roles.joint_planner.JointPlanner`.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import torch
from torch import nn

from diffagents.nn.attention import AgentAttention
from diffagents.nn.blocks1d import Conv1dBlock, Downsample1d, ResidualTemporalBlock, Upsample1d
from diffagents.nn.embeddings import ConditionEncoder, encode_condition, time_embedding


def _check_int(name: str, value: int, minimum: int = 1) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{name}: expected an integer >= {minimum}, got {value!r}")


class _Level(nn.Module):
    """One U-Net resolution: two residual blocks then resampling (plus, on the up path, the agent attention
    applied to the incoming skip connection)."""

    def __init__(self, res1: nn.Module, res2: nn.Module, resample: nn.Module, skip_attn: nn.Module | None = None
                 ) -> None:
        super().__init__()
        self.res1, self.res2, self.resample = res1, res2, resample
        self.skip_attn: nn.Module = skip_attn if skip_attn is not None else nn.Identity()

    def forward(self, z: torch.Tensor, emb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B*N, C_in, H)`` -> (features before resampling, features after)."""
        z = self.res2(self.res1(z, emb), emb)
        return z, self.resample(z)


class JointTemporalUNet(nn.Module):
    """Joint denoiser ``eps(x, t, R)`` over ``x`` of shape ``(B, N, H, obs_dim)``.

    Every agent's trajectory runs through the same temporal U-Net (channel-first ``(B*N, C, H)`` features,
    :class:`~diffagents.nn.ResidualTemporalBlock` levels with stride-2 resampling). Before each skip connection
    is concatenated on the up path, and after the middle blocks, an :class:`~diffagents.nn.AgentAttention`
    layer mixes the ``N`` agents at every time step (MADiff Sec. 4.2).

    Args:
        obs_dim: per-agent observation size ``D``.
        n_agents: number of agents ``N`` (used only by the agent-id embedding and for shape checks).
        dim: channels of the first level and embedding size.
        dim_mults: channel multipliers; ``H`` must be divisible by ``2 ** (len(dim_mults) - 1)``.
        cond_dim: size of the global condition (1 for the team return; 0 = unconditional).
        kernel_size: odd temporal kernel size.
        activation: activation name.
        n_groups: GroupNorm groups.
        cfg_dropout: classifier-free-guidance condition dropout (MADiff: 0.25).
        cfg: create the learned null condition even with ``cfg_dropout = 0``.
        agent_embedding: add a learned per-agent embedding to the time embedding (breaks permutation
            equivariance on purpose).
        n_heads: attention heads of the agent attention layers.
        attention: use agent attention (False gives N independent U-Nets with shared weights: an ablation).
    """

    def __init__(self, obs_dim: int, n_agents: int, dim: int = 32, dim_mults: Sequence[int] = (1, 2, 4),
                 cond_dim: int = 1, *, kernel_size: int = 5, activation: str = "mish", n_groups: int = 8,
                 cfg_dropout: float = 0.0, cfg: bool = False, agent_embedding: bool = True, n_heads: int = 4,
                 attention: bool = True) -> None:
        super().__init__()
        for name, value in (("obs_dim", obs_dim), ("n_agents", n_agents), ("dim", dim), ("n_heads", n_heads)):
            _check_int(name, value)
        if not dim_mults or any(not isinstance(m, int) or m < 1 for m in dim_mults):
            raise ValueError(f"dim_mults: expected a non-empty sequence of positive integers, got {dim_mults!r}")
        channels = [dim * m for m in dim_mults]
        if any(c % n_groups or c % n_heads for c in channels):
            raise ValueError(f"dim: every level's channels {channels} must be divisible by n_groups={n_groups} "
                             f"and n_heads={n_heads}, got dim={dim}")
        if cond_dim == 0 and (cfg_dropout > 0 or cfg):
            raise ValueError(f"cfg_dropout: classifier-free guidance needs cond_dim > 0, got cond_dim={cond_dim}")
        self.obs_dim, self.n_agents, self.cond_dim = obs_dim, n_agents, cond_dim
        self.downsample_factor = 2 ** (len(dim_mults) - 1)
        self.time_mlp = time_embedding("sinusoidal", dim, dim, 4 * dim, activation)
        self.cond_encoder = (ConditionEncoder(cond_dim, dim, dropout_prob=cfg_dropout, activation=activation,
                                              cfg=cfg) if cond_dim > 0 else None)
        self.agent_embedding = nn.Embedding(n_agents, dim) if agent_embedding else None
        if self.agent_embedding is not None:
            nn.init.normal_(self.agent_embedding.weight, std=0.02)
        block = partial(ResidualTemporalBlock, embed_dim=dim, kernel_size=kernel_size, activation=activation,
                        n_groups=n_groups, film=cond_dim > 0)

        def attn(c: int) -> nn.Module:
            return AgentAttention(c, n_heads) if attention else nn.Identity()

        dims = [obs_dim, *channels]
        in_out = list(zip(dims[:-1], dims[1:]))
        self.downs = nn.ModuleList(
            _Level(block(c_in, c_out), block(c_out, c_out),
                   Downsample1d(c_out) if i < len(in_out) - 1 else nn.Identity())
            for i, (c_in, c_out) in enumerate(in_out)
        )
        mid = dims[-1]
        self.mid1, self.mid2, self.mid_attn = block(mid, mid), block(mid, mid), attn(mid)
        self.ups = nn.ModuleList(
            _Level(block(2 * c_out, c_in), block(c_in, c_in), Upsample1d(c_in), skip_attn=attn(c_out))
            for c_in, c_out in reversed(in_out[1:])
        )
        self.final = nn.Sequential(Conv1dBlock(dim, dim, kernel_size, activation, n_groups),
                                   nn.Conv1d(dim, obs_dim, 1))

    def _check(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
        if x.ndim != 4 or x.shape[3] != self.obs_dim:
            raise ValueError(f"x: expected shape (B, N, H, {self.obs_dim}), got {tuple(x.shape)}")
        if self.agent_embedding is not None and x.shape[1] != self.n_agents:
            raise ValueError(f"x: expected {self.n_agents} agents on dim 1 (agent embeddings), got {tuple(x.shape)}")
        if x.shape[2] % self.downsample_factor:
            raise ValueError(f"horizon: expected a multiple of {self.downsample_factor} (2 ** (len(dim_mults) - 1)), "
                             f"got {x.shape[2]}")
        b = x.shape[0]
        if t.ndim == 0:
            t = t.expand(b)
        if t.shape != (b,):
            raise ValueError(f"t: expected shape ({b},), got {tuple(t.shape)}")
        if (cond is None) != (self.cond_dim == 0) or (cond is not None and cond.shape != (b, self.cond_dim)):
            want = "None" if self.cond_dim == 0 else f"shape ({b}, {self.cond_dim})"
            raise ValueError(f"cond: expected {want}, got {None if cond is None else tuple(cond.shape)}")
        return t

    @staticmethod
    def _mix(attn: nn.Module, z: torch.Tensor, b: int) -> torch.Tensor:
        """Agent attention on per-agent features ``(B*N, C, H') -> (B, N, C, H') -> (B*N, C, H')``."""
        return attn(z.view(b, -1, *z.shape[1:])).flatten(0, 1)

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None = None,
                cond_mask: torch.Tensor | None = None) -> torch.Tensor:
        """``x``: ``(B, N, H, D)``, ``t``: ``(B,)``, ``cond``: ``(B, cond_dim)`` -> ``(B, N, H, D)``."""
        t = self._check(x, t, cond)
        b, n, h, d = x.shape
        emb = self.time_mlp(t)  # (B, dim)
        c = encode_condition(self.cond_encoder, cond, cond_mask, type(self).__name__)
        if c is not None:
            emb = emb + c
        emb = emb[:, None].expand(b, n, emb.shape[-1])  # (B, N, dim): one condition draw shared by the agents
        if self.agent_embedding is not None:
            emb = emb + self.agent_embedding.weight[None]
        emb = emb.reshape(b * n, -1)  # (B*N, dim)
        z = x.reshape(b * n, h, d).transpose(1, 2)  # (B*N, D, H)
        skips = []
        for level in self.downs:
            skip, z = level(z, emb)
            skips.append(skip)
        z = self._mix(self.mid_attn, self.mid2(self.mid1(z, emb), emb), b)
        for level in self.ups:
            assert isinstance(level, _Level)
            z = torch.cat([z, self._mix(level.skip_attn, skips.pop(), b)], dim=1)  # (B*N, 2 C, H')
            _, z = level(z, emb)
        return self.final(z).transpose(1, 2).reshape(b, n, h, d)  # (B, N, H, D)
