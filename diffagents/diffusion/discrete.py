"""Shared machinery of the samplers over the discrete levels of a :class:`NoiseSchedule`.

A sampler holds no weights. ``set_timesteps(n)`` picks ``n`` of the ``T`` training levels (a descending subset,
always ending at level 0) and precomputes every coefficient, so a step launches only a few element-wise
kernels and never reads a value back from the device (no host sync on CUDA, CUDA-graph friendly).

Without ``clip_sample`` every update is written directly as a linear combination of ``x`` and the network
output (plus noise or history terms), with the coefficients held as cached 0-dim tensors of the sample's dtype
and device (:meth:`DiscreteSampler.scalars`): multiplying by such a tensor skips wrapping a Python float into a
tensor on every call, about 1 us of host time per kernel, which matters next to a ~60 us batch-1 MLP forward.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from diffagents.cuda_graph import keep_alive
from diffagents.diffusion.process import check_prediction_type, split_prediction
from diffagents.diffusion.schedules import NoiseSchedule

FAST_DTYPES = (torch.float32, torch.float64)  # coefficient tensors lose precision in half types: floats there


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
    keep_alive(tensors)  # a CUDA graph being captured reads them: they must outlive a cache eviction
    return tensors


def x0_coefs(a: float, s: float, prediction_type: str) -> tuple[float, float]:
    """``(rx, ro)`` with ``x0_hat = rx * x + ro * out`` (the linear form of :func:`split_prediction`)."""
    if prediction_type == "eps":
        return 1.0 / a, -s / a
    if prediction_type == "x0":
        return 0.0, 1.0
    return a, -s


def eps_coefs(a: float, s: float, prediction_type: str) -> tuple[float, float]:
    """``(ex, eo)`` with ``eps_hat = ex * x + eo * out``."""
    if prediction_type == "eps":
        return 0.0, 1.0
    if prediction_type == "x0":
        return (1.0 / s, -a / s) if s > 0 else (0.0, 0.0)
    return s, a


def add_noise(mean: torch.Tensor, std: float, generator: torch.Generator | None) -> torch.Tensor:
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


class DiscreteSampler:
    """Shared set-up for samplers over the levels of a :class:`NoiseSchedule`.

    ``step(model_output, i, x)`` maps ``x`` at ``timesteps[i]`` to the next level and returns
    ``(x_prev, x0_hat)``; ``advance(model_output, i, x)`` returns only ``x_prev`` and is what
    :func:`~diffagents.diffusion.sample_loop` calls on every step but the last.

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
        self._scalar_cache: dict[tuple[torch.dtype, torch.device], list[tuple[torch.Tensor, ...]]] = {}
        ab = [self.schedule.alpha_bar(t) for t in self.timesteps]
        ab_prev = [self.schedule.alpha_bar(t) for t in self.timesteps[1:]] + [1.0]
        self._sqrt_ab = [math.sqrt(a) for a in ab]
        self._sqrt_1mab = [math.sqrt(1.0 - a) for a in ab]
        # x0_hat = rx * x + ro * out and eps_hat = ex * x + eo * out for the raw network output ``out``
        self._x0_lin = [x0_coefs(a, s, self.prediction_type) for a, s in zip(self._sqrt_ab, self._sqrt_1mab)]
        self._eps_lin = [eps_coefs(a, s, self.prediction_type) for a, s in zip(self._sqrt_ab, self._sqrt_1mab)]
        # per step, the coefficients a subclass multiplies tensors by (materialised by ``scalars``)
        self._scalar_values: list[tuple[float, ...]] = []
        self._precompute(ab, ab_prev)

    def _precompute(self, ab: list[float], ab_prev: list[float]) -> None:
        raise NotImplementedError  # each subclass fills its own coefficient lists

    def scalars(self, like: torch.Tensor) -> list[tuple[torch.Tensor, ...]] | None:
        """``_scalar_values`` as 0-dim tensors with the dtype and device of ``like`` (cached), or ``None`` for
        half types (their coefficients would be rounded to 8-11 bits; Python floats are used there).

        Built once per dtype and device, before any CUDA-graph capture (a warm-up run builds them); made with
        inference mode off, so they serve both under ``torch.inference_mode`` and with autograd.
        """
        key = (like.dtype, like.device)
        cached = self._scalar_cache.get(key)
        if cached is None:
            if like.dtype not in FAST_DTYPES:
                return None
            with torch.inference_mode(False):
                cached = [tuple(torch.tensor(v, dtype=like.dtype, device=like.device) for v in values)
                          for values in self._scalar_values]
            self._scalar_cache[key] = cached
        keep_alive(cached)  # outlive this sampler if a CUDA graph being captured reads them
        return cached

    def posterior_variance(self, i: int) -> float:
        """Variance of q(x_s | x_t, x_0) for the step from ``timesteps[i]`` (Ho et al. 2020, Eq. 7).

        Diffuser scales value gradients by it (``scale_grad_by_std``).
        """
        a = self._sqrt_ab[i] ** 2
        ap = self.schedule.alpha_bar(self.timesteps[i + 1]) if i + 1 < len(self.timesteps) else 1.0
        return (1.0 - ap) / (1.0 - a) * (1.0 - a / ap)

    def reset(self) -> None:
        """Clear per-trajectory state (multistep history); called by ``sample_loop`` before sampling."""

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
        rx, ro = self._x0_lin[i]
        if rx == 0.0:
            return model_output if ro == 1.0 else model_output * ro
        return torch.add(x * rx, model_output, alpha=ro)

    def step(
        self, model_output: torch.Tensor, i: int, x: torch.Tensor, generator: torch.Generator | None = None,
        temperature: float = 1.0,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Map ``x`` at ``timesteps[i]`` to the next level; returns ``(x_prev, x0_hat)``."""
        x_prev = self.advance(model_output, i, x, generator, temperature)
        if i == len(self.timesteps) - 1:  # the last update is the x0 estimate itself (ab_prev = 1, no noise)
            return x_prev, x_prev
        return x_prev, self.predict_x0(model_output, i, x)

    def advance(
        self, model_output: torch.Tensor, i: int, x: torch.Tensor, generator: torch.Generator | None = None,
        temperature: float = 1.0,
    ) -> torch.Tensor:
        """Like :meth:`step` but returns only ``x_prev`` (skips the x0 estimate's kernels)."""
        raise NotImplementedError

    def _affine(self, model_output: torch.Tensor, i: int, x: torch.Tensor) -> torch.Tensor:
        """``px * x + po * out`` with ``_scalar_values[i] = (px,)`` and ``_lin[i] = (px, po)`` (two kernels)."""
        sc = self.scalars(x)
        px, po = self._lin[i]
        if sc is None:
            return torch.add(x * px, model_output, alpha=po)
        return x.mul(sc[i][0]).add_(model_output, alpha=po)

    _lin: list[tuple[float, float]]
