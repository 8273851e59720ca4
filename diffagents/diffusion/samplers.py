"""Samplers for discrete-time Gaussian diffusion, following the diffusers calling pattern.

A sampler holds no weights. ``set_timesteps(n)`` picks ``n`` of the ``T`` training levels (a descending subset,
always ending at level 0) and precomputes every coefficient as a Python float, so ``step`` launches only a few
fused element-wise kernels and never reads a value back from the device (no host sync on CUDA, CUDA-graph
friendly). ``step(model_output, i, x)`` maps ``x`` at ``timesteps[i]`` to the next level and returns
``(x_prev, x0_hat)``; ``advance(model_output, i, x)`` returns only ``x_prev`` and is what :func:`sample_loop`
calls on every step but the last. Without ``clip_sample`` every update is written directly as a linear
combination of ``x`` and the network output (plus noise / history terms), so a step of DDIM costs two kernels,
DDPM three and DPM-Solver++ 2M four, which keeps the sampler's overhead small next to a batch-1 MLP forward.

Implemented:

* :class:`DDPMSampler`: ancestral sampling with the posterior q(x_{t-1} | x_t, x_0) (Ho et al. 2020, Eq. 7),
  generalised to strided timesteps.
* :class:`DDIMSampler`: Song et al. 2021 (DDIM), Eq. (12), with ``eta`` interpolating DDIM (0) and DDPM (1).
* :class:`DPMSolverPPSampler`: DPM-Solver++ (Lu et al. 2022), multistep data-prediction solver of order
  1, 2 (2M, Eq. 7 / Alg. 2) or 3 (3M), with lower-order warm-up and final steps.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import torch

from diffagents.diffusion.process import check_prediction_type, split_prediction
from diffagents.diffusion.schedules import NoiseSchedule


def select_timesteps(
    num_train_steps: int, num_inference_steps: int, spacing: str = "linspace",
    alphas_cumprod: np.ndarray | None = None,
) -> list[int]:
    """``n`` distinct descending levels from ``T-1`` down to ``0`` (both included).

    Args:
        spacing: ``"linspace"`` (evenly spaced levels, the diffusers default) or ``"logsnr"`` (levels nearest to
            an even grid of ``lambda = log(alpha / sigma)``, as recommended for DPM-Solver, Lu et al. 2022 Sec. 5);
            ``"logsnr"`` needs ``alphas_cumprod``.
    """
    if isinstance(num_inference_steps, bool) or not isinstance(num_inference_steps, (int, np.integer)) \
            or not 1 <= num_inference_steps <= num_train_steps:
        raise ValueError(
            f"num_inference_steps: expected an int in 1..{num_train_steps} (the training steps), "
            f"got {num_inference_steps!r}"
        )
    if spacing not in ("linspace", "logsnr") or (spacing == "logsnr" and alphas_cumprod is None):
        raise ValueError(f"spacing: expected 'linspace' or 'logsnr' (with alphas_cumprod), got {spacing!r}")
    if num_inference_steps == 1:
        return [num_train_steps - 1]
    grid = np.round(np.linspace(num_train_steps - 1, 0, num_inference_steps)).astype(np.int64)
    if spacing == "linspace":
        return [int(t) for t in grid]
    assert alphas_cumprod is not None
    lam = 0.5 * np.log(alphas_cumprod / (1.0 - alphas_cumprod))
    targets = np.linspace(lam[-1], lam[0], num_inference_steps)
    chosen = {int(np.argmin(np.abs(lam - v))) for v in targets} | {0, num_train_steps - 1}
    for t in grid:  # top up with evenly spaced levels when two targets map to the same level
        if len(chosen) >= num_inference_steps:
            break
        chosen.add(int(t))
    for t in range(num_train_steps):
        if len(chosen) >= num_inference_steps:
            break
        chosen.add(t)
    return sorted(chosen, reverse=True)[:num_inference_steps - 1] + [0]


class DiscreteSampler:
    """Shared set-up for samplers over the levels of a :class:`NoiseSchedule`.

    Args:
        schedule: the training noise schedule.
        num_inference_steps: how many levels to visit (defaults to all training levels).
        prediction_type: what the denoiser predicts (``"eps"``, ``"x0"`` or ``"v"``).
        clip_sample: if set, clip the x0 estimate to ``[-clip_sample, clip_sample]`` at every step.
        spacing: how levels are chosen, ``"linspace"`` or ``"logsnr"`` (see :func:`select_timesteps`).
    """

    init_noise_sigma: float = 1.0

    def __init__(
        self,
        schedule: NoiseSchedule,
        num_inference_steps: int | None = None,
        *,
        prediction_type: str = "eps",
        clip_sample: float | None = None,
        spacing: str = "linspace",
    ) -> None:
        check_prediction_type(prediction_type)
        self.spacing = spacing
        if clip_sample is not None and clip_sample <= 0:
            raise ValueError(f"clip_sample: expected a positive float or None, got {clip_sample}")
        self.schedule = schedule
        self.prediction_type = prediction_type
        self.clip_sample = clip_sample
        self.timesteps: list[int] = []
        self.set_timesteps(schedule.num_train_steps if num_inference_steps is None else num_inference_steps)

    @property
    def num_inference_steps(self) -> int:
        return len(self.timesteps)

    def set_timesteps(self, num_inference_steps: int) -> None:
        self.timesteps = select_timesteps(
            self.schedule.num_train_steps, num_inference_steps, self.spacing, self.schedule.alphas_cumprod
        )
        self._level_cache: dict[tuple[object, ...], list[torch.Tensor]] = {}
        ab = [self.schedule.alpha_bar(t) for t in self.timesteps]
        ab_prev = [self.schedule.alpha_bar(t) for t in self.timesteps[1:]] + [1.0]
        self._sqrt_ab = [math.sqrt(a) for a in ab]
        self._sqrt_1mab = [math.sqrt(1.0 - a) for a in ab]
        # x0_hat = rx * x + ro * out and eps_hat = ex * x + eo * out for the raw network output ``out``
        self._x0_lin = [_x0_coefs(a, s, self.prediction_type) for a, s in zip(self._sqrt_ab, self._sqrt_1mab)]
        self._eps_lin = [_eps_coefs(a, s, self.prediction_type) for a, s in zip(self._sqrt_ab, self._sqrt_1mab)]
        self._precompute(ab, ab_prev)

    def _precompute(self, ab: list[float], ab_prev: list[float]) -> None:
        raise NotImplementedError  # each subclass fills its own coefficient lists

    def posterior_variance(self, i: int) -> float:
        """Variance of q(x_s | x_t, x_0) for the step from ``timesteps[i]`` (Ho et al. 2020, Eq. 7).

        Diffuser scales value gradients by it (``scale_grad_by_std``).
        """
        a = self._sqrt_ab[i] ** 2
        ap = self.schedule.alpha_bar(self.timesteps[i + 1]) if i + 1 < len(self.timesteps) else 1.0
        return (1.0 - ap) / (1.0 - a) * (1.0 - a / ap)

    def reset(self) -> None:
        """Clear per-trajectory state (multistep history); called by :func:`sample_loop` before sampling."""

    def timestep_tensors(self, batch_size: int, device: torch.device | str, dtype: torch.dtype) -> list[torch.Tensor]:
        """The levels as ``(B,)`` tensors to pass to the denoiser (cached per batch size, device and dtype)."""
        return level_tensors(self, self.timesteps, batch_size, device, dtype)

    def _x0_eps(self, model_output: torch.Tensor, i: int, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        a, s = self._sqrt_ab[i], self._sqrt_1mab[i]
        x0, eps = split_prediction(model_output, x, a, s, self.prediction_type)
        if self.clip_sample is not None:
            x0 = x0.clamp(-self.clip_sample, self.clip_sample)
            eps = (x - a * x0) / s
        return x0, eps

    def predict_x0(self, model_output: torch.Tensor, i: int, x: torch.Tensor) -> torch.Tensor:
        """The (clipped) x0 estimate at ``timesteps[i]``."""
        if self.clip_sample is not None:
            return self._x0_eps(model_output, i, x)[0]
        return _combine(x, model_output, *self._x0_lin[i])

    def step(
        self, model_output: torch.Tensor, i: int, x: torch.Tensor, generator: torch.Generator | None = None,
        temperature: float = 1.0,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Map ``x`` at ``timesteps[i]`` to the next level; returns ``(x_prev, x0_hat)``."""
        return self.advance(model_output, i, x, generator, temperature), self.predict_x0(model_output, i, x)

    def advance(
        self, model_output: torch.Tensor, i: int, x: torch.Tensor, generator: torch.Generator | None = None,
        temperature: float = 1.0,
    ) -> torch.Tensor:
        """Like :meth:`step` but returns only ``x_prev`` (skips the x0 estimate's kernels)."""
        raise NotImplementedError


