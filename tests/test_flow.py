"""Conditional flow matching (diffagents.diffusion.flow): exact-velocity sampling of a Gaussian mixture, solver
order, a trained flow's mode coverage, and bad input."""

from __future__ import annotations

import pytest
import torch
from test_samplers import MIX, GaussianMixture, check_reproduces, mixture_error

from diffagents.diffusion.flow import FlowMatching

F64 = torch.float64


def exact_velocity(mix: GaussianMixture):  # type: ignore[no-untyped-def]
    """The marginal velocity ``E[x_1 - x_0 | x_t]`` of the linear interpolant with ``x_0 ~ N(0, I)`` and ``x_1`` the
    mixture: per mode ``x_t ~ N(t mu, ((1 - t)^2 + t^2 s^2) I)`` and ``v_k = mu + (t s^2 - (1 - t)) (x - t mu) /
    var``, weighted by the modes' posterior responsibilities."""

    def v(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        tt = float(t[0])
        a, b = 1.0 - tt, tt
        var = a * a + b * b * mix.s**2  # (K,)
        centre = b * mix.mu  # (K, D)
        diff = x[:, None, :] - centre[None]  # (N, K, D)
        logp = torch.log(mix.w) - 0.5 * x.shape[1] * torch.log(var) - 0.5 * (diff**2).sum(-1) / var
        r = torch.softmax(logp, dim=1)  # (N, K)
        vk = mix.mu[None] + ((b * mix.s**2 - a) / var)[None, :, None] * diff  # (N, K, D)
        return (r[:, :, None] * vk).sum(1)

    return v


def _sample(method: str, steps: int, n: int = 40_000, seed: int = 0) -> torch.Tensor:
    noise = torch.randn(n, 2, dtype=F64, generator=torch.Generator().manual_seed(seed))
    return FlowMatching.sample(exact_velocity(MIX), noise, steps, method)


def test_euler_with_many_steps_and_heun_with_few_reproduce_the_mixture() -> None:
    assert not check_reproduces(MIX, _sample("euler", 400), rel_tol=0.05, weight_tol=0.01)
    assert not check_reproduces(MIX, _sample("heun", 25), rel_tol=0.05, weight_tol=0.01)


def test_the_check_rejects_too_few_euler_steps() -> None:
    """Negative control: 3 Euler steps do not reproduce the mixture (so the check above can fail)."""
    assert check_reproduces(MIX, _sample("euler", 3), rel_tol=0.05, weight_tol=0.01)


@pytest.mark.parametrize("steps", [4, 8, 16])
def test_heun_beats_euler_at_equal_steps(steps: int) -> None:
    assert mixture_error(MIX, _sample("heun", steps)) < mixture_error(MIX, _sample("euler", steps))


def test_solvers_converge_at_their_order() -> None:
    """Against a 2000-step Heun reference from the same noise: halving the step halves Euler's error (order 1) and
    quarters Heun's (order 2), within a factor of 1.5."""
    noise = torch.randn(2000, 2, dtype=F64, generator=torch.Generator().manual_seed(3))
    v = exact_velocity(GaussianMixture(mu=[[-1.0, 0.0], [1.0, 0.5]], s=[0.6, 0.7], w=[0.5, 0.5]))
    ref = FlowMatching.sample(v, noise, 2000, "heun")

    def err(method: str, n: int) -> float:
        return float((FlowMatching.sample(v, noise, n, method) - ref).norm(dim=1).mean())

    assert 2 / 1.5 < err("euler", 20) / err("euler", 40) < 2 * 1.5
    assert 4 / 1.5 < err("heun", 20) / err("heun", 40) < 4 * 1.5


def test_loss_target_is_the_conditional_velocity() -> None:
    """The regression target is ``x_1 - x_0`` at ``x_t = (1 - t) x_0 + t x_1`` with the network fed ``1000 t``: a
    network that returns exactly that target (for the same noise and times) has zero loss."""
    flow = FlowMatching()
    x1 = MIX.sample(512, torch.Generator().manual_seed(0)).float()
    g = torch.Generator().manual_seed(1)
    x0 = torch.randn(x1.shape, generator=g)
    t = flow.sample_time(x1.shape[0], x1.device, g)
    xt = flow.interpolate(x0, x1, t)
    oracle = {"xt": xt, "target": x1 - x0}

    def net(x: torch.Tensor, t_net: torch.Tensor) -> torch.Tensor:
        assert torch.equal(x, oracle["xt"]) and torch.allclose(t_net, t * 1000)
        return oracle["target"]

    loss, stats = flow.loss(net, x1, generator=torch.Generator().manual_seed(1))
    assert float(loss) == 0.0 and float(stats["flow_loss"]) == 0.0


def test_logit_normal_times_concentrate_in_the_middle() -> None:
    t = FlowMatching("logit_normal").sample_time(20_000, torch.device("cpu"), torch.Generator().manual_seed(0))
    u = FlowMatching("uniform").sample_time(20_000, torch.device("cpu"), torch.Generator().manual_seed(0))
    assert 0 < float(t.min()) and float(t.max()) < 1
    mid = lambda x: float(((x > 0.25) & (x < 0.75)).float().mean())  # noqa: E731
    assert mid(t) > mid(u) + 0.1  # N(0, 1) logits: 69 % in the middle half vs 50 %


def test_a_trained_flow_recovers_four_modes() -> None:
    from diffagents.nn import MLPDenoiser

    torch.manual_seed(0)
    modes = torch.tensor([[1.5, 1.5], [-1.5, 1.5], [-1.5, -1.5], [1.5, -1.5]])
    net = MLPDenoiser(x_dim=2, hidden=(64, 64, 64), time_dim=16)
    flow = FlowMatching()
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    g = torch.Generator().manual_seed(0)
    for _ in range(2000):
        x1 = modes[torch.randint(0, 4, (256,), generator=g)] + 0.15 * torch.randn(256, 2, generator=g)
        loss, _ = flow.loss(net, x1, generator=g)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.inference_mode():
        noise = torch.randn(4000, 2, generator=torch.Generator().manual_seed(1))
        for method, steps in (("euler", 20), ("heun", 10)):
            x = FlowMatching.sample(flow.velocity_of(net), noise, steps, method)
            nearest = torch.cdist(x, modes).argmin(1)
            share = torch.bincount(nearest, minlength=4).float() / len(x)
            near = float((torch.cdist(x, modes).amin(1) < 0.6).float().mean())
            assert bool((share > 0.15).all() and (share < 0.35).all()), (method, share)
            assert near > 0.9, (method, near)


@pytest.mark.parametrize("kwargs,field", [({"time_sampling": "beta"}, "time_sampling"),
                                          ({"logit_std": 0.0}, "logit_std"), ({"time_scale": -1.0}, "time_scale")])
def test_bad_settings_name_the_field(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        FlowMatching(**kwargs)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="steps"):
        FlowMatching.sample(lambda x, t: x, torch.zeros(2, 2), 0)
    with pytest.raises(ValueError, match="method"):
        FlowMatching.sample(lambda x, t: x, torch.zeros(2, 2), 2, "rk45")


def test_flow_bc_imitates_the_behaviour_policy(tmp_path_factory: pytest.TempPathFactory) -> None:
    """FlowBC on the damping controller's data (``a = -2 thetadot + N(0, 0.5)``): its deterministic actions on the
    dataset's states sit near the controller's mean action, far closer than the best constant action."""
    import os

    import gymnasium as gym
    import numpy as np
    from agent_fixtures import make_pendulum_dataset

    from diffagents import FlowBC

    old = os.environ.get("MINARI_DATASETS_PATH")
    ds = make_pendulum_dataset(tmp_path_factory.mktemp("minari"), episodes=10)
    try:
        agent = FlowBC(env=gym.make("Pendulum-v1"), dataset=ds, seed=0, hidden=(64, 64), batch_size=64,
                       learning_rate=1e-3).learn(1500)
    finally:
        if old is None:
            os.environ.pop("MINARI_DATASETS_PATH", None)
        else:
            os.environ["MINARI_DATASETS_PATH"] = old
    obs = np.concatenate([ep.observations[:-1] for ep in ds.iterate_episodes()])
    target = np.clip(-2.0 * obs[:, 2:3], -2, 2)
    pred, _ = agent.predict(obs, deterministic=True)
    err = float(np.abs(pred - target).mean())
    baseline = float(np.abs(np.median(target) - target).mean())
    assert err < 0.5 * baseline, (err, baseline)
