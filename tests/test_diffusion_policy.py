"""DiffusionPolicy: chunk windows and padding, receding-horizon chunk execution through SB3's state, the
ChunkedActionWrapper and predict_chunk."""

from __future__ import annotations

import warnings
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch
from agent_fixtures import make_pendulum_dataset
from diffagents.wrappers.chunks import ChunkedActionWrapper
from gymnasium.utils.env_checker import check_env

from diffagents.agents.policies.diffusion_policy import DiffusionPolicy
from diffagents.data.batches import chunk_window_rows
from diffagents.execution.plan_cache import PlanCache

SMALL: dict[str, Any] = dict(obs_horizon=2, pred_horizon=8, action_horizon=4, dim=8, dim_mults=(1, 2), n_diffusion_steps=10,
             sampler_steps=3, batch_size=8, lr_warmup_steps=2)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return make_pendulum_dataset(tmp_path_factory.mktemp("minari"), dataset_id="test/pendulum/dp-v0", episodes=3)


@pytest.fixture(scope="module")
def agent(dataset: Any) -> DiffusionPolicy:
    dp = DiffusionPolicy(env=gym.make("Pendulum-v1"), dataset=dataset, seed=0, **SMALL)
    dp.learn(3)
    return dp


def test_window_rows_edge_padding() -> None:
    row_ep, step, starts = chunk_window_rows(np.array([3, 5]), obs_horizon=2, pred_horizon=4)
    # episode 0: 1 copy of step 0 before, steps 0..2, 2 copies of step 2 after (T + Tp - 1 = 6 rows)
    np.testing.assert_array_equal(step[:6], [0, 0, 1, 2, 2, 2])
    np.testing.assert_array_equal(step[6:], [0, 0, 1, 2, 3, 4, 4, 4])
    np.testing.assert_array_equal(row_ep, [0] * 6 + [1] * 8)
    np.testing.assert_array_equal(starts, [0, 1, 2, 6, 7, 8, 9, 10])  # one window per real step


def test_training_windows_repeat_first_obs_and_align_actions(agent: DiffusionPolicy, dataset: Any) -> None:
    ep = next(iter(dataset.iterate_episodes()))
    flat = agent._sampler.flat
    start = int(agent._sampler.index[0])  # episode 0, current step 0
    obs0 = torch.as_tensor(agent.normalize_obs(ep.observations[:1].astype(np.float32)))[0]
    torch.testing.assert_close(flat["obs"][start], obs0)  # history padded with the first observation
    torch.testing.assert_close(flat["obs"][start + 1], obs0)
    # the executed part of the chunk (index To - 1 = 1) starts with the action taken at the current step
    torch.testing.assert_close(flat["actions"][start + 1], torch.as_tensor(agent.scale_action(ep.actions[0])))
    torch.testing.assert_close(flat["actions"][start + 2], torch.as_tensor(agent.scale_action(ep.actions[1])))
    batch = agent._sampler.sample(4)
    assert batch["obs"].shape == (4, 8, 3) and batch["actions"].shape == (4, 8, 1)


def test_executes_ta_actions_per_chunk_and_resets_on_episode_start(agent: DiffusionPolicy) -> None:
    rng = np.random.default_rng(0)
    obs = rng.normal(size=(12, 3)).astype(np.float32)
    state, acts, counts = None, [], []
    for t in range(10):
        a, state = agent.predict(obs[t], state=state, episode_start=np.array([t == 0]), deterministic=True)
        acts.append(a)
        counts.append(agent.chunks_sampled)
    base = counts[0] - 1
    # a new chunk exactly every Ta = 4 steps
    assert [c - base for c in counts] == [1, 1, 1, 1, 2, 2, 2, 2, 3, 3]
    # the first 4 actions are the executed slice of the chunk sampled from the padded history [o0, o0]
    chunk = agent.predict_chunk(np.stack([obs[0], obs[0]]))
    np.testing.assert_allclose(np.stack(acts[:4]), chunk, atol=1e-6)
    # ... and steps 4-7 come from the history [o3, o4]
    np.testing.assert_allclose(np.stack(acts[4:8]), agent.predict_chunk(obs[3:5]), atol=1e-6)
    # an episode start mid-chunk draws a new chunk now and resets the history to the new first observation
    before = agent.chunks_sampled
    a, state = agent.predict(obs[10], state=state, episode_start=np.array([True]), deterministic=True)
    assert agent.chunks_sampled == before + 1
    assert isinstance(state, PlanCache)
    hist = state.extra["obs_history"]
    torch.testing.assert_close(hist[0, 0], hist[0, 1])
    np.testing.assert_allclose(a, agent.predict_chunk(np.stack([obs[10], obs[10]]))[0], atol=1e-6)


