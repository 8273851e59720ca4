"""SynthER generator: fit/sample contract, a known distribution (with a negative control), persistence,
offline upsampling to Minari and the generator-backed Gymnasium env."""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from gymnasium import spaces

from diffagents import SynthER
from diffagents.agents.synthesis.synther import SynthERConfig, default_upsampled_id
from diffagents.persistence import CheckpointError

torch.set_num_threads(1)
TINY = dict(width=32, n_blocks=1, time_dim=16, batch_size=64, sampler_steps=4)



def toy_transitions(n: int, seed: int = 0) -> dict[str, np.ndarray]:
    """1-D state from two modes (+-2), uniform action, r = s + a, s' = s + 0.5 a, terminal iff a > 0.6."""
    rng = np.random.default_rng(seed)
    s = (rng.choice([-2.0, 2.0], size=n) + rng.normal(0, 0.3, n)).astype(np.float32)
    a = rng.uniform(-1, 1, n).astype(np.float32)
    return {"observations": s[:, None], "actions": a[:, None], "rewards": s + a,
            "next_observations": (s + 0.5 * a)[:, None], "terminations": a > 0.6}


def toy_spaces() -> tuple[spaces.Box, spaces.Box]:
    return spaces.Box(-np.inf, np.inf, (1,), np.float32), spaces.Box(-1.0, 1.0, (1,), np.float32)


def matches_toy(s: dict[str, np.ndarray], real: dict[str, np.ndarray]) -> tuple[bool, dict[str, float]]:
    """Marginals, the bimodal state and the (s, a) -> (r, s', terminal) relations all roughly right."""
    obs, act = s["observations"][:, 0], s["actions"][:, 0]
    stats = {
        "obs_mean_err": abs(obs.mean() - real["observations"].mean()),
        "obs_std_ratio": obs.std() / real["observations"].std(),
        "rew_mean_err": abs(s["rewards"].mean() - real["rewards"].mean()),
        "between_modes": float(np.mean(np.abs(obs) < 1.0)),  # real data: ~0.0004
        "rew_rel_err": float(np.abs(s["rewards"] - (obs + act)).mean()),
        "next_rel_err": float(np.abs(s["next_observations"][:, 0] - (obs + 0.5 * act)).mean()),
        "term_agree": float(np.mean(s["terminations"] == (act > 0.6))),
    }
    ok = (stats["obs_mean_err"] < 0.25 and 0.8 < stats["obs_std_ratio"] < 1.25 and stats["rew_mean_err"] < 0.25
          and stats["between_modes"] < 0.1 and stats["rew_rel_err"] < 0.25 and stats["next_rel_err"] < 0.2
          and stats["term_agree"] > 0.85)
    return ok, stats


@pytest.mark.parametrize("process", ["edm", "discrete"])
def test_learns_known_transition_distribution(process: str) -> None:
    real = toy_transitions(4000)
    kwargs: dict[str, Any] = dict(width=128, n_blocks=2, time_dim=32, batch_size=256, sampler_steps=24,
                                  process=process, num_train_steps=200)
    gen = SynthER(*toy_spaces(), seed=0, **kwargs).fit(real, steps=1200)
    ok, stats = matches_toy(gen.sample(3000, seed=1), real)
    assert ok, stats
    untrained = SynthER(*toy_spaces(), seed=0, **kwargs).fit(real, steps=1)  # negative control
    bad, bad_stats = matches_toy(untrained.sample(3000, seed=1), real)
    assert not bad, bad_stats
    assert gen.fit_log[-1]["final_loss"] < gen.fit_log[-1]["first_loss"]


