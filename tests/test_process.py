"""The forward process, training targets and loss of :class:`GaussianDiffusion`, and the noise schedules."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from diffagents.diffusion import (
    DDIMSampler,
    GaussianDiffusion,
    NoiseSchedule,
    cosine_betas,
    linear_betas,
    split_prediction,
    vp_betas,
)

torch.set_num_threads(1)
PREDICTIONS = ("eps", "x0", "v")
KINDS = ("linear", "cosine", "vp")


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("T", [5, 20, 1000])
def test_schedules_are_valid(kind: str, T: int) -> None:
    sch = NoiseSchedule(num_train_steps=T, kind=kind)  # type: ignore[arg-type]
    assert sch.betas.shape == (T,) and sch.alphas_cumprod.dtype == np.float64
    assert ((sch.betas > 0) & (sch.betas < 1)).all()
    assert (np.diff(sch.alphas_cumprod) < 0).all()
    np.testing.assert_allclose(sch.alphas_cumprod, np.cumprod(1 - sch.betas))
    assert sch.alpha_bar(-1) == 1.0 and sch.alpha_bar(T - 1) == pytest.approx(sch.alphas_cumprod[-1])
    assert sch.alphas_cumprod[-1] < 0.01  # close to pure noise at the top level
    assert sch.to_dict() == {"num_train_steps": T, "kind": kind}
    tensors = sch.tensors()
    torch.testing.assert_close(tensors["sqrt_ab"] ** 2 + tensors["sqrt_1mab"] ** 2, torch.ones(T))


def test_schedule_formulas() -> None:
    np.testing.assert_allclose(linear_betas(1000)[[0, -1]], [1e-4, 2e-2])
    np.testing.assert_allclose(linear_betas(100)[[0, -1]], [1e-3, 0.2])  # endpoints rescaled by 1000 / T
    f = np.cos((np.arange(11) / 10 + 0.008) / 1.008 * np.pi / 2) ** 2
    np.testing.assert_allclose(np.cumprod(1 - cosine_betas(10))[:-1], (f / f[0])[1:-1])  # last beta is clipped
    t = np.arange(1, 6)
    np.testing.assert_allclose(vp_betas(5), 1 - np.exp(-0.1 / 5 - 0.5 * 9.9 * (2 * t - 1) / 25))


@pytest.mark.parametrize("bad", [{"num_train_steps": 0}, {"num_train_steps": -3}, {"num_train_steps": 2.5},
                                 {"num_train_steps": 10, "kind": "sigmoid"}])
def test_schedule_rejects_bad_arguments(bad: dict[str, object]) -> None:
    field = "kind" if "kind" in bad else "num_train_steps"
    with pytest.raises(ValueError, match=field):
        NoiseSchedule(**bad)  # type: ignore[arg-type]


def test_bad_prediction_type_everywhere() -> None:
    sch = NoiseSchedule(num_train_steps=10)
    with pytest.raises(ValueError, match="prediction_type"):
        GaussianDiffusion(sch, "score")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="prediction_type"):
        split_prediction(torch.zeros(2), torch.zeros(2), 0.5, 0.5, "score")
    with pytest.raises(ValueError, match="prediction_type"):
        DDIMSampler(sch, prediction_type="score")
    with pytest.raises(ValueError, match="num_inference_steps"):
        DDIMSampler(sch, 11)


@pytest.mark.parametrize("t_level", [0, 17, 49])
def test_q_sample_statistics(t_level: int) -> None:
    diffusion = GaussianDiffusion(NoiseSchedule(num_train_steps=50, kind="cosine"))
    n = 200_000
    g = torch.Generator().manual_seed(0)
    x0 = torch.tensor([1.5, -0.5, 0.0]).expand(n, 3)
    t = torch.full((n,), t_level)
    x_t = diffusion.q_sample(x0, t, torch.randn(n, 3, generator=g))
    ab = diffusion.schedule.alpha_bar(t_level)
    se = math.sqrt(1 - ab) / math.sqrt(n)
    torch.testing.assert_close(x_t.mean(0), math.sqrt(ab) * x0[0], atol=5 * se, rtol=0)
    torch.testing.assert_close(x_t.std(0), torch.full((3,), math.sqrt(1 - ab)), atol=5 * se, rtol=0)


@pytest.mark.parametrize("prediction_type", PREDICTIONS)
def test_targets_are_inverted_by_split_prediction(prediction_type: str) -> None:
    diffusion = GaussianDiffusion(NoiseSchedule(num_train_steps=100, kind="linear"), prediction_type)  # type: ignore[arg-type]
    g = torch.Generator().manual_seed(0)
    x0, noise = torch.randn(64, 4, 3, generator=g), torch.randn(64, 4, 3, generator=g)
    t = torch.randint(0, 100, (64,), generator=g)
    x_t = diffusion.q_sample(x0, t, noise)
    target = diffusion.target(x0, noise, t)
    a, s = diffusion.sqrt_ab[t].view(-1, 1, 1), diffusion.sqrt_1mab[t].view(-1, 1, 1)
    x0_hat, eps_hat = split_prediction(target, x_t, a, s, prediction_type)
    torch.testing.assert_close(x0_hat, x0, atol=2e-4, rtol=1e-4)
    torch.testing.assert_close(eps_hat, noise, atol=2e-4, rtol=1e-4)
    torch.testing.assert_close(diffusion.predict_x0(target, x_t, t), x0_hat)


@settings(max_examples=60, deadline=None)
@given(ab=st.floats(1e-4, 1 - 1e-4), pred=st.sampled_from(PREDICTIONS),
       x0=st.floats(-3, 3), eps=st.floats(-3, 3))
def test_split_prediction_round_trip(ab: float, pred: str, x0: float, eps: float) -> None:
    """Any level, any point: encode (x0, eps) as the target, decode it back (float64)."""
    a, s = math.sqrt(ab), math.sqrt(1 - ab)
    x_t = torch.tensor([a * x0 + s * eps], dtype=torch.float64)
    target = {"eps": eps, "x0": x0, "v": a * eps - s * x0}[pred]
    x0_hat, eps_hat = split_prediction(torch.tensor([target], dtype=torch.float64), x_t, a, s, pred)
    assert float(x0_hat) == pytest.approx(x0, abs=1e-9 / a)
    assert float(eps_hat) == pytest.approx(eps, abs=1e-9 / s)


class Oracle(torch.nn.Module):
    """Knows x0, so it can output the exact target from ``(x_t, t)``; records what it was called with."""

    def __init__(self, diffusion: GaussianDiffusion, x0: torch.Tensor, zero: bool = False) -> None:
        super().__init__()
        self.diffusion, self.x0, self.zero = diffusion, x0, zero
        self.calls: list[tuple[torch.Tensor, torch.Tensor]] = []

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        self.calls.append((x_t, t))
        if self.zero:
            return torch.zeros_like(x_t)
        level = t.long()
        a = self.diffusion.sqrt_ab[level].view(-1, *[1] * (x_t.ndim - 1))
        s = self.diffusion.sqrt_1mab[level].view(-1, *[1] * (x_t.ndim - 1))
        noise = (x_t - a * self.x0) / s
        return self.diffusion.target(self.x0, noise, level)


@pytest.mark.parametrize("prediction_type", PREDICTIONS)
def test_loss_of_the_exact_denoiser_is_zero(prediction_type: str) -> None:
    diffusion = GaussianDiffusion(NoiseSchedule(num_train_steps=20, kind="cosine"), prediction_type)  # type: ignore[arg-type]
    x0 = torch.randn(32, 6, dtype=torch.float64)
    loss, stats = diffusion.loss(Oracle(diffusion.double(), x0), x0, generator=torch.Generator().manual_seed(0))
    assert float(loss) < 1e-20 and float(stats["diffusion_loss"]) == float(loss)
    oracle = Oracle(diffusion, x0, zero=True)
    loss, _ = diffusion.loss(oracle, x0, generator=torch.Generator().manual_seed(0))
    (x_t, t), = oracle.calls
    assert t.dtype == torch.float64 and t.shape == (32,) and float(t.min()) >= 0 and float(t.max()) <= 19
    assert float(loss) > 0.1


def test_loss_weights_and_mask() -> None:
    diffusion = GaussianDiffusion(NoiseSchedule(num_train_steps=20), "x0")
    x0 = torch.randn(8, 5, 3)
    oracle = Oracle(diffusion, x0, zero=True)  # predicts 0, so the error is x0 ** 2 (x0 target)
    weights = torch.ones(5, 3)
    weights[0] = 10.0
    loss, _ = diffusion.loss(oracle, x0, weights=weights)
    torch.testing.assert_close(loss, (x0**2 * weights).mean())
    mask = torch.zeros(8, 5, 1)
    mask[:, :2] = 1.0  # padding after the second step
    loss, _ = diffusion.loss(oracle, x0, mask=mask)
    torch.testing.assert_close(loss, (x0[:, :2] ** 2).mean())
    loss, _ = diffusion.loss(oracle, x0, weights=weights, mask=mask)
    torch.testing.assert_close(loss, (x0[:, :2] ** 2 * weights[:2]).sum() / (8 * 2 * 3))
    loss, _ = diffusion.loss(oracle, x0, mask=torch.zeros(8, 5, 1))
    assert float(loss) == 0.0
    with pytest.raises(ValueError, match="mask"):  # (B, H) would silently align H with the feature axis
        diffusion.loss(oracle, x0, mask=torch.ones(8, 5))


def test_loss_inpaint_and_seeding() -> None:
    diffusion = GaussianDiffusion(NoiseSchedule(num_train_steps=20), "x0")
    x0 = torch.randn(4, 6, 3)

    def inpaint(x: torch.Tensor) -> torch.Tensor:
        x = x.clone()
        x[:, 0] = x0[:, 0]
        return x

    oracle = Oracle(diffusion, x0, zero=True)
    loss, _ = diffusion.loss(oracle, x0, inpaint=inpaint)
    (x_t, _), = oracle.calls
    assert torch.equal(x_t[:, 0], x0[:, 0])
    # x0 predictions are inpainted too, so the fixed entries add no error
    torch.testing.assert_close(loss, (x0[:, 1:] ** 2).sum() / x0.numel())
    a = diffusion.loss(Oracle(diffusion, x0, zero=True), x0, generator=torch.Generator().manual_seed(3))[0]
    b = diffusion.loss(Oracle(diffusion, x0, zero=True), x0, generator=torch.Generator().manual_seed(3))[0]
    assert torch.equal(a, b)


def test_loss_trains_a_parameter_to_the_mean() -> None:
    """x0-prediction with a constant output: the loss minimiser is the data mean (a gradient sanity check)."""
    diffusion = GaussianDiffusion(NoiseSchedule(num_train_steps=10), "x0")
    c = torch.zeros(2, requires_grad=True)
    opt = torch.optim.SGD([c], lr=0.2)
    g = torch.Generator().manual_seed(0)
    for _ in range(100):
        x0 = torch.randn(128, 2, generator=g) * 0.1 + torch.tensor([1.0, -2.0])
        loss, _ = diffusion.loss(lambda x, t, cond: c.expand_as(x), x0, generator=g)
        opt.zero_grad()
        loss.backward()
        opt.step()
    torch.testing.assert_close(c.detach(), torch.tensor([1.0, -2.0]), atol=0.05, rtol=0)


def test_process_moves_with_the_module() -> None:
    diffusion = GaussianDiffusion(NoiseSchedule(num_train_steps=10)).double()
    assert diffusion.sqrt_ab.dtype == torch.float64 and diffusion.num_train_steps == 10
    assert len(diffusion.state_dict()) == 0  # no trainable or persistent state
