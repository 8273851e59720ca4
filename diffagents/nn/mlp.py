"""MLP denoisers for actions and transitions (vectors of shape ``(B, D)``).

* :func:`mlp`: the plain multilayer perceptron builder used by the denoisers and the RL heads.
* :class:`MLPDenoiser`: the Diffusion-QL noise network (Wang et al. 2023, Sec. 4 and App. D; official
  ``agents/model.py``): sinusoidal time embedding through a small MLP, concatenated with ``x`` and the state.
* :class:`ResidualMLPDenoiser`: IDQL's LN-ResNet actor (Hansen-Estruch et al. 2023, App. B) and SynthER's
  residual MLP denoiser (Lu et al. 2023, Sec. 3).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from diffagents.nn._checks import check_cond, check_features, check_positive, check_probability, check_time
from diffagents.nn.embeddings import ConditionEncoder, encode_condition, make_activation, time_embedding


def mlp(in_dim: int, out_dim: int, hidden: Sequence[int] = (256, 256), activation: str = "relu",
        layer_norm: bool = False, dropout: float = 0.0, output_activation: str | None = None) -> nn.Sequential:
    """``[Linear -> (LayerNorm) -> act -> (Dropout)] * len(hidden) -> Linear (-> output act)``.

    Args:
        in_dim: input features.
        out_dim: output features.
        hidden: widths of the hidden layers (empty for a single linear layer).
        activation: hidden activation name (see :func:`~diffagents.nn.make_activation`).
        layer_norm: add a LayerNorm after each hidden linear layer.
        dropout: dropout probability after each hidden activation.
        output_activation: optional activation name applied to the output.
    """
    check_positive("in_dim", in_dim)
    check_positive("out_dim", out_dim)
    check_probability("dropout", dropout)
    layers: list[nn.Module] = []
    width = in_dim
    for i, h in enumerate(hidden):
        check_positive(f"hidden[{i}]", h)
        layers.append(nn.Linear(width, h))
        if layer_norm:
            layers.append(nn.LayerNorm(h))
        layers.append(make_activation(activation))
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        width = h
    layers.append(nn.Linear(width, out_dim))
    if output_activation is not None:
        layers.append(make_activation(output_activation))
    return nn.Sequential(*layers)


def _condition_encoder(cond_dim: int, time_dim: int, cfg_dropout: float, cfg: bool,
                       activation: str) -> ConditionEncoder | None:
    """A CFG condition encoder when guidance is enabled, else ``None`` (the raw condition is concatenated)."""
    check_probability("cfg_dropout", cfg_dropout)
    if cond_dim == 0:
        if cfg_dropout > 0 or cfg:
            raise ValueError(f"cfg_dropout: classifier-free guidance needs cond_dim > 0, got cond_dim={cond_dim}")
        return None
    if cfg_dropout == 0 and not cfg:
        return None
    return ConditionEncoder(cond_dim, max(cond_dim, time_dim), dropout_prob=cfg_dropout, activation=activation,
                            cfg=True)


class MLPDenoiser(nn.Module):
    """Diffusion-QL noise network ``eps(x, t, s)`` (Wang et al. 2023; official ``agents/model.py``).

    ``t -> SinusoidalEmbedding(time_dim) -> Linear(time_dim, 2 time_dim) -> act -> Linear(2 time_dim, time_dim)``,
    then ``mlp([x, t_emb, cond]) -> x_dim``. The paper uses three hidden layers of 256 with Mish
    (``activation="mish"``) and ``time_dim = 16``.

    The condition (the state, for a policy) is concatenated raw, as in the paper. With ``cfg_dropout > 0`` or
    ``cfg=True`` it first goes through a :class:`ConditionEncoder` (width ``max(cond_dim, time_dim)``) that owns
    a learned null embedding, and ``cond_mask`` becomes valid; otherwise passing ``cond_mask`` raises.

    Args:
        x_dim: size of the denoised vector (e.g. the action).
        cond_dim: size of the condition (0: unconditional).
        hidden: hidden widths of the main MLP.
        time_dim: size of the time embedding.
        activation: activation name.
        cfg_dropout: classifier-free-guidance condition dropout in training.
        cfg: create the null condition even with ``cfg_dropout = 0``.
    """

    def __init__(self, x_dim: int, cond_dim: int = 0, hidden: Sequence[int] = (256, 256, 256), time_dim: int = 16,
                 activation: str = "relu", cfg_dropout: float = 0.0, *, cfg: bool = False) -> None:
        super().__init__()
        check_positive("x_dim", x_dim)
        if cond_dim < 0:
            raise ValueError(f"cond_dim: expected >= 0, got {cond_dim}")
        self.x_dim = x_dim
        self.cond_dim = cond_dim
        self.time_mlp = time_embedding("sinusoidal", time_dim, time_dim, 2 * time_dim, activation)
        self.cond_encoder = _condition_encoder(cond_dim, time_dim, cfg_dropout, cfg, activation)
        c_dim = self.cond_encoder.out_dim if self.cond_encoder is not None else cond_dim
        self.net = mlp(x_dim + time_dim + c_dim, x_dim, hidden, activation)

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None = None,
                cond_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Predict the denoising target for ``x`` of shape ``(B, x_dim)``; returns ``(B, x_dim)``."""
        check_features(x, self.x_dim)
        t = check_time(t, x.shape[0])
        check_cond(cond, x.shape[0], self.cond_dim)
        c = encode_condition(self.cond_encoder, cond, cond_mask, "MLPDenoiser")
        h = torch.cat([x, self.time_mlp(t)] if c is None else [x, self.time_mlp(t), c], dim=-1)
        return self.net(h)


