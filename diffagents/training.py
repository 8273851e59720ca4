"""Training components shared by every agent: optimizer wrapper, EMA of weights, LR schedules, guards.

The agents' ``learn()`` loop (in :mod:`diffagents.core.offline`) composes these; no agent writes its own optimizer
or EMA code. Nothing here reads values back to the host except :func:`check_finite`, which callers run only at
logging intervals.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterable, Mapping
from contextlib import nullcontext
from typing import Any

import torch
from torch import nn

from diffagents.distributed import average_gradients


class NonFiniteError(FloatingPointError):
    """A loss or gradient became NaN/Inf; the message names the quantity and the step."""


def cosine_schedule(lr: float, min_lr: float = 0.0) -> Callable[[float], float]:
    """SB3-style schedule of ``progress_remaining`` (1 -> 0): cosine decay from ``lr`` to ``min_lr``.

    Diffusion-QL and IDQL use cosine annealing over the whole run (Wang et al. 2023, App. C).
    """

    def schedule(progress_remaining: float) -> float:
        return min_lr + 0.5 * (lr - min_lr) * (1.0 + math.cos(math.pi * (1.0 - progress_remaining)))

    return schedule


def make_lr_schedule(lr: float, kind: str) -> float | Callable[[float], float]:
    """``"constant"`` -> ``lr``; ``"cosine"`` -> :func:`cosine_schedule`."""
    if kind == "constant":
        return lr
    if kind == "cosine":
        return cosine_schedule(lr)
    raise ValueError(f"lr_schedule: expected 'constant' or 'cosine', got {kind!r}")


class Updater:
    """One optimizer with gradient clipping and optional bf16 autocast.

    Args:
        params: parameters to optimise.
        lr: learning rate (the agent's LR schedule updates ``optimizer.param_groups``).
        grad_clip: max global grad norm, or None.
        optimizer: ``"adam"`` or ``"adamw"``.
        weight_decay: weight decay (AdamW).
        betas: Adam betas.
        name: used in error messages (e.g. ``"critic"``).
    """

    def __init__(self, params: Iterable[nn.Parameter], lr: float, *, grad_clip: float | None = None,
                 optimizer: str = "adam", weight_decay: float = 0.0, betas: tuple[float, float] = (0.9, 0.999),
                 name: str = "model") -> None:
        self.params = [p for p in params if p.requires_grad]
        if not self.params:
            raise ValueError(f"{name}: no trainable parameters")
        if optimizer == "adam":
            self.optimizer: torch.optim.Optimizer = torch.optim.Adam(
                self.params, lr=lr, betas=betas, weight_decay=weight_decay)
        elif optimizer == "adamw":
            self.optimizer = torch.optim.AdamW(self.params, lr=lr, betas=betas, weight_decay=weight_decay)
        else:
            raise ValueError(f"optimizer: expected 'adam' or 'adamw', got {optimizer!r}")
        self.grad_clip = grad_clip
        self.name = name

    def step(self, loss: torch.Tensor) -> torch.Tensor | None:
        """zero_grad -> backward -> clip -> step. Returns the pre-clip grad norm (a tensor) when clipping."""
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        average_gradients(self.params)  # no-op unless running under torchrun with WORLD_SIZE > 1
        norm = None
        if self.grad_clip is not None:
            norm = nn.utils.clip_grad_norm_(self.params, self.grad_clip)
        self.optimizer.step()
        return norm

    def state_dict(self) -> dict[str, Any]:
        return self.optimizer.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(state)


class EMA:
    """Exponential moving average of a module's weights (Polyak averaging).

    Two decay rules: a constant ``decay`` (Diffuser 0.995, Diffusion-QL 0.995), or the warm-up power schedule of
    diffusers' ``EMAModel`` used by Diffusion Policy (Chi et al. 2023): ``decay_k = 1 - (1 + k) ** -power``
    clipped to ``[min_decay, max_decay]`` (power 0.75, max 0.9999). Updates start after ``start_step`` and happen
    every ``update_every`` calls; before ``start_step`` the EMA copies the weights (Diffusion-QL's ``step_start_ema``).

    Args:
        model: the module to average; a frozen deep copy is kept in ``self.model``.
    """

    def __init__(self, model: nn.Module, *, decay: float = 0.995, power: float | None = None,
                 min_decay: float = 0.0, max_decay: float = 0.9999, start_step: int = 0,
                 update_every: int = 1) -> None:
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"decay: expected a value in [0, 1), got {decay}")
        self.model = copy.deepcopy(model).requires_grad_(False).eval()
        self.decay = decay
        self.power = power
        self.min_decay = min_decay
        self.max_decay = max_decay
        self.start_step = start_step
        self.update_every = max(1, update_every)
        self.num_updates = 0

    def current_decay(self) -> float:
        if self.power is None:
            return self.decay
        d = 1.0 - (1.0 + self.num_updates) ** -self.power
        return max(self.min_decay, min(d, self.max_decay))

    @torch.no_grad()
    def update(self, model: nn.Module, step: int) -> None:
        """Average ``model`` into the EMA copy at training step ``step``."""
        if step % self.update_every:
            return
        src = [p.detach() for p in model.parameters()]
        dst: list[torch.Tensor] = list(self.model.parameters())
        if step < self.start_step:
            torch._foreach_copy_(dst, src)
        else:
            torch._foreach_lerp_(dst, src, 1.0 - self.current_decay())
            self.num_updates += 1
        for b_dst, b_src in zip(self.model.buffers(), model.buffers()):
            b_dst.copy_(b_src)

    def state_dict(self) -> dict[str, Any]:
        return {"model": self.model.state_dict(), "num_updates": self.num_updates}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.num_updates = int(state.get("num_updates", 0))


@torch.no_grad()
def soft_update(target: nn.Module, source: nn.Module, tau: float) -> None:
    """``target <- (1 - tau) target + tau source`` (target networks, Lillicrap et al. 2016)."""
    dst: list[torch.Tensor] = list(target.parameters())
    torch._foreach_lerp_(dst, [p.detach() for p in source.parameters()], tau)


def check_finite(stats: Mapping[str, torch.Tensor | float], step: int) -> dict[str, float]:
    """Convert logged statistics to floats and raise :class:`NonFiniteError` on NaN/Inf.

    Called at logging intervals only (it synchronises with the device).
    """
    out: dict[str, float] = {}
    for key, value in stats.items():
        v = float(value.detach().float().mean()) if isinstance(value, torch.Tensor) else float(value)
        if not math.isfinite(v):
            raise NonFiniteError(
                f"non-finite training value '{key}' = {v} at gradient step {step}; lower the learning rate, enable "
                "grad_clip, or check the dataset for NaN/Inf (diffagents.data validates it on load)"
            )
        out[key] = v
    return out


def autocast(device: torch.device, precision: str) -> Any:
    """Autocast context for ``precision`` in {"fp32", "bf16"} (bf16 autocast on CUDA and CPU)."""
    if precision == "fp32":
        return nullcontext()
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    raise ValueError(f"precision: expected 'fp32' or 'bf16', got {precision!r}")


def maybe_compile(module: nn.Module, enabled: bool) -> Any:
    """``torch.compile(module)`` when enabled (returns the module otherwise)."""
    return torch.compile(module) if enabled else module
