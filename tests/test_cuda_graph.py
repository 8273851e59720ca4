"""CUDA-graph captured sampling (``cuda_graph=True``): eager fallback on CPU, same actions, config persistence;
graph-vs-eager equality, shape fallback and generator handling on CUDA."""

from __future__ import annotations

import os
import warnings
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch
from agent_fixtures import make_pendulum_dataset

from diffagents import Diffuser, DiffusionQL
from diffagents.agents.policies.diffusion_ql import DiffusionQLConfig
from diffagents.core.config import AgentConfig
from diffagents.cuda_graph import GraphedCall, keep_alive, maybe_graphed

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
AGENTS: list[tuple[type[Any], dict[str, Any]]] = [
    (DiffusionQL, dict(hidden=(16, 16), critic_hidden=(16, 16), batch_size=8, n_candidates=4, ema_start=1)),
    (Diffuser, dict(horizon=8, dim=32, dim_mults=(1, 2), n_diffusion_steps=4, batch_size=4, n_samples=2, ema_start=1)),
]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Any:
    old = os.environ.get("MINARI_DATASETS_PATH")
    ds = make_pendulum_dataset(tmp_path_factory.mktemp("minari"), episodes=2)
    yield ds
    if old is None:
        os.environ.pop("MINARI_DATASETS_PATH", None)
    else:
        os.environ["MINARI_DATASETS_PATH"] = old


def noisy(x: torch.Tensor, *, generator: torch.Generator | None = None) -> torch.Tensor:
    return torch.sin(2.0 * x) + torch.randn(x.shape, device=x.device, dtype=x.dtype, generator=generator)


def pure(x: torch.Tensor, y: torch.Tensor, *, generator: torch.Generator | None = None) -> tuple[torch.Tensor, ...]:
    return (x @ y).relu(), x.sum(1)


# ---------------------------------------------------------------------------------------------- CPU
def test_graphed_call_runs_eagerly_on_cpu() -> None:
    call = GraphedCall("t")
    x = torch.randn(3, 4)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the CPU fallback is silent
        out = call(noisy, x, generator=torch.Generator().manual_seed(1))
    assert torch.equal(out, noisy(x, generator=torch.Generator().manual_seed(1)))
    assert call.counts == {"captures": 0, "replays": 0, "eager": 1} and not call.graphs
    a, b = call(pure, x, torch.randn(4, 2))
    assert a.shape == (3, 2) and b.shape == (3,)
    with pytest.raises(ValueError, match="max_graphs"):
        GraphedCall(max_graphs=-1)


def test_maybe_graphed_is_a_plain_call_when_off_or_on_cpu() -> None:
    class Owner:
        pass

    owner, x = Owner(), torch.ones(2)
    for enabled in (False, True):
        assert torch.equal(maybe_graphed(owner, enabled, "f", pure, x[None], x[:, None])[0], torch.full((1, 1), 2.0))
    assert "_graphed_calls" not in owner.__dict__
    keep_alive(x)  # no capture in progress: a no-op


@pytest.mark.parametrize("cls,kwargs", AGENTS, ids=lambda v: getattr(v, "__name__", ""))
def test_cuda_graph_option_gives_identical_actions_on_cpu(cls: type[Any], kwargs: dict[str, Any],
                                                          dataset: Any) -> None:
    obs = np.random.default_rng(0).normal(size=(3, 3)).astype(np.float32)
    acts = {}
    for flag in (False, True):
        agent = cls(env=gym.make("Pendulum-v1"), dataset=dataset, seed=0, cuda_graph=flag, **kwargs).learn(2)
        assert agent.config.cuda_graph is flag
        det, _ = agent.predict(obs, deterministic=True)
        torch.manual_seed(5)
        sto, _ = agent.predict(obs, deterministic=False)
        acts[flag] = (det, sto)
    np.testing.assert_array_equal(acts[False][0], acts[True][0])
    np.testing.assert_array_equal(acts[False][1], acts[True][1])


