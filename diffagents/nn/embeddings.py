"""Time and condition embeddings, and the activation factory every backbone uses.

* :class:`SinusoidalEmbedding`: the transformer positional encoding (Vaswani et al. 2017, Sec. 3.5) applied to
  the diffusion level, as in DDPM (Ho et al. 2020, App. B), Diffuser and Diffusion-QL.
* :class:`FourierFeatures`: random Fourier features of the noise level (Tancik et al. 2020), as in EDM's
  ``FourierEmbedding`` (Karras et al. 2022) and SynthER's residual MLP denoiser (Lu et al. 2023).
* :class:`ConditionEncoder`: an MLP embedding of a global condition with classifier-free-guidance dropout to a
  learned null embedding (Ho & Salimans 2022, Sec. 3.2; Decision Diffuser, Ajay et al. 2023, Sec. 3.1).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from diffagents.nn._checks import check_positive, check_probability, no_null_error

_ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU,
    "silu": nn.SiLU,
    "mish": nn.Mish,
    "gelu": nn.GELU,
    "tanh": nn.Tanh,
}


def make_activation(name: str) -> nn.Module:
    """A fresh activation module by name.

    Args:
        name: one of ``"relu"``, ``"silu"``, ``"mish"``, ``"gelu"``, ``"tanh"``.

    Raises:
        ValueError: for an unknown name.
    """
    factory = _ACTIVATIONS.get(name)
    if factory is None:
        raise ValueError(f"activation: expected one of {sorted(_ACTIVATIONS)}, got {name!r}")
    return factory()


def _check_even(name: str, value: int, minimum: int) -> None:
    check_positive(name, value)
    if value % 2 or value < minimum:
        raise ValueError(f"{name}: expected an even integer >= {minimum}, got {value}")


class SinusoidalEmbedding(nn.Module):
    """Sinusoidal embedding of a (possibly fractional) diffusion level (Vaswani et al. 2017, Sec. 3.5).

    ``emb(t) = [sin(t w_0), ..., sin(t w_{k-1}), cos(t w_0), ..., cos(t w_{k-1})]`` with ``k = dim / 2`` and
    ``w_i = 10000^(-i / (k - 1))``, exactly the ``SinusoidalPosEmb`` of Diffuser and Diffusion-QL. The cosines
    are computed as ``sin(x + pi/2)`` so the forward pass is two kernels (``addcmul`` and ``sin``).

    Args:
        dim: embedding size (even, >= 4).
        max_period: the longest period, 10000 in all the reference code.
    """

    freqs: torch.Tensor
    phase: torch.Tensor

    def __init__(self, dim: int, max_period: float = 10000.0) -> None:
        super().__init__()
        _check_even("dim", dim, 4)
        half = dim // 2
        w = torch.exp(torch.arange(half, dtype=torch.float32) * (-math.log(max_period) / (half - 1)))
        self.dim = dim
        self.register_buffer("freqs", torch.cat([w, w]))  # (dim,)
        self.register_buffer("phase", torch.cat([torch.zeros(half), torch.full((half,), math.pi / 2)]))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        """Embed ``t`` of shape ``(B,)`` into ``(B, dim)``."""
        return torch.sin(torch.addcmul(self.phase, t[:, None].to(self.freqs.dtype), self.freqs))

    def extra_repr(self) -> str:
        return f"dim={self.dim}"


class FourierFeatures(nn.Module):
    """Random Fourier features ``[cos(2 pi t w), sin(2 pi t w)]`` with fixed ``w ~ N(0, scale^2)``.

    Follows EDM's ``FourierEmbedding`` (Karras et al. 2022, App. B.1, scale 16) and SynthER's random Fourier
    time features. The frequencies are a persistent buffer, so they are saved with the weights. The features
    suit a continuous input of order one (EDM feeds ``c_noise = ln(sigma) / 4``) or a handful of integer
    levels (IDQL's ``T = 5``); for up to a thousand integer levels prefer :class:`SinusoidalEmbedding`.

    Args:
        dim: embedding size (even, >= 2).
        scale: standard deviation of the random frequencies.
    """

    freqs: torch.Tensor
    phase: torch.Tensor

    def __init__(self, dim: int, scale: float = 16.0) -> None:
        super().__init__()
        _check_even("dim", dim, 2)
        if not scale > 0:
            raise ValueError(f"scale: expected > 0, got {scale!r}")
        half = dim // 2
        w = torch.randn(half) * (2 * math.pi * scale)
        self.dim = dim
        self.scale = float(scale)
        self.register_buffer("freqs", torch.cat([w, w]))  # (dim,)
        self.register_buffer("phase", torch.cat([torch.full((half,), math.pi / 2), torch.zeros(half)]))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        """Embed ``t`` of shape ``(B,)`` into ``(B, dim)``."""
        return torch.sin(torch.addcmul(self.phase, t[:, None].to(self.freqs.dtype), self.freqs))

    def extra_repr(self) -> str:
        return f"dim={self.dim}, scale={self.scale}"


def time_embedding(kind: str, dim: int, out_dim: int, hidden: int, activation: str,
                   fourier_scale: float = 16.0) -> nn.Sequential:
    """``embed(t) -> Linear(dim, hidden) -> act -> Linear(hidden, out_dim)``, the time MLP of every backbone.

    Args:
        kind: ``"sinusoidal"`` (:class:`SinusoidalEmbedding`) or ``"fourier"`` (:class:`FourierFeatures`).
        dim: size of the raw embedding.
        out_dim: size of the returned embedding.
        hidden: width of the hidden layer.
        activation: activation name for :func:`make_activation`.
        fourier_scale: frequency scale of :class:`FourierFeatures` (ignored for ``"sinusoidal"``).
    """
    base: nn.Module
    if kind == "sinusoidal":
        base = SinusoidalEmbedding(dim)
    elif kind == "fourier":
        base = FourierFeatures(dim, fourier_scale)
    else:
        raise ValueError(f"time_embedding: expected 'sinusoidal' or 'fourier', got {kind!r}")
    return nn.Sequential(base, nn.Linear(dim, hidden), make_activation(activation), nn.Linear(hidden, out_dim))


class ConditionEncoder(nn.Module):
    """MLP embedding of a condition vector with classifier-free-guidance dropout (Ho & Salimans 2022, Alg. 1).

    ``Linear(cond_dim, hidden) -> act -> Linear(hidden, out_dim)``. When built with ``dropout_prob > 0`` or
    ``cfg=True`` it owns a learned null embedding (an ``nn.Parameter`` of shape ``(out_dim,)``), which replaces
    the embedding of

    * each sample with probability ``dropout_prob`` in training mode (Decision Diffuser drops the return
      condition with p = 0.25; the draw uses ``torch.rand`` on ``cond``'s device, no host sync), and
    * every sample whose ``cond_mask`` entry is False, in any mode (the unconditional branch of
      :class:`diffagents.guidance.ClassifierFreeGuidance`).

    Without a null embedding, passing a ``cond_mask`` raises ``ValueError``.

    Args:
        cond_dim: size of the condition vector.
        out_dim: size of the embedding.
        hidden: hidden width; default ``4 * out_dim`` as in Decision Diffuser's returns MLP.
        dropout_prob: probability of replacing a sample's condition by the null embedding in training.
        activation: activation name for :func:`make_activation` (Decision Diffuser uses Mish).
        cfg: create the null embedding even with ``dropout_prob = 0`` (e.g. to fine-tune it later).
    """

    null_embedding: nn.Parameter | None

    def __init__(self, cond_dim: int, out_dim: int, hidden: int | None = None, dropout_prob: float = 0.0, *,
                 activation: str = "mish", cfg: bool = False) -> None:
        super().__init__()
        check_positive("cond_dim", cond_dim)
        check_positive("out_dim", out_dim)
        hidden = 4 * out_dim if hidden is None else hidden
        check_positive("hidden", hidden)
        check_probability("dropout_prob", dropout_prob)
        self.cond_dim = cond_dim
        self.out_dim = out_dim
        self.dropout_prob = float(dropout_prob)
        self.net = nn.Sequential(nn.Linear(cond_dim, hidden), make_activation(activation), nn.Linear(hidden, out_dim))
        if self.dropout_prob > 0 or cfg:
            self.null_embedding = nn.Parameter(torch.randn(out_dim) * 0.02)
        else:
            self.register_parameter("null_embedding", None)

    @property
    def has_null(self) -> bool:
        """Whether the encoder owns a learned null embedding (so it accepts ``cond_mask``)."""
        return self.null_embedding is not None

    def forward(self, cond: torch.Tensor, cond_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Embed ``cond`` of shape ``(B, cond_dim)`` into ``(B, out_dim)``.

        Args:
            cond: the condition.
            cond_mask: optional bool ``(B,)``; False selects the null embedding for that sample.
        """
        emb = self.net(cond)  # (B, out_dim)
        null = self.null_embedding
        if null is None:
            if cond_mask is not None:
                raise no_null_error("ConditionEncoder")
            return emb
        keep = cond_mask
        if keep is not None and (keep.dtype != torch.bool or keep.shape != emb.shape[:1]):
            raise ValueError(
                f"cond_mask: expected a bool tensor of shape ({emb.shape[0]},), got {keep.dtype} of shape "
                f"{tuple(keep.shape)}"
            )
        if self.training and self.dropout_prob > 0:
            drawn = torch.rand(emb.shape[0], device=emb.device) >= self.dropout_prob  # (B,) True = keep
            keep = drawn if keep is None else keep & drawn
        if keep is None:
            return emb
        return torch.where(keep[:, None], emb, null.to(emb.dtype))  # (B, out_dim)

    def extra_repr(self) -> str:
        return f"dropout_prob={self.dropout_prob}, null={self.has_null}"


def encode_condition(encoder: ConditionEncoder | None, cond: torch.Tensor | None,
                     cond_mask: torch.Tensor | None, owner: str) -> torch.Tensor | None:
    """Pass ``cond`` through ``encoder`` (or return it raw when there is none), validating ``cond_mask``.

    Args:
        encoder: the model's condition encoder, or ``None`` for a raw (or absent) condition.
        cond: the already shape-checked condition.
        cond_mask: optional bool ``(B,)``; only valid when ``encoder`` has a null embedding.
        owner: the model's class name, for the error message.
    """
    if cond_mask is not None and (encoder is None or encoder.null_embedding is None):
        raise no_null_error(owner)
    if encoder is None or cond is None:
        return cond
    return encoder(cond, cond_mask)
