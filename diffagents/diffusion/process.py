"""Forward noising and training targets of a Gaussian diffusion (Ho et al. 2020; Salimans & Ho 2022).

``x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps`` (survey Eq. 2). The network is trained to predict
one of three equivalent targets:

* ``"eps"``: the noise (DDPM, Decision Diffuser, Diffusion-QL, Diffusion Policy);
* ``"x0"``: the clean sample (Diffuser's ``predict_epsilon=False``);
* ``"v"``: ``sqrt(ab) eps - sqrt(1 - ab) x0`` (Salimans & Ho 2022, Eq. 9 of Progressive Distillation).

The process holds no trainable weights; it is an ``nn.Module`` only so that ``.to(device)`` moves its buffers.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
from torch import nn

from diffagents.diffusion.schedules import NoiseSchedule

PredictionType = Literal["eps", "x0", "v"]
PREDICTION_TYPES: tuple[str, ...] = ("eps", "x0", "v")


def check_prediction_type(prediction_type: str) -> None:
    if prediction_type not in PREDICTION_TYPES:
        raise ValueError(f"prediction_type: expected one of {PREDICTION_TYPES}, got {prediction_type!r}")


def split_prediction(
    model_output: torch.Tensor,
    x_t: torch.Tensor,
    sqrt_ab: float | torch.Tensor,
    sqrt_1mab: float | torch.Tensor,
    prediction_type: str,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Convert a network output at one noise level into ``(x0_hat, eps_hat)``.

    Works with Python floats (samplers) or broadcastable tensors (training losses).
    """
    if prediction_type == "eps":
        eps = model_output
        x0 = (x_t - sqrt_1mab * eps) / sqrt_ab
    elif prediction_type == "x0":
        x0 = model_output
        eps = (x_t - sqrt_ab * x0) / sqrt_1mab
    elif prediction_type == "v":
        x0 = sqrt_ab * x_t - sqrt_1mab * model_output
        eps = sqrt_1mab * x_t + sqrt_ab * model_output
    else:
        check_prediction_type(prediction_type)
        raise AssertionError  # unreachable
    return x0, eps


Denoiser = Callable[..., torch.Tensor]
"""Any callable ``denoiser(x_t, t, cond) -> Tensor`` (``t`` is a float tensor of levels, shape ``(B,)``)."""


class GaussianDiffusion(nn.Module):
    """Forward process q(x_t | x_0) and the denoising loss for one schedule and prediction type.

    Args:
        schedule: the noise schedule.
        prediction_type: what the network predicts, ``"eps"``, ``"x0"`` or ``"v"``.
    """

    sqrt_ab: torch.Tensor
    sqrt_1mab: torch.Tensor

    def __init__(self, schedule: NoiseSchedule, prediction_type: PredictionType = "eps") -> None:
        super().__init__()
        check_prediction_type(prediction_type)
        self.schedule = schedule
        self.prediction_type: str = prediction_type
        for name, value in schedule.tensors().items():
            self.register_buffer(name, value, persistent=False)

    @property
    def num_train_steps(self) -> int:
        return self.schedule.num_train_steps

    def _coef(self, t: torch.Tensor, ndim: int) -> tuple[torch.Tensor, torch.Tensor]:
        shape = (-1,) + (1,) * (ndim - 1)
        return self.sqrt_ab[t].view(shape), self.sqrt_1mab[t].view(shape)

    def sample_timesteps(self, batch_size: int, device: torch.device, generator: torch.Generator | None = None
                         ) -> torch.Tensor:
        """Uniform training levels ``t ~ U{0..T-1}``, shape ``(B,)``, int64."""
        return torch.randint(0, self.num_train_steps, (batch_size,), device=device, generator=generator)

    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """Survey Eq. (2): ``x_t = sqrt(ab_t) x_0 + sqrt(1 - ab_t) eps``."""
        a, s = self._coef(t, x0.ndim)
        return a * x0 + s * noise

    def target(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The regression target for the configured prediction type."""
        if self.prediction_type == "eps":
            return noise
        if self.prediction_type == "x0":
            return x0
        a, s = self._coef(t, x0.ndim)
        return a * noise - s * x0

    def predict_x0(self, model_output: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """One-step estimate of x_0 from a network output (EDP's action approximation, Kang et al. 2023, Eq. 6)."""
        a, s = self._coef(t, x_t.ndim)
        return split_prediction(model_output, x_t, a, s, self.prediction_type)[0]

    def loss(
        self,
        denoiser: Denoiser,
        x0: torch.Tensor,
        cond: torch.Tensor | None = None,
        *,
        weights: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
        inpaint: Callable[[torch.Tensor], torch.Tensor] | None = None,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Simple denoising loss ``E ||w * (f(x_t, t) - target)||^2`` (Ho et al. 2020, Eq. 14).

        Args:
            denoiser: callable ``(x_t, t, cond) -> prediction``.
            x0: clean samples, shape ``(B, ...)``.
            cond: optional condition passed through to the denoiser.
            weights: per-element loss weights broadcastable to ``x0`` (e.g. Diffuser's ``action_weight`` on the
                first action), normalised so an all-ones tensor gives the plain mean.
            mask: optional 0/1 mask of valid elements (padding in trajectory windows) with as many dimensions
                as ``x0``, broadcastable to it, e.g. ``(B, H, 1)``; the loss is the mean over valid elements.
            inpaint: optional function that overwrites fixed entries of ``x_t`` (and of an x0 prediction) with
                their known values, as Diffuser does for the conditioned start state.
            generator: RNG for the noise and the levels.

        Returns:
            The scalar loss and a dict of detached statistics.
        """
        if mask is not None and mask.ndim != x0.ndim:  # (B, H) against (B, H, D) would align H with D
            raise ValueError(f"mask: expected {x0.ndim} dims like x0 {tuple(x0.shape)} (add trailing size-1 dims), "
                             f"got shape {tuple(mask.shape)}")
        t = self.sample_timesteps(x0.shape[0], x0.device, generator)
        noise = torch.randn(x0.shape, device=x0.device, dtype=x0.dtype, generator=generator)
        x_t = self.q_sample(x0, t, noise)
        if inpaint is not None:
            x_t = inpaint(x_t)
        out = denoiser(x_t, t.to(x0.dtype), cond)
        if inpaint is not None and self.prediction_type == "x0":
            out = inpaint(out)
        err = (out - self.target(x0, noise, t)) ** 2
        if weights is not None:
            err = err * weights
        if mask is not None:
            err = err * mask
            loss = err.sum() / mask.expand_as(err).sum().clamp_min(1.0)
        else:
            loss = err.mean()
        return loss, {"diffusion_loss": loss.detach()}