def test_cuda_graph_field_round_trips_and_old_configs_load(dataset: Any, tmp_path: Any) -> None:
    agent = DiffusionQL(env=gym.make("Pendulum-v1"), dataset=dataset, seed=0, cuda_graph=True, **AGENTS[0][1])
    agent.save(tmp_path / "m.zip")
    assert DiffusionQL.load(tmp_path / "m.zip").config.cuda_graph is True
    old = DiffusionQLConfig().to_dict()
    del old["cuda_graph"]  # a checkpoint written before the field existed
    assert DiffusionQLConfig.from_dict(old).cuda_graph is False
    assert AgentConfig.from_dict({}).cuda_graph is False


# ---------------------------------------------------------------------------------------------- CUDA
@cuda
def test_graphed_equals_eager_for_a_pure_function() -> None:
    call = GraphedCall("t")
    x, y = torch.randn(8, 5, device="cuda"), torch.randn(5, 3, device="cuda")
    for _ in range(3):
        got = call(pure, x, y)
        want = pure(x, y)
        assert all(torch.allclose(g, w) for g, w in zip(got, want))
        x.add_(1.0)  # new values, same signature: replayed
    assert call.counts["captures"] == 1 and call.counts["replays"] == 3 and call.counts["eager"] == 0
    assert got[0].data_ptr() != call(pure, x, y)[0].data_ptr()  # fresh output tensors each call


@cuda
def test_new_shapes_fall_back_once_the_cache_is_full() -> None:
    call = GraphedCall("t", max_graphs=1)
    a, b = torch.randn(4, 2, device="cuda"), torch.randn(6, 2, device="cuda")
    call(noisy, a)
    with pytest.warns(RuntimeWarning, match="new shapes run eagerly"):
        out = call(noisy, b)
    assert out.shape == (6, 2)
    call(noisy, a)
    assert call.counts == {"captures": 1, "replays": 2, "eager": 1}


@cuda
def test_capture_errors_warn_once_and_run_eagerly() -> None:
    def host_sync(x: torch.Tensor, *, generator: torch.Generator | None = None) -> torch.Tensor:
        return x * float(x.sum().item() > 0)

    call, x = GraphedCall("t"), torch.ones(3, device="cuda")
    with pytest.warns(RuntimeWarning, match="capture failed"):
        assert torch.equal(call(host_sync, x), x)
    assert torch.equal(call(host_sync, x), x) and len(call.failed) == 1 and not call.graphs


@cuda
def test_generator_noise_matches_eager_and_advances_the_caller_generator() -> None:
    if not hasattr(torch.cuda.CUDAGraph, "register_generator_state"):
        pytest.skip("this PyTorch cannot register generators with graphs")
    call, x = GraphedCall("t"), torch.zeros(16, device="cuda")
    for _ in range(2):  # capture, then replay
        g_graph = torch.Generator(device="cuda").manual_seed(3)
        g_eager = torch.Generator(device="cuda").manual_seed(3)
        torch.testing.assert_close(call(noisy, x, generator=g_graph), noisy(x, generator=g_eager))
        torch.testing.assert_close(torch.randn(4, device="cuda", generator=g_graph),
                                   torch.randn(4, device="cuda", generator=g_eager))
    a, b = call(noisy, x), call(noisy, x)  # default generator: fresh noise on every replay
    assert not torch.equal(a, b)


@cuda
def test_agents_act_the_same_with_and_without_graphs_on_cuda(dataset: Any) -> None:
    obs = np.random.default_rng(0).normal(size=(2, 3)).astype(np.float32)
    for cls, kwargs in AGENTS:
        eager = cls(env=gym.make("Pendulum-v1"), dataset=dataset, seed=0, device="cuda", **kwargs).learn(2)
        graphed = cls(env=gym.make("Pendulum-v1"), dataset=dataset, seed=0, device="cuda", cuda_graph=True,
                      **kwargs).learn(2)
        graphed.policy.load_state_dict(eager.policy.state_dict())
        assert eager.ema is not None and graphed.ema is not None
        graphed.ema.model.load_state_dict(eager.ema.model.state_dict())
        want, _ = eager.predict(obs, deterministic=True)
        for _ in range(2):
            got, _ = graphed.predict(obs, deterministic=True)
            np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
        assert graphed._graphed_calls, f"{cls.__name__}: no graph was used"
