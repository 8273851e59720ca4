"""Golden values: one full sampling loop per sampler, pinned to numbers from the current implementation.

The samplers were first verified analytically (``tests/test_samplers.py``: exact Gaussian-mixture denoisers,
convergence orders against an RK4 reference); these values then catch any unintended change of a sampler's
arithmetic, order schedule, level grid or noise consumption. The denoiser is a tiny MLP built from a fixed
seed, run in float64 so the values are stable to round-off. If a change is intended, regenerate the table
with ``PYTHONPATH=.:tests python -c "from test_golden_sampler import print_table; print_table()"`` and say
why in the PR.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import nn

from diffagents.diffusion import (
    ConsistencySampler,
    DDIMSampler,
    DDPMSampler,
    DPMSolverPPSampler,
    NoiseSchedule,
    sample_loop,
)
from diffagents.diffusion.loop import Sampler

torch.set_num_threads(1)
T = 40
SHAPE = (4, 3)


def tiny_denoiser(schedule: NoiseSchedule | None = None, prediction_type: str = "x0"
                  ) -> Callable[[torch.Tensor, torch.Tensor, torch.Tensor | None], torch.Tensor]:
    """``Linear(3 + 1, 16) -> tanh -> Linear(16, 3)`` on ``[x, t / T]``, weights from a fixed seed.

    For eps-prediction the output is ``sqrt(1 - ab) x + sqrt(ab) * mlp``: the exact eps of N(0, I) data plus
    a perturbation that stays bounded in x0 space (a raw random eps would be amplified by ``1 / sqrt(ab)``,
    ~800 at the top cosine level, and the pinned numbers would be dominated by the first step).
    """
    gen = torch.Generator().manual_seed(0)
    w1 = torch.randn(4, 16, generator=gen, dtype=torch.float64) * 0.5
    b1 = torch.randn(16, generator=gen, dtype=torch.float64) * 0.1
    w2 = torch.randn(16, 3, generator=gen, dtype=torch.float64) * 0.5
    first, last = nn.Linear(4, 16).double(), nn.Linear(16, 3).double()
    with torch.no_grad():
        first.weight.copy_(w1.T)
        first.bias.copy_(b1)
        last.weight.copy_(w2.T)
        last.bias.zero_()
    net = nn.Sequential(first, nn.Tanh(), last).requires_grad_(False)
    abar = torch.ones(1) if schedule is None else torch.as_tensor(schedule.alphas_cumprod)

    def denoise(x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
        out = net(torch.cat([x, t[:, None] / T], dim=1))
        if prediction_type == "eps":
            ab = abar[t.long()][:, None]
            out = (1 - ab).sqrt() * x + ab.sqrt() * out
        return out

    return denoise


def _schedule(kind: str = "cosine") -> NoiseSchedule:
    return NoiseSchedule(num_train_steps=T, kind=kind)  # type: ignore[arg-type]


# name: a sampler (its schedule and prediction type define the denoiser's parameterisation)
CASES: dict[str, Callable[[], Sampler]] = {
    "ddpm_all": lambda: DDPMSampler(_schedule()),
    "ddpm_8_linear": lambda: DDPMSampler(_schedule("linear"), 8),
    "ddim_10": lambda: DDIMSampler(_schedule(), 10),
    "ddim_10_eta05_vp": lambda: DDIMSampler(_schedule("vp"), 10, eta=0.5),
    "ddim_10_x0_clip": lambda: DDIMSampler(_schedule(), 10, prediction_type="x0", clip_sample=1.0),
    "dpm2_10": lambda: DPMSolverPPSampler(_schedule(), 10, order=2),
    "dpm3_10": lambda: DPMSolverPPSampler(_schedule(), 10, order=3),
    "dpm2_20_logsnr_linear": lambda: DPMSolverPPSampler(_schedule("linear"), 20, order=2, spacing="logsnr"),
    "dpm3_20_logsnr_v": lambda: DPMSolverPPSampler(_schedule("linear"), 20, order=3, spacing="logsnr",
                                                   prediction_type="v"),
    "consistency_3": lambda: ConsistencySampler([80.0, 2.0, 0.5]),
}


def run_case(name: str, seed: int = 1234) -> torch.Tensor:
    sampler = CASES[name]()
    schedule = getattr(sampler, "schedule", None)
    denoiser = tiny_denoiser(schedule, getattr(sampler, "prediction_type", "x0"))
    return sample_loop(denoiser, sampler, SHAPE, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


# name: (first 6 values of the flattened sample, sum of all 12 values)
GOLDEN: dict[str, tuple[list[float], float]] = {
    "ddpm_all": ([-0.3459312837, -3.9054123228, 1.3777114262, -0.5326616485, 2.3643839034, 0.7856829008], -4.4223586884),
    "ddpm_8_linear": ([0.4195362797, 1.1030572421, -0.3895817497, -0.0807548338, 1.0855780205, -0.7245071769], -4.1657606131),
    "ddim_10": ([-0.2520893115, 1.8537623576, 0.1227405066, -0.2328443041, -2.5895132421, 0.6216352805], 1.4366833257),
    "ddim_10_eta05_vp": ([0.0828284643, 0.9336244837, 0.3622598312, -0.0655878998, -0.9083693577, -0.1719523019], -4.8639657685),
    "ddim_10_x0_clip": ([0.2728016407, 0.6077826453, 1.0, -0.2211868984, 0.3486124274, 0.2299454842], 5.1577673348),
    "dpm2_10": ([-0.2461046113, 2.0910348163, 0.0388788193, -0.2220523439, -2.8286285534, 0.663283782], 1.8530776440),
    "dpm3_10": ([-0.2451305792, 2.1155797876, 0.0379348434, -0.2218249716, -2.8539973619, 0.665472515], 1.8990890975),
    "dpm2_20_logsnr_linear": ([-0.2151972875, 2.2671359622, -0.02753236, -0.1782662663, -2.8341268819, 0.5844467786], 2.2130796056),
    "dpm3_20_logsnr_v": ([-0.2215049988, 2.2959782239, -0.0221026462, -0.1827920409, -2.8548044671, 0.5796574745], 2.2162980265),
    "consistency_3": ([0.6518027936, -0.257719299, 1.4514676317, -1.1311594062, 0.7848416063, 0.1048011324], 4.9060614766),
}


@pytest.mark.parametrize("name", CASES)
def test_golden_sampling_loop(name: str) -> None:
    first6, total = GOLDEN[name]
    x = run_case(name)
    assert x.shape == SHAPE and x.dtype == torch.float64
    torch.testing.assert_close(x.flatten()[:6], torch.tensor(first6, dtype=torch.float64), rtol=1e-7, atol=1e-8)
    assert float(x.sum()) == pytest.approx(total, rel=1e-7, abs=1e-8)


def test_golden_loop_is_deterministic_and_seed_dependent() -> None:
    a, b = run_case("ddpm_8_linear"), run_case("ddpm_8_linear")
    assert torch.equal(a, b)
    assert not torch.allclose(a, run_case("ddpm_8_linear", seed=1235))


def print_table() -> None:  # pragma: no cover - maintenance helper
    for name in CASES:
        flat = run_case(name).flatten()
        print(f'    "{name}": ({[round(v, 10) for v in flat[:6].tolist()]}, {float(flat.sum()):.10f}),')
