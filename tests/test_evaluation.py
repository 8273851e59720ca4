"""``diffagents.evaluation.evaluate_agent``: seeding, vectorised evaluation and bad arguments."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import pytest

from diffagents.evaluation import evaluate_agent


class ZeroTorque:
    """A fixed policy that records the batch sizes ``predict`` was called with."""

    def __init__(self) -> None:
        self.batch_sizes: list[int] = []

    def predict(self, obs: np.ndarray, state: Any = None, episode_start: Any = None,
                deterministic: bool = False) -> tuple[np.ndarray, Any]:
        self.batch_sizes.append(len(obs))
        return np.zeros((len(obs), 1), dtype=np.float32), state


def test_vectorised_evaluation_batches_predict_and_keeps_seeds() -> None:
    single = evaluate_agent(ZeroTorque(), "Pendulum-v1", n_episodes=2, seed=7)
    agent = ZeroTorque()
    vec = evaluate_agent(agent, lambda: gym.make("Pendulum-v1"), n_episodes=4, seed=7, n_envs=4)
    assert len(vec.returns) == 4
    assert set(agent.batch_sizes) == {4}
    # env 0 of the vectorised run is seeded like the single-env run, env 1 with seed + 1
    assert vec.returns[0] == pytest.approx(single.returns[0])
    other = evaluate_agent(ZeroTorque(), "Pendulum-v1", n_episodes=1, seed=8)
    assert np.any(np.isclose(vec.returns, other.returns[0]))


def test_bad_n_envs_is_named() -> None:
    with pytest.raises(ValueError, match="n_envs"):
        evaluate_agent(ZeroTorque(), gym.make("Pendulum-v1"), n_episodes=2, n_envs=2)
    with pytest.raises(ValueError, match="n_envs"):
        evaluate_agent(ZeroTorque(), "Pendulum-v1", n_episodes=2, n_envs=0)
    with pytest.raises(TypeError, match="env"):
        evaluate_agent(ZeroTorque(), 3, n_episodes=2)