def test_vecenv_rows_reset_independently(agent: DiffusionPolicy) -> None:
    obs = np.random.default_rng(1).normal(size=(2, 3)).astype(np.float32)
    _, state = agent.predict(obs, episode_start=np.array([True, True]))
    n = agent.chunks_sampled
    _, state = agent.predict(obs + 0.1, state=state, episode_start=np.array([False, True]))
    assert agent.chunks_sampled == n + 1  # only env 1 resampled
    np.testing.assert_array_equal(state.age, [2, 1])
    hist = state.extra["obs_history"]
    torch.testing.assert_close(hist[1, 0], hist[1, 1])  # env 1: padded with its new first observation
    assert not torch.allclose(hist[0, 0], hist[0, 1])  # env 0: real history [o0, o1]


class _CountingEnv(gym.Env[np.ndarray, np.ndarray]):
    """1-D env: reward = the action, terminates after ``limit`` steps; counts steps."""

    def __init__(self, limit: int = 100) -> None:
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (2,), np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
        self.limit, self.t, self.calls = limit, 0, 0

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self.t = 0
        return np.array([0.0, 0.0], np.float32), {}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict]:
        self.t += 1
        self.calls += 1
        return np.array([self.t, 0.0], np.float32), float(action[0]), self.t >= self.limit, False, {}


def test_chunked_action_wrapper_executes_whole_chunks() -> None:
    inner = _CountingEnv(limit=6)
    env = ChunkedActionWrapper(inner, 4, obs_history=2)
    assert env.action_space.shape == (4, 1) and env.observation_space.shape == (2, 2)
    obs, _ = env.reset(seed=0)
    np.testing.assert_array_equal(obs, [[0, 0], [0, 0]])  # reset pads the history with the first observation
    obs, r, term, trunc, info = env.step(np.full((4, 1), 0.5, np.float32))
    assert inner.calls == 4 and info["chunk_steps"] == 4 and r == pytest.approx(2.0) and not term
    np.testing.assert_array_equal(obs[:, 0], [3, 4])
    obs, r, term, trunc, info = env.step(np.full((4, 1), 0.25, np.float32))
    assert term and info["chunk_steps"] == 2 and inner.calls == 6 and r == pytest.approx(0.5)  # stops at termination
    with pytest.raises(ValueError, match="chunk of shape"):
        env.step(np.zeros(1, np.float32))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        check_env(ChunkedActionWrapper(gym.make("Pendulum-v1"), 3, obs_history=2), skip_render_check=True)
        check_env(ChunkedActionWrapper(gym.make("Pendulum-v1"), 3), skip_render_check=True)


def test_predict_chunk_drives_the_wrapper(agent: DiffusionPolicy) -> None:
    env = ChunkedActionWrapper(gym.make("Pendulum-v1", max_episode_steps=20), agent.config.action_horizon,
                               obs_history=agent.config.obs_horizon)
    obs, _ = env.reset(seed=0)
    steps, done = 0, False
    while not done:
        chunk = agent.predict_chunk(obs)
        assert chunk.shape == (4, 1) and env.action_space.contains(chunk.astype(np.float32))
        obs, _, term, trunc, info = env.step(chunk)
        steps += info["chunk_steps"]
        done = term or trunc
    assert steps == 20
    batch = agent.predict_chunk(np.zeros((3, 1, 3), np.float32))  # short history: padded with its oldest entry
    assert batch.shape == (3, 4, 1)


def test_transformer_backbone_and_lr_warmup(dataset: Any) -> None:
    dp = DiffusionPolicy(env=gym.make("Pendulum-v1"), dataset=dataset, seed=0, backbone="transformer", d_model=16,
                         n_layers=1, n_heads=2, **{**SMALL, "lr_warmup_steps": 10})
    dp.learn(2)
    lr = dp.updaters["policy"].optimizer.param_groups[0]["lr"]
    assert lr == pytest.approx(dp.lr_schedule(dp._current_progress_remaining) * 2 / 10)
    assert dp.ema is not None and dp.ema.power == 0.75 and dp.ema.num_updates == 2
    act, _ = dp.predict(np.zeros(3, np.float32), deterministic=True)
    assert act.shape == (1,)


def test_config_errors_name_the_field(dataset: Any) -> None:
    with pytest.raises(ValueError, match="pred_horizon"):
        DiffusionPolicy(env=gym.make("Pendulum-v1"), obs_horizon=2, action_horizon=8, pred_horizon=8)
    with pytest.raises(ValueError, match="pred_horizon"):
        DiffusionPolicy(env=gym.make("Pendulum-v1"), pred_horizon=10, dim_mults=(1, 2, 4), action_horizon=4)
    with pytest.raises(ValueError, match="backbone"):
        DiffusionPolicy(env=gym.make("Pendulum-v1"), backbone="rnn")