class ResidualBlock(nn.Module):
    """Pre-norm residual MLP block ``h + Linear(Dropout(act(Linear(act(LN(h))))))``.

    IDQL's ``MLPResNetBlock`` (LayerNorm, expansion 4) with SynthER's activation after the norm.

    Args:
        width: feature size.
        expansion: hidden width multiplier (IDQL: 4; SynthER's single-linear block is closest to 1).
        activation: activation name.
        dropout: dropout before the output linear layer (IDQL: 0.1).
        layer_norm: use the LayerNorm.
    """

    def __init__(self, width: int, expansion: int = 4, activation: str = "relu", dropout: float = 0.0,
                 layer_norm: bool = True) -> None:
        super().__init__()
        check_positive("expansion", expansion)
        check_probability("dropout", dropout)
        self.body = nn.Sequential(
            nn.LayerNorm(width) if layer_norm else nn.Identity(),
            make_activation(activation),
            nn.Linear(width, expansion * width),
            make_activation(activation),
            nn.Dropout(dropout) if dropout > 0 else nn.Identity(),
            nn.Linear(expansion * width, width),
        )

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h + self.body(h)


def _time_mlp(kind: str, time_dim: int, activation: str, fourier_scale: float) -> nn.Sequential:
    """``embed(t) -> time_dim -> 2 time_dim -> time_dim`` (a helper: the denoiser's argument shadows the name)."""
    return time_embedding(kind, time_dim, time_dim, 2 * time_dim, activation, fourier_scale)