def level_tensors(owner: object, levels: list[int] | list[float], batch_size: int, device: torch.device | str,
                  dtype: torch.dtype) -> list[torch.Tensor]:
    """``[levels[i]]`` as ``(B,)`` tensors, built once and cached on ``owner._level_cache``.

    The cache key includes whether inference mode is on: a tensor made under ``torch.inference_mode`` must not
    reach a later autograd-recorded call (Diffusion-QL back-propagates through sampling). A few cached
    tensors per sampler save a host-to-device copy and ``n`` small allocations per sampling loop.
    """
    cache: dict[tuple[object, ...], list[torch.Tensor]] = owner.__dict__.setdefault("_level_cache", {})
    key = (batch_size, str(device), dtype, torch.is_inference_mode_enabled())
    tensors = cache.get(key)
    if tensors is None:
        if len(cache) >= 8:
            cache.clear()
        column = torch.tensor(levels, dtype=dtype, device=device)
        tensors = [column[i].expand(batch_size) for i in range(len(levels))]
        cache[key] = tensors
    return tensors


def _x0_coefs(a: float, s: float, prediction_type: str) -> tuple[float, float]:
    """``(rx, ro)`` with ``x0_hat = rx * x + ro * out`` (the linear form of :func:`split_prediction`)."""
    if prediction_type == "eps":
        return 1.0 / a, -s / a
    if prediction_type == "x0":
        return 0.0, 1.0
    return a, -s


