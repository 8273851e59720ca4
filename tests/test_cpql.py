"""CPQL: the consistency parameterisation, one-/multi-step sampling, the offline/online factory, online training
in SB3's loop with a VecEnv, and pickle-free save/load of the online variant."""

from __future__ import annotations

import io
import pickle
import zipfile
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch
from agent_fixtures import make_pendulum_dataset
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm

from diffagents.agents.policies.cpql import CPQL, CPQLConfig, OfflineCPQL, OnlineCPQL, cpql_train_step
from diffagents.diffusion import karras_sigmas
from diffagents.nn import MLPDenoiser
from diffagents.persistence import CheckpointError
from diffagents.roles.consistency_policy import ConsistencyActionPolicy, ct_discretization, karras_pair_levels

SMALL = dict(hidden=(32, 32), critic_hidden=(32, 32), batch_size=32, n_candidates=4, ema_start=10, n_scales=10)
ONLINE = dict(SMALL, learning_starts=50, buffer_size=1000)


def _actor(steps: int = 1) -> ConsistencyActionPolicy:
    torch.manual_seed(0)
    return ConsistencyActionPolicy(MLPDenoiser(2, 3, hidden=(16,)), 2, sampler_steps=steps)


def test_boundary_condition_is_exact() -> None:
    actor = _actor()
    x = torch.randn(64, 2) * 3.0  # also outside [-1, 1]: f is not clipped
    obs = torch.randn(64, 3)
    out = actor.denoise(x, torch.full((64,), actor.sigma_min), obs)
    assert torch.equal(out, x)
    far = actor.denoise(x, torch.full((64,), actor.sigma_max), obs)
    assert not torch.allclose(far, x)


def _count_calls(actor: ConsistencyActionPolicy) -> list[int]:
    calls = [0]
    actor.denoiser.register_forward_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    return calls


@pytest.mark.parametrize("steps", [1, 3])
def test_sampling_shape_range_and_network_calls(steps: int) -> None:
    actor = _actor(steps)
    calls = _count_calls(actor)
    a = actor.sample(torch.randn(50, 3) * 5)
    assert a.shape == (50, 2) and a.abs().max() <= 1.0
    assert calls[0] == steps  # one network evaluation per consistency step
    assert actor.sampler.timesteps[0] == pytest.approx(80.0)
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    obs = torch.randn(4, 3)
    torch.testing.assert_close(actor.sample(obs, generator=g1), actor.sample(obs, generator=g2))


def test_adjacent_karras_levels_and_ct_schedule() -> None:
    n = 12
    t, t2 = karras_pair_levels(n, torch.arange(n - 1), 0.002, 80.0, 7.0)
    grid = torch.tensor(karras_sigmas(n), dtype=torch.float32)
    torch.testing.assert_close(t, grid[:-1])
    torch.testing.assert_close(t2, grid[1:])
    assert ct_discretization(0.0, 2, 150) == 2 and ct_discretization(1.0, 2, 150) == 151
    assert 2 < ct_discretization(0.5, 2, 150) < 151


