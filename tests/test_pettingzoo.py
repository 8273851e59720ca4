"""diffagents.wrappers.pettingzoo: joint arrays, team rewards (parallel_api_test), collection and evaluation."""

from __future__ import annotations

import functools
import subprocess
import sys
import warnings
from typing import Any

import numpy as np
import pytest

try:
    from diffagents.wrappers import pettingzoo as pz
except ModuleNotFoundError:  # source checkout without the package-dir mapping installed
    from wrappers import pettingzoo as pz  # type: ignore[no-redef]


def spread(n: int = 3, continuous: bool = True, max_cycles: int = 25) -> Any:
    from mpe2 import simple_spread_v3

    return functools.partial(simple_spread_v3.parallel_env, N=n, max_cycles=max_cycles,
                             continuous_actions=continuous)


class RandomJointAgent:
    """A stand-in agent with MADiff's predict signature."""

    def __init__(self, env: Any, seed: int = 0) -> None:
        self.env = env
        self.calls = 0
        for a in env.possible_agents:
            env.action_space(a).seed(seed)

    def predict(self, obs: dict[str, Any], state: Any = None, episode_start: Any = None,
                deterministic: bool = False) -> tuple[dict[str, Any], Any]:
        self.calls += 1
        assert episode_start is not None and episode_start.shape == (1,)
        return {a: self.env.action_space(a).sample() for a in obs}, state


@pytest.mark.parametrize("mode", ["sum", "mean"])
def test_team_reward_wrapper_passes_parallel_api_test(mode: str) -> None:
    from pettingzoo.test import parallel_api_test

    parallel_api_test(pz.TeamRewardWrapper(spread(max_cycles=10)(), mode), num_cycles=50)
    env = pz.TeamRewardWrapper(spread()(), mode)
    obs, _ = env.reset(seed=0)
    inner = spread()()
    inner.reset(seed=0)
    acts = {a: np.full(5, 0.3, np.float32) for a in env.agents}
    _, rewards, *_ = env.step(acts)
    _, raw, *_ = inner.step(acts)
    want = sum(raw.values()) if mode == "sum" else np.mean(list(raw.values()))
    assert len(set(rewards.values())) == 1 and np.isclose(rewards["agent_0"], want)
    with pytest.raises(ValueError, match="team_reward"):
        pz.TeamRewardWrapper(spread()(), "max")


def test_joint_array_round_trip_and_errors() -> None:
    env = spread(4)()
    obs, _ = env.reset(seed=1)
    agents = pz.agent_order(env)
    joint = pz.dict_to_joint(obs, agents)  # (N, D)
    assert joint.shape == (4, 24) and joint.dtype == np.float32
    back = pz.joint_to_dict(joint, agents)
    assert all(np.array_equal(back[a], obs[a]) for a in agents)
    with pytest.raises(ValueError, match=r"observation: missing agent\(s\) \['agent_3'\]"):
        pz.dict_to_joint({a: obs[a] for a in agents[:3]}, agents)
    with pytest.raises(ValueError, match=r"action\['agent_1'\]: expected shape"):
        pz.dict_to_joint({"agent_0": np.zeros(5), "agent_1": np.zeros(4)}, ["agent_0", "agent_1"], field="action")
    with pytest.raises(ValueError, match="one per agent"):
        pz.joint_to_dict(joint[:2], agents)
    with pytest.raises(TypeError, match="Parallel env"):
        pz.make_parallel_env(42)