class ResidualMLPDenoiser(nn.Module):
    """Residual MLP denoiser: IDQL's LN-ResNet actor / SynthER's ``ResidualMLPDenoiser``.

    ``Linear([x, t_emb, cond]) -> width``, then ``n_blocks`` :class:`ResidualBlock` s, then
    ``act -> Linear(width, x_dim)``. IDQL: width 256, 3 blocks, dropout 0.1, LayerNorm, Fourier time features
    (64); SynthER: width 1024-2048, 6 blocks, random Fourier features of EDM's ``c_noise``.

    The condition is concatenated raw unless classifier-free guidance is enabled (``cfg_dropout > 0`` or
    ``cfg=True``), in which case it is embedded by a :class:`ConditionEncoder` with a learned null embedding and
    ``cond_mask`` becomes valid (otherwise passing it raises).

    Args:
        x_dim: size of the denoised vector.
        cond_dim: size of the condition (0: unconditional).
        width: residual stream width.
        n_blocks: number of residual blocks.
        time_dim: size of the time embedding.
        activation: activation name.
        dropout: dropout inside each block.
        layer_norm: LayerNorm at the start of each block.
        time_embedding: ``"fourier"`` (:class:`FourierFeatures`) or ``"sinusoidal"``.
        cfg_dropout: classifier-free-guidance condition dropout in training.
        expansion: hidden width multiplier inside each block.
        fourier_scale: frequency scale of the Fourier features.
        cfg: create the null condition even with ``cfg_dropout = 0``.
    """

    def __init__(self, x_dim: int, cond_dim: int = 0, width: int = 256, n_blocks: int = 3, time_dim: int = 64,
                 activation: str = "relu", dropout: float = 0.0, layer_norm: bool = True,
                 time_embedding: str = "fourier", cfg_dropout: float = 0.0, *, expansion: int = 4,
                 fourier_scale: float = 16.0, cfg: bool = False) -> None:
        super().__init__()
        check_positive("x_dim", x_dim)
        check_positive("width", width)
        check_positive("n_blocks", n_blocks)
        if cond_dim < 0:
            raise ValueError(f"cond_dim: expected >= 0, got {cond_dim}")
        self.x_dim = x_dim
        self.cond_dim = cond_dim
        self.time_mlp = _time_mlp(time_embedding, time_dim, activation, fourier_scale)
        self.cond_encoder = _condition_encoder(cond_dim, time_dim, cfg_dropout, cfg, activation)
        c_dim = self.cond_encoder.out_dim if self.cond_encoder is not None else cond_dim
        self.in_proj = nn.Linear(x_dim + time_dim + c_dim, width)
        self.blocks = nn.Sequential(
            *[ResidualBlock(width, expansion, activation, dropout, layer_norm) for _ in range(n_blocks)]
        )
        self.out = nn.Sequential(make_activation(activation), nn.Linear(width, x_dim))

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None = None,
                cond_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Predict the denoising target for ``x`` of shape ``(B, x_dim)``; returns ``(B, x_dim)``."""
        check_features(x, self.x_dim)
        t = check_time(t, x.shape[0])
        check_cond(cond, x.shape[0], self.cond_dim)
        c = encode_condition(self.cond_encoder, cond, cond_mask, "ResidualMLPDenoiser")
        h = torch.cat([x, self.time_mlp(t)] if c is None else [x, self.time_mlp(t), c], dim=-1)
        return self.out(self.blocks(self.in_proj(h)))


class ConcatMLP(nn.Module):
    """``f(x, t, cond) = MLP([cond, x, t])``: Flow Q-Learning's actor networks (Park et al. 2025, official
    ``ActorVectorField``): the BC flow's velocity field (``time_input=True``: the raw time in [0, 1] is one input
    feature) and the one-step policy ``mu(s, z)`` (``time_input=False``: ``x`` is the noise ``z``).

    Args:
        x_dim: size of ``x`` and of the output (the action).
        cond_dim: size of the condition (the observation).
        hidden: hidden widths (FQL: four layers of 512).
        activation: activation name (FQL: GELU).
        layer_norm: LayerNorm after each hidden layer (FQL's ``actor_layer_norm``, off by default).
        time_input: take ``t`` as an input feature.
    """

    def __init__(self, x_dim: int, cond_dim: int, hidden: Sequence[int] = (512, 512, 512, 512),
                 activation: str = "gelu", layer_norm: bool = False, *, time_input: bool = True) -> None:
        super().__init__()
        check_positive("x_dim", x_dim)
        self.x_dim, self.cond_dim, self.time_input = x_dim, cond_dim, time_input
        self.net = mlp(cond_dim + x_dim + int(time_input), x_dim, hidden, activation, layer_norm)

    def forward(self, x: torch.Tensor, t: torch.Tensor | None = None, cond: torch.Tensor | None = None
                ) -> torch.Tensor:
        """``x``: ``(B, x_dim)``, ``t``: ``(B,)`` (when ``time_input``), ``cond``: ``(B, cond_dim)`` -> ``(B, x_dim)``."""
        check_features(x, self.x_dim)
        check_cond(cond, x.shape[0], self.cond_dim)
        parts = [cond] if cond is not None else []
        parts.append(x)
        if self.time_input:
            if t is None:
                raise ValueError("t: this network takes the flow time as input, got None")
            parts.append(check_time(t, x.shape[0]).to(x.dtype)[:, None])
        return self.net(torch.cat(parts, dim=-1))  # type: ignore[no-any-return]
