"""DPM-Solver++ multistep sampler (Lu et al. 2022, "DPM-Solver++: Fast Solver for Guided Sampling of
Diffusion Probabilistic Models", Alg. 2), in data-prediction form over the discrete levels of a schedule."""

from __future__ import annotations

import math
from typing import Literal

import torch

from diffagents.diffusion.discrete import DiscreteSampler
from diffagents.diffusion.schedules import NoiseSchedule


def _offset(order: int) -> int:
    """Index of the first order-``order`` weight in a step's scalar tuple ``(ratio, k, w1..., w2..., w3...)``."""
    return 2 + order * (order - 1) // 2


class DPMSolverPPSampler(DiscreteSampler):
    """DPM-Solver++ multistep in data-prediction form (Lu et al. 2022, "DPM-Solver++", Alg. 2).

    With ``lambda = log(alpha / sigma)`` and ``h = lambda_s - lambda_t`` the first-order update is
    ``x_s = (sigma_s / sigma_t) x_t - alpha_s (e^{-h} - 1) D0`` (equal to DDIM), and the second / third order
    corrections use finite differences of previous x0 predictions (2M: Alg. 2; 3M: the multistep third-order
    update of diffusers' ``multistep_dpm_solver_third_order_update``). All corrections are linear in the x0
    history, so each update is precomputed as ``x_s = ratio * x + w0 D0 + w1 D1 + w2 D2`` over the last three
    x0 predictions ``D0, D1, D2``.

    Order schedule (as diffusers' ``DPMSolverMultistepScheduler`` with ``lower_order_final`` and
    ``final_sigmas_type="zero"``): the order is capped by the available history (warm-up, also after a warm
    start at ``start_index > 0``); the step *into* level 0 is first order, because level 0 (sigma ~ 0.01) plays
    the role of diffusers' final step to sigma = 0 and on evenly spaced levels it spans a lambda interval several
    times longer than the previous one, where finite differences would be extrapolated far; with fewer than 15
    steps the step before it is at most second order. The very last step (from level 0 to clean data) returns
    the x0 prediction.

    Args:
        order: 1, 2 ("2M") or 3 ("3M").
    """

    def __init__(self, schedule: NoiseSchedule, num_inference_steps: int | None = None, *, order: Literal[1, 2, 3] = 2,
                 prediction_type: str = "eps", clip_sample: float | None = None, spacing: str = "linspace") -> None:
        if order not in (1, 2, 3):
            raise ValueError(f"order: expected 1, 2 or 3, got {order}")
        self.order = order
        # x0 history, newest last, stored as y with x0 = k * y (saves a kernel per step, see ``_precompute``)
        self._history: list[torch.Tensor] = []
        super().__init__(schedule, num_inference_steps, prediction_type=prediction_type, clip_sample=clip_sample,
                         spacing=spacing)

    def _weights(self, i: int, order: int, lam: list[float], lam_s: float, alpha_s: float
                 ) -> tuple[float, ...]:
        """Weights of ``D0, D1, ...`` in the order-``order`` update from ``timesteps[i]``."""
        h = lam_s - lam[i]
        phi = math.expm1(-h)  # e^{-h} - 1
        c0 = -alpha_s * phi
        if order == 1:
            return (c0,)
        r0 = (lam[i] - lam[i - 1]) / h
        if order == 2:  # D = D0 + (D0 - D1) / (2 r0)  (DPM-Solver++(2M), Alg. 2)
            c1 = -0.5 * alpha_s * phi / r0
            return (c0 + c1, -c1)
        r1 = (lam[i - 1] - lam[i - 2]) / h
        cd1 = alpha_s * (phi / h + 1.0)
        cd2 = -alpha_s * ((phi + h) / h**2 - 0.5)
        q = r0 / (r0 + r1)
        # D1_0 = (D0 - D1) / r0, D1_1 = (D1 - D2) / r1, g = D1_0 - D1_1,
        # x_s = ratio x + c0 D0 + cd1 (D1_0 + q g) + cd2 g / (r0 + r1), expanded over D0, D1, D2
        g0, g1, g2 = 1 / r0, -(1 / r0 + 1 / r1), 1 / r1
        return (c0 + cd1 * (1 / r0 + q * g0) + cd2 * g0 / (r0 + r1),
                cd1 * (-1 / r0 + q * g1) + cd2 * g1 / (r0 + r1),
                cd1 * q * g2 + cd2 * g2 / (r0 + r1))

    def _precompute(self, ab: list[float], ab_prev: list[float]) -> None:
        lam = [0.5 * math.log(a / (1 - a)) for a in ab]
        n = len(ab)
        # x0_i = k_i * y_i with y_i = x + beta_i * out (eps / v outputs), y_i = out (x0 outputs) or the
        # clipped x0 (clip_sample, k_i = 1): one kernel (or none) instead of two for the x0 estimate
        self._beta: list[float | None] = []
        self._k: list[float] = []
        for rx, ro in self._x0_lin:
            clip_or_x0 = self.clip_sample is not None or rx == 0.0
            self._beta.append(None if clip_or_x0 else ro / rx)
            self._k.append((1.0 if self.clip_sample is not None else ro) if clip_or_x0 else rx)
        self._orders: list[int] = []
        for i in range(n):
            ap = ab_prev[i]
            if ap >= 1.0:  # last step: sigma_s = 0, the update is x0
                self._orders.append(0)
                self._scalar_values.append((0.0, self._k[i]))
                continue
            order = min(self.order, i + 1)
            if i == n - 2:  # the step into level 0 (final_sigmas_type="zero")
                order = 1
            elif i == n - 3 and n < 15:  # lower_order_final
                order = min(order, 2)
            lam_s, alpha_s = 0.5 * math.log(ap / (1 - ap)), math.sqrt(ap)
            values = [math.sqrt(1 - ap) / math.sqrt(1 - ab[i]), self._k[i]]
            for o in range(1, order + 1):  # every order up to the planned one (fallback after a warm start)
                values += [w * self._k[i - j] for j, w in enumerate(self._weights(i, o, lam, lam_s, alpha_s))]
            self._orders.append(order)
            self._scalar_values.append(tuple(values))

    def reset(self) -> None:
        self._history = []

    def _update(self, model_output: torch.Tensor, i: int, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Push the x0 estimate to the history; return ``(x_prev, y)`` with ``x0_hat = self._k[i] * y``."""
        beta = self._beta[i]
        if beta is not None:
            y = torch.add(x, model_output, alpha=beta)
        elif self.clip_sample is not None:
            y = self._x0_eps(model_output, i, x)[0]
        else:
            y = model_output
        if i == 0:
            self._history = []
        hist = self._history
        hist.append(y)
        if len(hist) > 3:
            del hist[0]
        order = min(self._orders[i], len(hist))
        sc = self.scalars(x)
        if sc is None:  # half types: Python-float coefficients
            c = self._scalar_values[i]
            if order == 0:  # the last step: x_prev = x0
                return (y if c[1] == 1.0 else y * c[1]), y
            first = _offset(order)
            out = torch.add(x * c[0], y, alpha=c[first])
            for j in range(1, order):
                out = out.add_(hist[-1 - j], alpha=c[first + j])
            return out, y
        ct = sc[i]
        if order == 0:
            return (y if self._k[i] == 1.0 else y.mul(ct[1])), y
        first = _offset(order)
        out = x.mul(ct[0]).addcmul_(y, ct[first])
        for j in range(1, order):
            out = out.addcmul_(hist[-1 - j], ct[first + j])
        return out, y

    def advance(self, model_output, i, x, generator=None, temperature=1.0):  # type: ignore[no-untyped-def]
        return self._update(model_output, i, x)[0]

    def step(self, model_output, i, x, generator=None, temperature=1.0):  # type: ignore[no-untyped-def]
        out, y = self._update(model_output, i, x)
        if self._k[i] == 1.0:
            return out, y
        sc = self.scalars(x)
        return out, (y * self._k[i] if sc is None else y.mul(sc[i][1]))
