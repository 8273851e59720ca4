"""Inpainting: hold some entries of the sample at known values during sampling.

Diffuser (Janner et al. 2022, Sec. 3.3) conditions a plan on the current state (and, in Maze2D, on the goal) by
overwriting those entries after every denoising step, which makes them exactly equal to their values.
"""

from __future__ import annotations

import torch

from diffagents.diffusion.loop import Sampler


class Inpaint:
    """Fix the entries where ``mask`` is True to ``values`` before and after each step.

    Args:
        mask: bool tensor broadcastable to the sample shape, True where the entry is fixed.
        values: tensor broadcastable to the sample shape with the fixed values (only masked entries are used).
    """

    def __init__(self, mask: torch.Tensor, values: torch.Tensor) -> None:
        if mask.dtype != torch.bool:
            raise TypeError(f"mask: expected a bool tensor, got dtype {mask.dtype}")
        self.mask = mask
        self.values = values

    @classmethod
    def at(cls, shape: tuple[int, ...], index: tuple[slice | int, ...], values: torch.Tensor,
           device: torch.device | str = "cpu") -> Inpaint:
        """Build from an index, e.g. ``Inpaint.at((B, H, D), (slice(None), 0, slice(0, obs_dim)), state)``."""
        mask = torch.zeros(shape, dtype=torch.bool, device=device)
        mask[index] = True
        full = torch.zeros(shape, dtype=values.dtype, device=device)
        full[index] = values
        return cls(mask, full)

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        return torch.where(self.mask, self.values.to(x.dtype), x)

    def before_denoise(self, x: torch.Tensor, i: int, t: torch.Tensor, sampler: Sampler) -> torch.Tensor:
        return self.apply(x)

    def after_step(self, x: torch.Tensor, i: int, sampler: Sampler) -> torch.Tensor:
        return self.apply(x)