def _eps_coefs(a: float, s: float, prediction_type: str) -> tuple[float, float]:
    """``(ex, eo)`` with ``eps_hat = ex * x + eo * out``."""
    if prediction_type == "eps":
        return 0.0, 1.0
    if prediction_type == "x0":
        return (1.0 / s, -a / s) if s > 0 else (0.0, 0.0)
    return s, a


def _combine(x: torch.Tensor, out: torch.Tensor, cx: float, co: float) -> torch.Tensor:
    """``cx * x + co * out`` in as few kernels as the coefficients allow."""
    if cx == 0.0:
        return out if co == 1.0 else out * co
    return torch.add(x * cx, out, alpha=co)


def _add_noise(mean: torch.Tensor, std: float, generator: torch.Generator | None) -> torch.Tensor:
    """``mean + std * z``, ``z ~ N(0, I)``; nothing is drawn when ``std == 0``.

    ``torch.normal(mean, std)`` does it in one call (and draws the same numbers as ``randn`` + ``add``), but its
    gradient with respect to ``mean`` is zero, so it is only used when no gradient flows (Diffusion-QL
    back-propagates through the sampling chain).
    """
    if std <= 0:
        return mean
    if mean.requires_grad:
        noise = torch.randn(mean.shape, device=mean.device, dtype=mean.dtype, generator=generator)
        return torch.add(mean, noise, alpha=std)
    return torch.normal(mean, std, generator=generator)


class DDPMSampler(DiscreteSampler):
    """Ancestral DDPM sampling (Ho et al. 2020, Alg. 2) with the posterior variance ``beta~_t`` (Eq. 7).

    For a strided subset of levels the step from ``t`` to ``s < t`` uses ``beta = 1 - ab_t / ab_s``, the
    exact posterior of the sub-chain. No noise is added on the last step.
    """

    def _precompute(self, ab: list[float], ab_prev: list[float]) -> None:
        self._c0, self._ct, self._std = [], [], []
        self._lin: list[tuple[float, float]] = []  # posterior mean = px * x + po * out
        for i, (a, ap) in enumerate(zip(ab, ab_prev)):
            beta = 1.0 - a / ap
            c0 = math.sqrt(ap) * beta / (1.0 - a)
            ct = math.sqrt(1.0 - beta) * (1.0 - ap) / (1.0 - a)
            self._c0.append(c0)
            self._ct.append(ct)
            self._std.append(math.sqrt(max((1.0 - ap) / (1.0 - a) * beta, 0.0)))
            rx, ro = self._x0_lin[i]
            self._lin.append((c0 * rx + ct, c0 * ro))

    def advance(self, model_output, i, x, generator=None, temperature=1.0):  # type: ignore[no-untyped-def]
        if self.clip_sample is None:
            px, po = self._lin[i]
            mean = torch.add(x * px, model_output, alpha=po)
        else:
            x0, _ = self._x0_eps(model_output, i, x)
            mean = torch.add(x0 * self._c0[i], x, alpha=self._ct[i])
        return _add_noise(mean, self._std[i] * temperature, generator)


