"""Classifier-free guidance (Ho & Salimans 2022, Eq. 6; survey Sec. 3.3).

``eps~ = eps(x, t, null) + w (eps(x, t, c) - eps(x, t, null))``. Decision Diffuser uses w = 1.2 on normalised
returns. Both branches run as one batched forward pass of size 2B.
"""

from __future__ import annotations

from typing import Protocol

import torch


class ConditionalDenoiser(Protocol):
    def __call__(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None,
                 cond_mask: torch.Tensor | None = None) -> torch.Tensor: ...


class ClassifierFreeGuidance:
    """Wrap a conditional denoiser into a guided one with weight ``w``.

    The wrapped network must accept ``cond_mask`` (bool ``(B,)``, False = use the learned null condition), as
    :class:`diffagents.nn.ConditionEncoder` does.

    Args:
        model: the conditional denoiser.
        weight: guidance weight ``w``; 1 is the plain conditional model, 0 the unconditional one.
    """

    def __init__(self, model: ConditionalDenoiser, weight: float = 1.2) -> None:
        self.model = model
        self.weight = float(weight)

    def __call__(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
        if cond is None:
            raise ValueError("cond: classifier-free guidance needs a condition, got None")
        b = x.shape[0]
        keep = torch.ones(2 * b, dtype=torch.bool, device=x.device)
        keep[b:] = False
        out = self.model(torch.cat([x, x]), torch.cat([t, t]), torch.cat([cond, cond]), keep)
        cond_out, uncond_out = out[:b], out[b:]
        return torch.lerp(uncond_out, cond_out, self.weight)