def test_consistency_loss_matches_the_formula() -> None:
    """L = mean_b lambda(s_i) ||f(a + s_i z, s_i) - f_target(a + s_{i+1} z, s_{i+1})||^2, lambda = 1/s^2 + 4."""
    actor, target = _actor(), _actor()
    with torch.no_grad():
        for p in target.parameters():
            p.add_(0.1)
    actions, obs, n = torch.rand(32, 2) * 2 - 1, torch.randn(32, 3), 10
    loss, stats = actor.consistency_loss(actions, obs, target, n, generator=torch.Generator().manual_seed(7))
    g = torch.Generator().manual_seed(7)
    idx = torch.randint(0, n - 1, (32,), generator=g)
    z = torch.randn(actions.shape, generator=g)
    grid = torch.tensor(karras_sigmas(n), dtype=torch.float32)
    s, s2 = grid[idx], grid[idx + 1]
    with torch.no_grad():
        f = actor.denoise(actions + s[:, None] * z, s, obs)
        f2 = target.denoise(actions + s2[:, None] * z, s2, obs)
    lam = 1.0 / s**2 + 1.0 / 0.5**2
    torch.testing.assert_close(loss.detach(), (lam * ((f - f2) ** 2).mean(1)).mean(), rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(stats["recon_loss"].detach(), (lam * ((f - actions) ** 2).mean(1)).mean(),
                               rtol=1e-4, atol=1e-6)
    loss.backward()  # gradients reach the online network only
    assert all(p.grad is not None for p in actor.parameters())
    assert all(p.grad is None for p in target.parameters())
    with pytest.raises(ValueError, match="n_scales"):
        actor.consistency_loss(actions, obs, target, 1)


@pytest.mark.parametrize("online,bc_loss,term", [(False, None, "recon_loss"), (True, None, "consistency_loss"),
                                                  (False, "consistency", "consistency_loss"), (True, "recon", "recon_loss")])
def test_bc_term_is_the_mode_default_or_the_chosen_one(online: bool, bc_loss: str | None, term: str,
                                                      tmp_path: Path) -> None:
    """Offline CPQL trains on the official code's reconstruction term by default, online on the consistency loss."""
    import dataclasses

    ds = make_pendulum_dataset(tmp_path, dataset_id="test/pendulum/cpql-bc-v0", episodes=2)
    agent = CPQL(env=gym.make("Pendulum-v1"), dataset=ds, **SMALL)
    config = dataclasses.replace(agent.config, bc_loss=bc_loss)
    g = torch.Generator().manual_seed(0)
    batch = {"obs": torch.randn(16, 3, generator=g), "action": torch.rand(16, 1, generator=g) * 2 - 1,
             "reward": torch.randn(16, generator=g), "next_obs": torch.randn(16, 3, generator=g),
             "terminated": torch.zeros(16)}
    stats = cpql_train_step(agent.actor, agent.ema, agent.nets["critic"], agent.nets["critic_target"],  # type: ignore[arg-type]
                            agent.updaters, batch, config, online=online, step=0, progress=0.0)
    other = "consistency_loss" if term == "recon_loss" else "recon_loss"
    assert stats["bc_loss"] == stats[term] and stats["bc_loss"] != stats[other]
    assert config.resolved_bc_loss(online) == term.removesuffix("_loss")


def test_factory_dispatch_and_mode_defaults(tmp_path: Path) -> None:
    ds = make_pendulum_dataset(tmp_path, dataset_id="test/pendulum/cpql-v0", episodes=2)
    off = CPQL(env=gym.make("Pendulum-v1"), dataset=ds, **SMALL)
    assert isinstance(off, OfflineCPQL) and isinstance(off, CPQL)
    with pytest.raises(TypeError, match="sampler_steps"):  # no diffusion sampler to swap on a consistency actor
        off.set_sampler("ddim", 5)
    on = CPQL(env=gym.make("Pendulum-v1"), **ONLINE)
    assert isinstance(on, OnlineCPQL) and isinstance(on, OffPolicyAlgorithm) and isinstance(on, CPQL)
    assert CPQLConfig().resolved(online=False) == (1.0, True, True)
    assert CPQLConfig().resolved(online=True) == (0.05, False, False)
    with pytest.raises(ValueError, match="env"):
        CPQL()
    with pytest.raises(ValueError, match="unknown"):
        CPQL(env=gym.make("Pendulum-v1"), not_a_field=1)
    off.save(tmp_path / "off.zip")
    assert isinstance(CPQL.load(tmp_path / "off.zip", env=gym.make("Pendulum-v1")), OfflineCPQL)
    with pytest.raises(CheckpointError, match="OfflineCPQL"):
        OnlineCPQL.load(tmp_path / "off.zip")


@pytest.fixture(scope="module")
def online() -> OnlineCPQL:
    venv = make_vec_env("Pendulum-v1", n_envs=2, seed=0)
    agent = CPQL(env=venv, seed=0, **ONLINE)
    return agent.learn(300)


def test_online_learns_in_sb3_loop_with_vecenv(online: OnlineCPQL) -> None:
    assert online.num_timesteps == 300 and online.n_envs == 2
    assert online._n_updates == (300 - 50) // 2  # one gradient step per VecEnv step once past learning_starts
    rb = online.replay_buffer
    assert rb is not None and rb.pos == 150
    assert np.abs(rb.actions[:150]).max() <= 1.0  # buffer actions are scaled to [-1, 1]
    assert online.policy.ema.num_updates > 0
    rets, lens = evaluate_policy(online, make_vec_env("Pendulum-v1", n_envs=2, env_kwargs={"max_episode_steps": 10}),
                                 n_eval_episodes=2, return_episode_rewards=True)
    assert lens == [10, 10]


class _Payload:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self) -> Any:
        return (Path.touch, (Path(self.marker),))


def test_online_save_load_round_trip_never_unpickles(online: OnlineCPQL, tmp_path: Path) -> None:
    obs = np.random.default_rng(0).normal(size=(5, 3)).astype(np.float32)
    before, _ = online.predict(obs, deterministic=True)
    np.testing.assert_array_equal(before, online.predict(obs, deterministic=True)[0])
    online.save(tmp_path / "on")
    loaded = CPQL.load(tmp_path / "on.zip", env=make_vec_env("Pendulum-v1", n_envs=2))
    assert isinstance(loaded, OnlineCPQL) and loaded.num_timesteps == 300
    np.testing.assert_array_equal(before, loaded.predict(obs, deterministic=True)[0])
    online.save(tmp_path / "half", exclude=["optimizers"], weights_dtype="float16")  # inference-only, half size
    half = CPQL.load(tmp_path / "half.zip", env=gym.make("Pendulum-v1"))
    for key, value in half.policy.actor.state_dict().items():
        torch.testing.assert_close(value, online.policy.actor.state_dict()[key].half().float(), rtol=0, atol=0)
    assert (tmp_path / "half.zip").stat().st_size < 0.6 * (tmp_path / "on.zip").stat().st_size
    loaded.learn(20, reset_num_timesteps=False)
    assert loaded.num_timesteps == 320
    with pytest.raises(CheckpointError, match="observation_space"):
        OnlineCPQL.load(tmp_path / "on.zip", env=gym.make("MountainCarContinuous-v0"))
    marker = tmp_path / "pwned"
    sb3 = tmp_path / "sb3.zip"
    with zipfile.ZipFile(sb3, "w") as zf:
        zf.writestr("data", pickle.dumps(_Payload(str(marker))))
        zf.writestr("policy.pth", b"")
    evil = tmp_path / "evil.zip"
    with zipfile.ZipFile(tmp_path / "on.zip") as src, zipfile.ZipFile(evil, "w") as dst:
        for item in src.namelist():
            payload = src.read(item)
            if item == "optimizers.pt":
                buf = io.BytesIO()
                torch.save({"x": _Payload(str(marker))}, buf)
                payload = buf.getvalue()
            dst.writestr(item, payload)
    for bad in (sb3, evil):
        for loader in (CPQL.load, OnlineCPQL.load):
            with pytest.raises(CheckpointError):
                loader(bad)
    with pytest.raises(NotImplementedError, match="pickle"):
        online.load_replay_buffer(tmp_path / "rb.pkl")
    assert not marker.exists()
