"""Conditional flow matching (Lipman et al. 2023; Liu et al. 2023, rectified flow), weight-free.

The linear (optimal-transport) interpolant between noise ``x_0 ~ N(0, I)`` and data ``x_1``:

    x_t = (1 - t) x_0 + t x_1,    u_t(x_t | x_0, x_1) = x_1 - x_0,    t in [0, 1]

A network ``v(x_t, t, cond)`` regresses the conditional velocity (the CFM loss, Lipman et al. Eq. 9 /
Flow Q-Learning's BC flow loss, Park et al. 2025 Eq. 5); sampling integrates ``dx/dt = v(x, t)`` from ``t = 0``
(noise) to ``t = 1`` (data) with a fixed-step ODE solver (Euler, or Heun's second-order method, which costs two
network calls a step). Time is drawn uniformly or from a logit-normal (Esser et al. 2024, Sec. 3.1).

The network sees ``t * time_scale`` (1000 by default: the timestep range the package's sinusoidal time
embeddings were built for), so the diffusion denoisers of :mod:`diffagents.nn` serve as velocity networks.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

Velocity = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # v(x (B, ...), t (B,) in [0, 1]) -> (B, ...)
METHODS = ("euler", "heun")
TIME_SAMPLING = ("uniform", "logit_normal")


class FlowMatching:
    """The flow-matching process: interpolant, velocity target, time sampling and the ODE samplers.

    Args:
        time_sampling: ``"uniform"`` or ``"logit_normal"`` (``t = sigmoid(N(logit_mean, logit_std))``).
        logit_mean / logit_std: the logit-normal's parameters.
        time_scale: the network is called with ``t * time_scale``.
    """

    def __init__(self, time_sampling: str = "uniform", logit_mean: float = 0.0, logit_std: float = 1.0,
                 time_scale: float = 1000.0) -> None:
        if time_sampling not in TIME_SAMPLING:
            raise ValueError(f"time_sampling: expected one of {TIME_SAMPLING}, got {time_sampling!r}")
        if not logit_std > 0:
            raise ValueError(f"logit_std: expected > 0, got {logit_std}")
        if not time_scale > 0:
            raise ValueError(f"time_scale: expected > 0, got {time_scale}")
        self.time_sampling, self.logit_mean, self.logit_std = time_sampling, logit_mean, logit_std
        self.time_scale = time_scale

    def sample_time(self, batch: int, device: torch.device, generator: torch.Generator | None = None
                    ) -> torch.Tensor:
        """``(B,)`` training times in [0, 1]."""
        if self.time_sampling == "uniform":
            return torch.rand(batch, device=device, generator=generator)
        z = torch.randn(batch, device=device, generator=generator)
        return torch.sigmoid(self.logit_mean + self.logit_std * z)

    @staticmethod
    def interpolate(x0: torch.Tensor, x1: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """``x_t = (1 - t) x_0 + t x_1`` with ``t`` of shape ``(B,)`` broadcast over the event dims."""
        tt = t.view(-1, *([1] * (x1.ndim - 1)))
        return (1.0 - tt) * x0 + tt * x1

    def network_time(self, t: torch.Tensor) -> torch.Tensor:
        return t * self.time_scale

    def loss(self, net: Callable[..., torch.Tensor], x1: torch.Tensor, cond: torch.Tensor | None = None, *,
             generator: torch.Generator | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The CFM loss ``E || v(x_t, t, cond) - (x_1 - x_0) ||^2`` (mean over batch and dims)."""
        x0 = torch.randn(x1.shape, device=x1.device, dtype=x1.dtype, generator=generator)
        t = self.sample_time(x1.shape[0], x1.device, generator)
        xt = self.interpolate(x0, x1, t)
        pred = net(xt, self.network_time(t), cond) if cond is not None else net(xt, self.network_time(t))
        loss = (pred - (x1 - x0)).pow(2).mean()
        return loss, {"flow_loss": loss.detach()}

    def velocity_of(self, net: Callable[..., torch.Tensor], cond: torch.Tensor | None = None) -> Velocity:
        """The network as a velocity field of ``(x, t in [0, 1])``."""
        if cond is None:
            return lambda x, t: net(x, self.network_time(t))
        return lambda x, t: net(x, self.network_time(t), cond)

    @staticmethod
    def sample(velocity: Velocity, noise: torch.Tensor, steps: int, method: str = "euler",
               clip: float | None = None) -> torch.Tensor:
        """Integrate ``dx/dt = velocity(x, t)`` from ``noise`` at ``t = 0`` to ``t = 1`` in ``steps`` equal steps.

        ``method="euler"``: ``x <- x + h v(x, t)``; ``"heun"``: the explicit trapezoid (Heun) step
        ``x <- x + h/2 (v(x, t) + v(x + h v(x, t), t + h))``. ``clip`` bounds the result to ``[-clip, clip]``.
        No host synchronisation (CUDA-graph friendly).
        """
        if steps < 1:
            raise ValueError(f"steps: expected >= 1, got {steps}")
        if method not in METHODS:
            raise ValueError(f"method: expected one of {METHODS}, got {method!r}")
        x, b, h = noise, noise.shape[0], 1.0 / steps
        for i in range(steps):
            t = torch.full((b,), i * h, device=x.device, dtype=x.dtype)
            v = velocity(x, t)
            if method == "euler":
                x = x + h * v
            else:
                v2 = velocity(x + h * v, t + h)
                x = x + 0.5 * h * (v + v2)
        return x.clamp(-clip, clip) if clip is not None else x

    def to_dict(self) -> dict[str, Any]:
        return {"time_sampling": self.time_sampling, "logit_mean": self.logit_mean, "logit_std": self.logit_std,
                "time_scale": self.time_scale}
