"""Gradient (classifier / value) guidance as in Diffuser (Janner et al. 2022, Eq. 3; Dhariwal & Nichol 2021).

Before each denoising step the sample moves along the gradient of a differentiable objective
``J(x_t, t)`` (a value function trained on noisy trajectories, or a classifier log-probability):
``x <- x + scale * Sigma * grad J`` where ``Sigma`` is the step's posterior variance when ``scale_grad_by_std``.
As in the reference code (jannerm/diffuser ``n_step_guided_p_sample``) the gradient is applied ``n_guide_steps``
times before the reverse step, and not at all for levels below ``t_stopgrad``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from diffagents.diffusion.loop import Sampler

Objective = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class GradientGuide:
    """Steer samples up the gradient of ``objective(x, t) -> (B,)``.

    Args:
        objective: differentiable function of the noisy sample and its level, one value per sample.
        scale: step size of the gradient ascent.
        n_guide_steps: gradient steps per denoising step.
        t_stopgrad: levels below this get no guidance.
        scale_grad_by_std: multiply the gradient by the step's posterior variance (needs a sampler with
            ``posterior_variance``; otherwise the gradient is used as is).
        clip: optional element-wise clipping of the scaled gradient step.
    """

    def __init__(self, objective: Objective, *, scale: float = 0.1, n_guide_steps: int = 2, t_stopgrad: int = 2,
                 scale_grad_by_std: bool = True, clip: float | None = None) -> None:
        if n_guide_steps < 0:
            raise ValueError(f"n_guide_steps: expected >= 0, got {n_guide_steps}")
        self.objective = objective
        self.scale = scale
        self.n_guide_steps = n_guide_steps
        self.t_stopgrad = t_stopgrad
        self.scale_grad_by_std = scale_grad_by_std
        self.clip = clip
        self.last_value: torch.Tensor | None = None

    def gradient(self, x: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(J(x, t), dJ/dx)`` computed with autograd, also under ``torch.no_grad`` or ``torch.inference_mode``.

        Inference mode disables autograd even inside ``enable_grad``, and its tensors cannot enter autograd, so
        the gradient is taken with inference mode off, on normal-tensor copies of ``x`` and ``t``.
        """
        with torch.inference_mode(False), torch.enable_grad():
            x_ = (x.clone() if x.is_inference() else x.detach()).requires_grad_(True)
            t_ = t.clone() if t.is_inference() else t
            y = self.objective(x_, t_)
            (grad,) = torch.autograd.grad(y.sum(), x_)
        return y.detach(), grad

    def before_denoise(self, x: torch.Tensor, i: int, t: torch.Tensor, sampler: Sampler) -> torch.Tensor:
        if float(sampler.timesteps[i]) < self.t_stopgrad or self.scale == 0:
            return x
        var = 1.0
        if self.scale_grad_by_std and hasattr(sampler, "posterior_variance"):
            var = sampler.posterior_variance(i)
        for _ in range(self.n_guide_steps):
            y, grad = self.gradient(x, t)
            step = grad * (self.scale * var)
            if self.clip is not None:
                step = step.clamp(-self.clip, self.clip)
            x = x + step
            self.last_value = y
        return x

    def after_step(self, x: torch.Tensor, i: int, sampler: Sampler) -> torch.Tensor:
        return x