class DDIMSampler(DiscreteSampler):
    """DDIM (Song et al. 2021, Eq. 12): ``x_s = sqrt(ab_s) x0 + sqrt(1 - ab_s - sigma^2) eps + sigma z``.

    Args:
        eta: 0 gives the deterministic ODE sampler, 1 the DDPM posterior variance.
    """

    def __init__(self, schedule: NoiseSchedule, num_inference_steps: int | None = None, *, eta: float = 0.0,
                 prediction_type: str = "eps", clip_sample: float | None = None, spacing: str = "linspace") -> None:
        if eta < 0:
            raise ValueError(f"eta: expected >= 0, got {eta}")
        self.eta = eta
        super().__init__(schedule, num_inference_steps, prediction_type=prediction_type, clip_sample=clip_sample,
                         spacing=spacing)

    def _precompute(self, ab: list[float], ab_prev: list[float]) -> None:
        self._cx0, self._ceps, self._sigma = [], [], []
        self._lin: list[tuple[float, float]] = []  # deterministic part = px * x + po * out
        for i, (a, ap) in enumerate(zip(ab, ab_prev)):
            sigma = self.eta * math.sqrt(max((1 - ap) / (1 - a) * (1 - a / ap), 0.0))
            cx0, ceps = math.sqrt(ap), math.sqrt(max(1.0 - ap - sigma**2, 0.0))
            self._cx0.append(cx0)
            self._ceps.append(ceps)
            self._sigma.append(sigma)
            (rx, ro), (ex, eo) = self._x0_lin[i], self._eps_lin[i]
            self._lin.append((cx0 * rx + ceps * ex, cx0 * ro + ceps * eo))

    def advance(self, model_output, i, x, generator=None, temperature=1.0):  # type: ignore[no-untyped-def]
        if self.clip_sample is None:
            px, po = self._lin[i]
            out = torch.add(x * px, model_output, alpha=po)
        else:
            x0, eps = self._x0_eps(model_output, i, x)
            out = torch.add(x0 * self._cx0[i], eps, alpha=self._ceps[i])
        sigma = self._sigma[i]
        return out if sigma == 0.0 else _add_noise(out, sigma * temperature, generator)


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
        # x0 history, newest last, stored as y with x0 = k * y (saves a kernel per step, see ``_plan``)
        self._history: list[torch.Tensor] = []
        super().__init__(schedule, num_inference_steps, prediction_type=prediction_type, clip_sample=clip_sample,
                         spacing=spacing)

    def _precompute(self, ab: list[float], ab_prev: list[float]) -> None:
        lam = [0.5 * math.log(a / (1 - a)) for a in ab]
        n = len(ab)
        self._orders: list[int] = []
        # _coefs[i][k - 1] = (ratio, w0, w1, w2): the order-k update at step i, for every k <= _orders[i]
        self._coefs: list[list[tuple[float, float, float, float]]] = []
        for i in range(n):
            ap = ab_prev[i]
            if ap >= 1.0:  # last step: sigma_s = 0, the update is x0
                self._orders.append(0)
                self._coefs.append([])
                continue
            order = min(self.order, i + 1)
            if i == n - 2:  # the step into level 0 (final_sigmas_type="zero")
                order = 1
            elif i == n - 3 and n < 15:  # lower_order_final
                order = min(order, 2)
            h = 0.5 * math.log(ap / (1 - ap)) - lam[i]
            alpha_s = math.sqrt(ap)
            ratio = math.sqrt(1 - ap) / math.sqrt(1 - ab[i])
            phi = math.expm1(-h)  # e^{-h} - 1
            c0 = -alpha_s * phi
            coefs = [(ratio, c0, 0.0, 0.0)]
            if order >= 2:  # D = D0 + (D0 - D1) / (2 r0)  (DPM-Solver++(2M), Alg. 2)
                r0 = (lam[i] - lam[i - 1]) / h
                c1 = -0.5 * alpha_s * phi / r0
                coefs.append((ratio, c0 + c1, -c1, 0.0))
            if order >= 3:
                r0, r1 = (lam[i] - lam[i - 1]) / h, (lam[i - 1] - lam[i - 2]) / h
                cd1 = alpha_s * (phi / h + 1.0)
                cd2 = -alpha_s * ((phi + h) / h**2 - 0.5)
                q = r0 / (r0 + r1)
                # D1_0 = (D0 - D1) / r0, D1_1 = (D1 - D2) / r1, g = D1_0 - D1_1,
                # x_s = ratio x + c0 D0 + cd1 (D1_0 + q g) + cd2 g / (r0 + r1), expanded over D0, D1, D2
                g0, g1, g2 = 1 / r0, -(1 / r0 + 1 / r1), 1 / r1
                w0 = c0 + cd1 * (1 / r0 + q * g0) + cd2 * g0 / (r0 + r1)
                w1 = cd1 * (-1 / r0 + q * g1) + cd2 * g1 / (r0 + r1)
                w2 = cd1 * q * g2 + cd2 * g2 / (r0 + r1)
                coefs.append((ratio, w0, w1, w2))
            self._orders.append(order)
            self._coefs.append(coefs)
        self._plan()

    def reset(self) -> None:
        self._history = []

    def _plan(self) -> None:
        """Fold the x0 scale factors into the update weights (see :meth:`_update`)."""
        # x0_i = k_i * y_i with y_i = x + beta_i * out (eps / v outputs) or y_i = out (x0 outputs, k_i = 1)
        self._beta: list[float | None] = []
        k: list[float] = []
        for rx, ro in self._x0_lin:
            if self.clip_sample is not None or rx == 0.0:
                self._beta.append(None)
                k.append(1.0 if self.clip_sample is not None else ro)
            else:
                self._beta.append(ro / rx)
                k.append(rx)
        self._k = k
        # x_s = ratio * (x + a0 y_i + a1 y_{i-1} + a2 y_{i-2})
        self._alphas: list[list[tuple[float, tuple[float, ...]]]] = [
            [(c[0], tuple(c[1 + j] * k[i - j] / c[0] for j in range(order))) for order, c in enumerate(coefs, 1)]
            for i, coefs in enumerate(self._coefs)
        ]

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
        plans = self._alphas[i]
        if not plans:  # the last step: x_prev = x0
            k = self._k[i]
            return (y if k == 1.0 else y * k), y
        ratio, alphas = plans[min(len(plans), len(hist)) - 1]
        out = torch.add(x, y, alpha=alphas[0])
        for j in range(1, len(alphas)):
            out = out.add_(hist[-1 - j], alpha=alphas[j])
        return out.mul_(ratio), y

    def advance(self, model_output, i, x, generator=None, temperature=1.0):  # type: ignore[no-untyped-def]
        return self._update(model_output, i, x)[0]

    def step(self, model_output, i, x, generator=None, temperature=1.0):  # type: ignore[no-untyped-def]
        out, y = self._update(model_output, i, x)
        k = self._k[i]
        return out, (y if k == 1.0 else y * k)


SAMPLERS: dict[str, type[DiscreteSampler]] = {
    "ddpm": DDPMSampler,
    "ddim": DDIMSampler,
    "dpm": DPMSolverPPSampler,
    "dpmsolver++": DPMSolverPPSampler,
}


def make_sampler(name: str, schedule: NoiseSchedule, num_inference_steps: int | None = None, **kwargs: object
                 ) -> DiscreteSampler:
    """Build a sampler by name: ``"ddpm"``, ``"ddim"`` or ``"dpm"`` (DPM-Solver++)."""
    key = name.lower()
    if key not in SAMPLERS:
        raise ValueError(f"sampler: expected one of {sorted(SAMPLERS)}, got {name!r}")
    return SAMPLERS[key](schedule, num_inference_steps, **kwargs)  # type: ignore[arg-type]
