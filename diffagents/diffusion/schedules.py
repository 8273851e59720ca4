"""Noise schedules for discrete-time Gaussian diffusion.

A schedule is the sequence ``beta_1..beta_T`` of Ho et al. (2020), Eq. (1) of the survey, from which
``alpha_bar_t = prod_{i<=t} (1 - beta_i)`` (survey Eq. 2) follows. Everything a sampler or a training loss
needs is derived from ``alphas_cumprod``; the schedule stores it once in float64 on the CPU so samplers can
turn it into plain Python floats (no device syncs in sampling loops).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch

ScheduleName = Literal["linear", "cosine", "vp"]


def linear_betas(num_steps: int, beta_start: float = 1e-4, beta_end: float = 2e-2) -> np.ndarray:
    """DDPM linear schedule (Ho et al. 2020, Sec. 4), rescaled so that T != 1000 keeps the same endpoints."""
    scale = 1000.0 / num_steps
    return np.linspace(beta_start * scale, min(beta_end * scale, 0.999), num_steps, dtype=np.float64)


def cosine_betas(num_steps: int, s: float = 0.008, max_beta: float = 0.999) -> np.ndarray:
    """Cosine schedule of Nichol & Dhariwal (2021), Eq. (17); used by Diffuser and Diffusion Policy."""
    steps = np.arange(num_steps + 1, dtype=np.float64)
    f = np.cos(((steps / num_steps) + s) / (1 + s) * math.pi / 2) ** 2
    alpha_bar = f / f[0]
    betas = 1.0 - alpha_bar[1:] / alpha_bar[:-1]
    return np.clip(betas, 0.0, max_beta)


def vp_betas(num_steps: int, beta_min: float = 0.1, beta_max: float = 10.0) -> np.ndarray:
    """Variance-preserving SDE discretisation (Song et al. 2021; Xiao et al. 2021) used by Diffusion-QL / IDQL.

    ``beta_t = 1 - exp(-beta_min/T - (beta_max - beta_min)(2t - 1) / (2 T^2))`` for t = 1..T, which keeps
    alpha_bar_T small even for T = 5 (Wang et al. 2023, App. C).
    """
    t = np.arange(1, num_steps + 1, dtype=np.float64)
    T = float(num_steps)
    alpha = np.exp(-beta_min / T - 0.5 * (beta_max - beta_min) * (2 * t - 1) / T**2)
    return 1.0 - alpha


@dataclass(frozen=True, kw_only=True)
class NoiseSchedule:
    """A discrete noise schedule with ``num_train_steps`` levels.

    Args:
        num_train_steps: number of training noise levels T (Diffusion-QL uses 5, Diffuser 20-256).
        kind: ``"linear"``, ``"cosine"`` or ``"vp"``.
    """

    num_train_steps: int
    kind: ScheduleName = "cosine"
    betas: np.ndarray = field(init=False, repr=False, compare=False)
    alphas_cumprod: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.num_train_steps, int) or self.num_train_steps < 1:
            raise ValueError(f"num_train_steps: expected an int >= 1, got {self.num_train_steps!r}")
        makers = {"linear": linear_betas, "cosine": cosine_betas, "vp": vp_betas}
        if self.kind not in makers:
            raise ValueError(f"kind: expected one of {sorted(makers)}, got {self.kind!r}")
        betas = makers[self.kind](self.num_train_steps)
        object.__setattr__(self, "betas", betas)
        object.__setattr__(self, "alphas_cumprod", np.cumprod(1.0 - betas))

    def alpha_bar(self, t: int) -> float:
        """alpha_bar at integer level ``t`` in ``[-1, T-1]``; ``t = -1`` is clean data (alpha_bar = 1)."""
        return 1.0 if t < 0 else float(self.alphas_cumprod[t])

    def tensors(self, device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
        """sqrt(alpha_bar) and sqrt(1 - alpha_bar) as float32 tensors, indexed by training level (for losses)."""
        ab = torch.as_tensor(self.alphas_cumprod, dtype=torch.float64)
        return {
            "sqrt_ab": ab.sqrt().float().to(device),
            "sqrt_1mab": (1 - ab).sqrt().float().to(device),
        }

    def to_dict(self) -> dict[str, object]:
        return {"num_train_steps": self.num_train_steps, "kind": self.kind}