def test_fit_and_sample_contract_on_minari(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from agent_fixtures import make_pendulum_dataset

    from diffagents.data import to_transitions

    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path))
    ds = make_pendulum_dataset(tmp_path)
    gen = SynthER.from_dataset(ds, seed=0, **TINY).fit(steps=5)
    out = gen.sample(37, batch_size=16, seed=0)
    assert set(out) == {"observations", "actions", "rewards", "next_observations", "terminations"}
    assert out["observations"].shape == out["next_observations"].shape == (37, 3)
    assert out["actions"].shape == (37, 1) and out["rewards"].shape == (37,) and out["terminations"].shape == (37,)
    assert out["terminations"].dtype == np.bool_
    assert all(out[k].dtype == np.float32 for k in ("observations", "actions", "rewards", "next_observations"))
    assert np.all(out["actions"] >= -2.0) and np.all(out["actions"] <= 2.0)
    assert np.all(np.abs(out["observations"][:, :2]) <= 1.0)  # clipped to the finite observation bounds
    gen.fit(to_transitions(ds), steps=2)  # Transitions input
    assert gen.num_timesteps == 7 and len(gen.fit_log) == 2
    with pytest.raises(RuntimeError, match="fit"):
        SynthER(ds.observation_space, ds.action_space, **TINY).sample(3)
    with pytest.raises(ValueError, match="observation_space"):
        SynthER(*toy_spaces(), **TINY).fit(ds, steps=1)


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="SynthERConfig.process"):
        SynthERConfig(process="vesde")
    with pytest.raises(ValueError, match="SynthERConfig.width"):
        SynthERConfig(width=0)
    with pytest.raises(TypeError, match="bounded Box"):
        SynthER(spaces.Box(-1, 1, (2,)), spaces.Box(-np.inf, np.inf, (1,)))
    assert SynthERConfig().width == 1024 and SynthERConfig().sampler_steps == 128


def test_save_load_round_trip_never_unpickles(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = toy_transitions(300)
    gen = SynthER(*toy_spaces(), seed=3, **TINY).fit(real, steps=20)
    path = gen.save(tmp_path / "gen")
    expected = gen.sample(50, seed=11)

    def no_pickle(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("load() must not unpickle")

    monkeypatch.setattr(pickle, "loads", no_pickle)
    monkeypatch.setattr(pickle, "load", no_pickle)
    monkeypatch.setattr(pickle, "Unpickler", no_pickle)
    loaded = SynthER.load(path)
    monkeypatch.undo()
    got = loaded.sample(50, seed=11)
    for key in expected:
        np.testing.assert_array_equal(got[key], expected[key])
    assert loaded.config == gen.config and loaded.num_timesteps == 20
    lean = SynthER.load(gen.save(tmp_path / "lean", exclude=["optimizers", "training_weights"]))  # EMA samples
    got = lean.sample(50, seed=11)
    for key in expected:
        np.testing.assert_array_equal(got[key], expected[key])
    assert os.path.getsize(tmp_path / "lean.zip") < 0.6 * os.path.getsize(path)
    (tmp_path / "bad.zip").write_bytes(b"not a zip")
    with pytest.raises(CheckpointError):
        SynthER.load(tmp_path / "bad.zip")


def test_upsample_writes_loadable_minari_dataset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import minari
    from agent_fixtures import make_pendulum_dataset

    from diffagents.data import to_transitions

    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path))
    ds = make_pendulum_dataset(tmp_path)
    gen = SynthER.from_dataset(ds, seed=0, **TINY).fit(steps=3)
    out = gen.upsample(n=40, seed=0)
    new_id = default_upsampled_id(ds.spec.dataset_id, 40)
    assert new_id == "test/pendulum/mixed-synther40-v0"
    again = minari.load_dataset(new_id)
    assert again.total_steps == out.total_steps == ds.total_steps + 40
    assert again.total_episodes == ds.total_episodes + 40
    tr = to_transitions(again)
    assert len(tr) == ds.total_steps + 40
    syn = slice(ds.total_steps, None)
    assert np.all(np.abs(tr.actions[syn]) <= 2.0)
    assert np.all(tr.terminations[syn] | tr.truncations[syn])  # every synthetic episode ends after one step
    np.testing.assert_allclose(tr.observations[: ds.total_steps], to_transitions(ds).observations)
    meta = again.storage.metadata
    assert meta["diffagents_synther"]["synthetic_steps"] == 40 and "SynthER" in meta["description"]
    assert meta["diffagents_synther"]["seconds"] >= 0  # sampling + writing time, reported by synther_offline.py