def test_collect_episodes_makes_a_minari_dataset() -> None:
    import minari
    from gymnasium import spaces

    env = spread()()
    rng = np.random.default_rng(0)
    buffers, returns = pz.collect_episodes(env, lambda o: {a: rng.uniform(0, 1, 5).astype(np.float32) for a in o},
                                           60, seed=5)
    assert [len(b.rewards) for b in buffers] == [25, 25, 10] and len(returns) == 2
    assert buffers[-1].truncations[-1] and buffers[0].truncations[-1] and not buffers[0].terminations.any()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = minari.create_dataset_from_buffers(
            "test/pz-collect-v0", buffers,
            observation_space=spaces.Dict({a: env.observation_space(a) for a in env.possible_agents}),
            action_space=spaces.Dict({a: env.action_space(a) for a in env.possible_agents}))
    assert ds.total_steps == 60 and ds[0].observations["agent_2"].shape == (26, 18)
    np.testing.assert_allclose(ds[0].rewards.sum(), returns[0], rtol=1e-6)


def test_evaluate_reports_team_returns_and_normalized_scores() -> None:
    agent = RandomJointAgent(spread(continuous=False)())
    out = pz.evaluate(agent, spread(continuous=False), n_episodes=3, seed=0, reference_scores=(-80.0, -20.0))
    assert out["returns"].shape == (3,) and np.all(out["lengths"] == 25) and agent.calls == 75
    np.testing.assert_allclose(out["normalized"], 100 * (out["returns"] + 80) / 60)
    again = pz.evaluate(RandomJointAgent(spread(continuous=False)()), spread(continuous=False), n_episodes=3, seed=0)
    np.testing.assert_allclose(again["returns"], out["returns"])  # seeded resets and action sampling
    short = pz.evaluate(RandomJointAgent(spread()()), spread(), n_episodes=1, max_steps=5)
    assert short["lengths"][0] == 5 and "normalized" not in short
    with pytest.raises(ValueError, match="n_episodes"):
        pz.evaluate(agent, spread(), n_episodes=0)


class GreedyJointAgent:
    """Deterministic, batch-capable: each agent moves towards the first landmark of its own observation."""

    def __init__(self) -> None:
        self.starts: list[np.ndarray] = []

    def predict(self, obs: dict[str, Any], state: Any = None, episode_start: Any = None,
                deterministic: bool = True) -> tuple[dict[str, Any], Any]:
        self.starts.append(np.asarray(episode_start).copy())
        out = {}
        for a, o in obs.items():
            rel = np.asarray(o)[..., 4:6]  # first landmark relative to the agent
            act = np.zeros((*rel.shape[:-1], 5), np.float32)
            act[..., 1], act[..., 2] = np.clip(-rel[..., 0], 0, 1), np.clip(rel[..., 0], 0, 1)
            act[..., 3], act[..., 4] = np.clip(-rel[..., 1], 0, 1), np.clip(rel[..., 1], 0, 1)
            out[a] = act
        return out, state


@pytest.mark.parametrize("n_envs", [2, 4])
def test_batched_evaluation_matches_sequential(n_envs: int) -> None:
    one = pz.evaluate(GreedyJointAgent(), spread(), n_episodes=5, seed=3)
    agent = GreedyJointAgent()
    many = pz.evaluate(agent, spread(), n_episodes=5, seed=3, n_envs=n_envs)
    np.testing.assert_allclose(many["returns"], one["returns"], rtol=1e-6)  # episode i seeded 3 + i either way
    assert np.all(many["lengths"] == 25) and len(agent.starts) == 25 * -(-5 // n_envs)
    assert agent.starts[0].tolist() == [True] * n_envs and agent.starts[25].sum() == min(n_envs, 5 - n_envs)
    short = pz.evaluate(GreedyJointAgent(), spread(), n_episodes=3, seed=0, n_envs=2, max_steps=4)
    assert short["lengths"].tolist() == [4, 4, 4]
    with pytest.raises(ValueError, match="n_envs"):
        pz.evaluate(GreedyJointAgent(), spread()(), n_episodes=2, n_envs=2)  # an instance cannot be copied


def test_importing_wrappers_stays_light() -> None:
    code = ("import sys; sys.path.insert(0, '.'); import wrappers, diffagents; "
            "assert 'pettingzoo' not in sys.modules and 'torch' not in sys.modules, sorted(sys.modules)")
    subprocess.run([sys.executable, "-c", code], check=True)
