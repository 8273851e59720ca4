"""Guidance against exact denoisers: classifier-free guidance, gradient guidance and inpainting."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
import torch

from diffagents.diffusion import (
    ConsistencySampler,
    DDIMSampler,
    DDPMSampler,
    DPMSolverPPSampler,
    NoiseSchedule,
    sample_loop,
)
from diffagents.diffusion.loop import Sampler
from diffagents.guidance import ClassifierFreeGuidance, GradientGuide, Inpaint

torch.set_num_threads(1)
F64 = torch.float64
Z = 5.0


class LabelledMixture:
    """Two labelled Gaussian modes ``N(mu_c, s^2 I)`` with equal weights; label ``c`` selects one mode.

    ``__call__(x, t, cond, cond_mask)`` is the exact conditional eps (``cond``: ``(B, 1)`` labels 0 / 1);
    where ``cond_mask`` is False it is the exact unconditional (mixture) eps, as a CFG-trained network is.
    """

    def __init__(self, schedule: NoiseSchedule, s: float = 0.3) -> None:
        self.mu = torch.tensor([[-2.0, 0.0], [2.0, 0.0]], dtype=F64)
        self.s = s
        self.abar = [float(a) for a in schedule.alphas_cumprod]

    def _eps(self, x: torch.Tensor, ab: float, weights: torch.Tensor) -> torch.Tensor:
        var = ab * self.s**2 + 1 - ab
        diff = x[:, None, :] - math.sqrt(ab) * self.mu[None]  # (B, 2, D)
        logp = torch.log(weights) - 0.5 * (diff**2).sum(-1) / var  # (B, 2)
        r = torch.softmax(logp, dim=1)[..., None]
        return math.sqrt(1 - ab) * (r * diff).sum(1) / var

    def __call__(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None,
                 cond_mask: torch.Tensor | None = None) -> torch.Tensor:
        assert cond is not None
        ab = self.abar[int(t[0])]
        label = cond[:, 0].long()
        weights = torch.nn.functional.one_hot(label, 2).to(F64).clamp_min(1e-300)  # conditional: one mode
        if cond_mask is not None:
            weights = torch.where(cond_mask[:, None], weights, torch.full_like(weights, 0.5))
        return self._eps(x, ab, weights)


def _in_mode(x: torch.Tensor, label: int) -> torch.Tensor:
    """Nearest-mode assignment (modes at x = -2 and x = +2)."""
    return (x[:, 0] > 0) == bool(label)


@pytest.mark.parametrize("weight", [1.0, 1.5, 3.0])
@pytest.mark.parametrize("label", [0, 1])
def test_cfg_puts_samples_in_the_conditioned_mode(weight: float, label: int) -> None:
    sch = NoiseSchedule(num_train_steps=100, kind="cosine")
    guided = ClassifierFreeGuidance(LabelledMixture(sch), weight=weight)
    n = 2000
    cond = torch.full((n, 1), float(label), dtype=F64)
    x = sample_loop(guided, DDIMSampler(sch, 20), (n, 2), cond=cond, dtype=F64,
                    generator=torch.Generator().manual_seed(0))
    assert _in_mode(x, label).double().mean() >= 0.95


def test_cfg_weight_zero_is_the_unconditional_mixture() -> None:
    sch = NoiseSchedule(num_train_steps=100, kind="cosine")
    model = LabelledMixture(sch)
    n = 4000
    cond = torch.ones(n, 1, dtype=F64)
    x = sample_loop(ClassifierFreeGuidance(model, weight=0.0), DDPMSampler(sch), (n, 2), cond=cond, dtype=F64,
                    generator=torch.Generator().manual_seed(0))
    frac = float(_in_mode(x, 1).double().mean())
    assert abs(frac - 0.5) < Z * math.sqrt(0.25 / n)
    conditional = sample_loop(ClassifierFreeGuidance(model, weight=1.0), DDPMSampler(sch), (n, 2), cond=cond,
                              dtype=F64, generator=torch.Generator().manual_seed(0))
    assert float(_in_mode(conditional, 1).double().mean()) > 0.99


def test_cfg_combines_the_two_branches_exactly() -> None:
    calls: list[tuple[int, torch.Tensor]] = []

    def model(x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None,
              cond_mask: torch.Tensor | None = None) -> torch.Tensor:
        assert cond is not None and cond_mask is not None
        calls.append((x.shape[0], cond_mask.clone()))
        return torch.where(cond_mask[:, None], cond, -cond) + x

    x = torch.randn(3, 2)
    cond = torch.randn(3, 2)
    out = ClassifierFreeGuidance(model, weight=2.5)(x, torch.zeros(3), cond)
    torch.testing.assert_close(out, (x - cond) + 2.5 * ((x + cond) - (x - cond)))
    assert len(calls) == 1 and calls[0][0] == 6  # one batched forward over both branches
    assert calls[0][1].tolist() == [True] * 3 + [False] * 3
    with pytest.raises(ValueError, match="cond"):
        ClassifierFreeGuidance(model)(x, torch.zeros(3), None)


# ---------------------------------------------------------------------------------------------------------------
class Gaussian:
    """Exact eps of N(0, s^2 I)."""

    def __init__(self, schedule: NoiseSchedule, s: float = 0.5) -> None:
        self.abar = [float(a) for a in schedule.alphas_cumprod]
        self.s = s

    def __call__(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        ab = self.abar[int(t[0])]
        return math.sqrt(1 - ab) * x / (ab * self.s**2 + 1 - ab)


def _guided_mean(scale: float, t_stopgrad: int = 2, n_guide_steps: int = 1,
                 seen: list[float] | None = None) -> torch.Tensor:
    sch = NoiseSchedule(num_train_steps=50, kind="linear")
    c = torch.tensor([1.0, -2.0], dtype=F64)

    def objective(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if seen is not None:
            seen.append(float(t[0]))
        return x @ c  # J(x) = c . x, gradient c

    guide = GradientGuide(objective, scale=scale, t_stopgrad=t_stopgrad, n_guide_steps=n_guide_steps)
    return sample_loop(Gaussian(sch), DDPMSampler(sch), (2000, 2), guides=[guide], dtype=F64,
                       generator=torch.Generator().manual_seed(0))


def test_gradient_guidance_moves_the_mean_along_the_gradient() -> None:
    c = torch.tensor([1.0, -2.0], dtype=F64)
    unit = c / c.norm()
    base = _guided_mean(0.0)
    shifts = [(_guided_mean(scale) - base).mean(0) for scale in (0.5, 2.0)]
    along = [float(s @ unit) for s in shifts]
    across = [float(s @ torch.tensor([2.0, 1.0], dtype=F64) / math.sqrt(5)) for s in shifts]
    assert 0 < along[0] < along[1]
    assert along[1] == pytest.approx(4 * along[0], rel=1e-6)  # linear objective: the shift is linear in scale
    assert all(abs(a) < 1e-9 for a in across)  # same noise: nothing moves orthogonally to c
    assert float(shifts[0].norm()) > 10 * Z * 0.5 / math.sqrt(2000)


def test_gradient_guidance_off_below_t_stopgrad_and_at_zero_scale() -> None:
    base = _guided_mean(0.0)
    assert torch.equal(_guided_mean(0.0, t_stopgrad=0), base)  # zero scale: bit-identical
    assert torch.equal(_guided_mean(5.0, t_stopgrad=50), base)  # every level is below t_stopgrad
    seen: list[float] = []
    _guided_mean(1.0, t_stopgrad=10, n_guide_steps=3, seen=seen)
    assert min(seen) >= 10 and len(seen) == 3 * 40  # levels 49..10, three gradient steps each
    assert not torch.equal(_guided_mean(1.0, t_stopgrad=10), base)


def test_gradient_guidance_under_inference_mode() -> None:
    """Acting code often runs under ``torch.inference_mode``, where autograd is off even in ``enable_grad``."""
    sch = NoiseSchedule(num_train_steps=20)
    value = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))

    def objective(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return value(x + 0.01 * t[:, None]).squeeze(-1)

    def run() -> torch.Tensor:
        guide = GradientGuide(objective, scale=0.5, t_stopgrad=0)
        return sample_loop(Gaussian(sch), DDPMSampler(sch, 8), (16, 3), guides=[guide],
                           generator=torch.Generator().manual_seed(0))

    with torch.no_grad():
        expected = run()
    with torch.inference_mode():
        got = run()
    torch.testing.assert_close(got, expected, rtol=0, atol=0)
    with torch.no_grad():
        unguided = sample_loop(Gaussian(sch), DDPMSampler(sch, 8), (16, 3), generator=torch.Generator().manual_seed(0))
    assert not torch.allclose(expected, unguided)


def test_gradient_guide_validates_and_reports_values() -> None:
    with pytest.raises(ValueError, match="n_guide_steps"):
        GradientGuide(lambda x, t: x.sum(-1), n_guide_steps=-1)
    guide = GradientGuide(lambda x, t: (x**2).sum(-1), scale=1.0, clip=0.1, scale_grad_by_std=False)
    sampler = DDIMSampler(NoiseSchedule(num_train_steps=10), 5)
    x = torch.full((2, 3), 2.0)
    with torch.no_grad():
        out = guide.before_denoise(x, 0, torch.full((2,), 9.0), sampler)
    torch.testing.assert_close(out, x + 2 * 0.1)  # n_guide_steps = 2 clipped steps of 0.1
    assert guide.last_value is not None and guide.last_value.shape == (2,)


# ---------------------------------------------------------------------------------------------------------------
SAMPLERS: dict[str, Callable[[], Sampler]] = {
    "ddpm": lambda: DDPMSampler(NoiseSchedule(num_train_steps=30), 10),
    "ddim": lambda: DDIMSampler(NoiseSchedule(num_train_steps=30), 10),
    "ddim_eta1_x0": lambda: DDIMSampler(NoiseSchedule(num_train_steps=30), 10, eta=1.0, prediction_type="x0"),
    "dpm2": lambda: DPMSolverPPSampler(NoiseSchedule(num_train_steps=30), 10),
    "dpm3_v_clip": lambda: DPMSolverPPSampler(NoiseSchedule(num_train_steps=30), 10, order=3, prediction_type="v",
                                              clip_sample=1.0),
    "consistency": lambda: ConsistencySampler([80.0, 2.0, 0.5]),
}


@pytest.mark.parametrize("name", SAMPLERS)
def test_inpaint_holds_fixed_entries_exactly(name: str) -> None:
    torch.manual_seed(0)
    net = torch.nn.Linear(5, 5)
    shape = (4, 8, 5)  # (B, H, D)
    state = torch.randn(4, 3) * 3.0  # out of the clip range on purpose
    goal = torch.randn(4, 2)
    start = Inpaint.at(shape, (slice(None), 0, slice(0, 3)), state)
    end = Inpaint.at(shape, (slice(None), -1, slice(3, 5)), goal)

    def denoiser(x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
        return net(x) + 0.01 * t[:, None, None]

    guide = GradientGuide(lambda x, t: x[:, 1:].sum((1, 2)), scale=0.1, t_stopgrad=0)
    with torch.no_grad():
        x = sample_loop(denoiser, SAMPLERS[name](), shape, guides=[guide, start, end],
                        generator=torch.Generator().manual_seed(1))
    assert torch.equal(x[:, 0, :3], state)
    assert torch.equal(x[:, -1, 3:], goal)
    assert torch.isfinite(x).all() and x[:, 1:-1].std() > 0


def test_inpaint_construction() -> None:
    with pytest.raises(TypeError, match="mask"):
        Inpaint(torch.zeros(2, 3), torch.zeros(2, 3))
    values = torch.arange(6.0).view(2, 3)
    ip = Inpaint(torch.tensor([[True, False, False], [False, False, True]]), values)
    out = ip.apply(torch.full((2, 3), -1.0, dtype=F64))
    assert out.dtype == F64 and out.tolist() == [[0.0, -1.0, -1.0], [-1.0, -1.0, 5.0]]
