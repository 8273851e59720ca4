"""The one sampling loop every role uses: initial noise, then ``denoise -> sampler.step`` per level.

Guidance plugs in through two hooks (see :class:`Guide`), so inpainting, gradient guidance and constraint
projection compose without the loop knowing about them; classifier-free guidance wraps the denoiser instead
(:class:`diffagents.guidance.ClassifierFreeGuidance`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol, runtime_checkable

import torch


@runtime_checkable
class Sampler(Protocol):
    """What :func:`sample_loop` needs from a sampler (``DiscreteSampler`` subclasses, ``ConsistencySampler``).

    A sampler may also define ``advance(model_output, i, x, generator, temperature) -> x_prev``, a cheaper
    ``step`` without the x0 estimate, which the loop then uses for every step but the last.
    """

    @property
    def timesteps(self) -> Sequence[float]: ...  # the levels (or sigmas) visited, first to last

    @property
    def init_noise_sigma(self) -> float: ...

    def reset(self) -> None: ...

    def timestep_tensors(self, batch_size: int, device: torch.device | str, dtype: torch.dtype
                         ) -> list[torch.Tensor]: ...

    def step(self, model_output: torch.Tensor, i: int, x: torch.Tensor, generator: torch.Generator | None = None,
             temperature: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]: ...


class Guide(Protocol):
    """A steering term applied inside :func:`sample_loop`.

    ``before_denoise`` may change the noisy sample before the network sees it (inpainting, value gradients);
    ``after_step`` may change the sample the sampler produced (inpainting, projection).
    """

    def before_denoise(self, x: torch.Tensor, i: int, t: torch.Tensor, sampler: Sampler) -> torch.Tensor: ...

    def after_step(self, x: torch.Tensor, i: int, sampler: Sampler) -> torch.Tensor: ...


def sample_loop(
    denoiser: Callable[[torch.Tensor, torch.Tensor, torch.Tensor | None], torch.Tensor],
    sampler: Sampler,
    shape: Sequence[int],
    *,
    cond: torch.Tensor | None = None,
    guides: Sequence[Guide] = (),
    x_init: torch.Tensor | None = None,
    start_index: int = 0,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
    temperature: float = 1.0,
    return_x0: bool = False,
) -> torch.Tensor:
    """Draw samples of ``shape`` by running ``sampler`` with ``denoiser(x_t, t, cond)``.

    Args:
        denoiser: the network (or a CFG wrapper); ``t`` is a ``(B,)`` float tensor of levels or sigmas.
        sampler: a sampler after ``set_timesteps``.
        shape: sample shape, batch first.
        cond: condition passed to every denoiser call.
        guides: guidance hooks applied in order.
        x_init: start from this noisy sample instead of fresh noise (warm-start replanning: a previous plan
            re-noised to ``timesteps[start_index]``).
        start_index: index into ``sampler.timesteps`` to start from (used with ``x_init``).
        generator: RNG for the initial and per-step noise.
        temperature: scale of the initial and per-step noise (1 = the trained process).
        return_x0: return the sampler's last x0 estimate instead of the sample (before the guides'
            ``after_step``; without guides the two coincide, since every sampler's last step returns x0).

    Returns:
        The final samples, shape ``shape``.
    """
    batch = int(shape[0])
    if x_init is None:
        x = torch.randn(tuple(shape), device=device, dtype=dtype, generator=generator)
        scale = sampler.init_noise_sigma * temperature
        if scale != 1.0:
            x = x * scale
    else:
        x = x_init
    levels = sampler.timestep_tensors(batch, x.device, x.dtype)
    sampler.reset()
    for g in guides:
        x = g.after_step(x, start_index - 1, sampler)
    x0 = x
    last = len(levels) - 1
    # ``advance`` (when the sampler has it) skips the x0 estimate, which only the last step needs
    advance = getattr(sampler, "advance", None)
    for i in range(start_index, last + 1):
        t = levels[i]
        for g in guides:
            x = g.before_denoise(x, i, t, sampler)
        out = denoiser(x, t, cond)
        if advance is not None and i < last:
            x = advance(out, i, x, generator, temperature)
        else:
            x, x0 = sampler.step(out, i, x, generator, temperature)
        for g in guides:
            x = g.after_step(x, i, sampler)
    return x0 if return_x0 else x