def test_as_env_passes_check_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from agent_fixtures import make_pendulum_dataset
    from gymnasium.utils.env_checker import check_env

    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path))
    ds = make_pendulum_dataset(tmp_path)
    gen = SynthER.from_dataset(ds, seed=0, **TINY).fit(steps=3)
    env = gen.as_env(max_episode_steps=5, sampler_steps=3)
    check_env(env, skip_render_check=True)
    obs, _ = env.reset(seed=0)
    starts = {tuple(np.round(o, 5)) for o in env.start_states}
    assert tuple(np.round(obs, 5)) in starts and len(starts) == ds.total_episodes
    for _ in range(5):
        obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
        assert env.observation_space.contains(obs) and isinstance(reward, float) and info["synthetic"]
        if terminated:
            break
    assert terminated or truncated


@pytest.mark.parametrize("s_churn", [0.0, 80.0])
def test_edm_heun_sampler_is_exact_for_gaussian_data(s_churn: float) -> None:
    """With the ideal denoiser of N(0, 0.5^2) data, D(x; s) = x sd^2 / (s^2 + sd^2), samples have std 0.5."""
    from diffagents.diffusion import sample_loop
    from diffagents.diffusion.edm import EDMHeunSampler

    sd = 0.5
    sampler = EDMHeunSampler(128, s_churn=s_churn)  # SynthER's 128 steps; Heun's error is ~3 % at 24 steps
    assert len(sampler.timesteps) == 2 * 128 - 1
    gen = torch.Generator().manual_seed(0)
    x = sample_loop(lambda x, s, cond: x * sd**2 / (s[:, None] ** 2 + sd**2), sampler, (20_000, 2), generator=gen)
    assert float(x.std()) == pytest.approx(sd, rel=0.02) and abs(float(x.mean())) < 0.01


def test_dynamics_fidelity_is_zero_on_real_transitions_and_grows_with_noise() -> None:
    """The simulator check behind the fidelity tables and generator zoo cards can tell real from perturbed data."""
    import gymnasium as gym

    from diffagents.agents.synthesis.synther_fidelity import fidelity_errors, simulator_step

    env = gym.make("HalfCheetah-v5")
    obs, _ = env.reset(seed=0)
    rng = np.random.default_rng(0)
    batch: dict[str, list[Any]] = {"observations": [], "actions": [], "rewards": [], "next_observations": [],
                                   "terminations": []}
    for _ in range(40):
        act = rng.uniform(-1, 1, 6)
        nxt, r, term, _, _ = env.step(act)
        for key, value in zip(batch, (obs, act, r, nxt, term)):
            batch[key].append(value)
        obs = nxt
    real = {k: np.asarray(v) for k, v in batch.items()}
    var = real["next_observations"].var(axis=0)
    truth = simulator_step("HalfCheetah-v5", real["observations"], real["actions"])
    exact = fidelity_errors(real, truth, var)
    assert exact["reward_abs_mean"] < 1e-6 and exact["next_std_mse_mean"] < 1e-8
    assert exact["terminal_agreement"] == 1.0
    noisy = dict(real, next_observations=real["next_observations"] + 0.1 * np.sqrt(var) * rng.standard_normal(
        real["next_observations"].shape))
    err = fidelity_errors(noisy, truth, var)["next_std_mse_mean"]
    assert 0.005 < err < 0.02  # ~0.1^2 of the data variance
    with pytest.raises(ValueError, match=r"observations: expected shape \(n, 17\)"):
        simulator_step("HalfCheetah-v5", real["observations"][:, :5], real["actions"])
    with pytest.raises(ValueError, match=r"actions: expected shape \(40, 6\)"):
        simulator_step("HalfCheetah-v5", real["observations"], real["actions"][:, :2])
    with pytest.raises(ValueError, match="MuJoCo locomotion"):
        simulator_step("Pendulum-v1", real["observations"], real["actions"])
