"""Property-based tests (hypothesis) over spaces and batch shapes for predict and the data loaders."""

from __future__ import annotations

import os
import tempfile
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from diffagents.agents import get_agent_class


class BoxEnv(gym.Env[np.ndarray, np.ndarray]):
    """A tiny env with arbitrary Box observation / action spaces (rewards = -|a|)."""

    def __init__(self, obs_space: spaces.Box, act_space: spaces.Box, horizon: int = 6) -> None:
        self.observation_space, self.action_space, self.horizon = obs_space, act_space, horizon
        self._t = 0

    def reset(self, *, seed: int | None = None, options: Any = None) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        self._t = 0
        return self.observation_space.sample(), {}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        self._t += 1
        return self.observation_space.sample(), -float(np.abs(action).sum()), False, self._t >= self.horizon, {}


def _dataset(env: BoxEnv, episodes: int, root: str, name: str) -> Any:
    import minari
    from minari.data_collector import EpisodeBuffer

    os.environ["MINARI_DATASETS_PATH"] = root
    bufs = []
    for ep in range(episodes):
        obs, _ = env.reset(seed=ep)
        o, a, r, te, tr = [obs], [], [], [], []
        for _ in range(env.horizon):
            act = env.action_space.sample()
            obs, rew, term, trunc, _ = env.step(act)
            o.append(obs)
            a.append(act)
            r.append(rew)
            te.append(term)
            tr.append(trunc)
        bufs.append(EpisodeBuffer(id=ep, observations=np.asarray(o), actions=np.asarray(a), rewards=np.asarray(r),
                                  terminations=np.asarray(te), truncations=np.asarray(tr)))
    return minari.create_dataset_from_buffers(name, bufs, observation_space=env.observation_space,
                                              action_space=env.action_space, algorithm_name="random")


boxes = st.builds(
    lambda dim, low, width: spaces.Box(np.full(dim, low, np.float32), np.full(dim, low + width, np.float32)),
    st.integers(1, 5), st.floats(-5, 0, allow_nan=False), st.floats(0.5, 6, allow_nan=False))

SMALL = {
    "DiffusionQL": dict(hidden=(16,), critic_hidden=(16,), batch_size=8, n_candidates=2),
    "IDQL": dict(actor_width=16, actor_blocks=1, critic_hidden=(16,), batch_size=8, n_candidates=2),
    "Diffuser": dict(horizon=4, dim=32, dim_mults=(1, 2), n_diffusion_steps=3, batch_size=4, n_samples=1),
}


@settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))
@given(obs_space=boxes, act_space=boxes, batch=st.integers(1, 6), algo=st.sampled_from(sorted(SMALL)),
       seed=st.integers(0, 10_000))
def test_predict_returns_actions_in_space_for_any_box_spaces(obs_space: spaces.Box, act_space: spaces.Box,
                                                             batch: int, algo: str, seed: int) -> None:
    env = BoxEnv(obs_space, act_space)
    with tempfile.TemporaryDirectory() as root:
        ds = _dataset(env, 3, root, f"prop/box{seed}/random-v0")
        agent = get_agent_class(algo)(env=env, dataset=ds, seed=seed, **SMALL[algo]).learn(2)
        single, _ = agent.predict(obs_space.sample())
        assert single.shape == act_space.shape and act_space.contains(single.astype(act_space.dtype))
        obs = np.stack([obs_space.sample() for _ in range(batch)])
        acts, _ = agent.predict(obs)
        assert acts.shape == (batch, *act_space.shape)
        assert np.all(acts >= act_space.low - 1e-6) and np.all(acts <= act_space.high + 1e-6)
        bad = np.zeros((batch, obs_space.shape[0] + 1), dtype=np.float32)
        with pytest.raises(ValueError, match="observation"):
            agent.predict(bad)


@settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
@given(obs_space=boxes, act_space=boxes, episodes=st.integers(1, 4), horizon=st.integers(1, 9))
def test_loaders_preserve_every_step(obs_space: spaces.Box, act_space: spaces.Box, episodes: int, horizon: int
                                     ) -> None:
    from diffagents.data import to_transitions, to_windows

    env = BoxEnv(obs_space, act_space, horizon=5)
    with tempfile.TemporaryDirectory() as root:
        ds = _dataset(env, episodes, root, "prop/loader/random-v0")
        tr = to_transitions(ds)
        assert tr.observations.shape == (episodes * 5, obs_space.shape[0])
        assert tr.actions.shape == (episodes * 5, act_space.shape[0])
        win = to_windows(ds, horizon)
        assert len(win) == episodes * 5  # one window per step with padding
        mask = win.mask
        assert mask.shape == (episodes * 5, horizon)
        # every real step appears as the first step of exactly one window
        assert np.all(mask[:, 0] == 1)
        assert float(mask.sum()) == sum(min(horizon, 5 - s) for _ in range(episodes) for s in range(5))


def test_unscaled_actions_never_step_past_float32_bounds() -> None:
    """Regression (found by hypothesis): rounding to float32 put an action one ulp above the bound."""
    from diffagents.core.offline import OfflineAgent

    class Holder:
        action_space = spaces.Box(np.float32(-2.0), np.float32(-0.7411905), (1,), np.float32)

    out = OfflineAgent.unscale_action(Holder(), np.array([[1.0], [-1.0], [0.3]], dtype=np.float32))  # type: ignore[arg-type]
    assert all(Holder.action_space.contains(o) for o in out)
