"""FQL's mechanism on a one-step bandit: the Q term pulls the one-step policy to the best action, the
distillation term (``alpha``) holds it to the behaviour flow."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

BEST = 0.6  # reward -(a - 0.6)^2; the behaviour policy is uniform on [-1, 1]


@pytest.fixture(scope="module")
def bandit(tmp_path_factory: pytest.TempPathFactory) -> Any:
    import minari
    from gymnasium import spaces
    from minari.data_collector import EpisodeBuffer

    old = os.environ.get("MINARI_DATASETS_PATH")
    os.environ["MINARI_DATASETS_PATH"] = str(tmp_path_factory.mktemp("minari"))
    rng = np.random.default_rng(0)
    buffers = []
    for i in range(2000):
        obs = rng.uniform(-1, 1, (2, 1)).astype(np.float32)
        act = rng.uniform(-1, 1, (1, 1)).astype(np.float32)
        buffers.append(EpisodeBuffer(id=i, observations=obs, actions=act, rewards=-(act[:, 0] - BEST) ** 2,
                                     terminations=np.array([True]), truncations=np.array([False])))
    ds = minari.create_dataset_from_buffers("test/bandit/uniform-v0", buffers,
                                            observation_space=spaces.Box(-1, 1, (1,), np.float32),
                                            action_space=spaces.Box(-1, 1, (1,), np.float32))
    yield ds
    if old is None:
        os.environ.pop("MINARI_DATASETS_PATH", None)
    else:
        os.environ["MINARI_DATASETS_PATH"] = old


def _actions(bandit: Any, alpha: float, tmp: Path) -> np.ndarray:
    from diffagents import FQL

    agent = FQL(dataset=bandit, seed=0, hidden=(64, 64), critic_hidden=(64, 64), batch_size=128, alpha=alpha,
                learning_rate=1e-3).learn(1500)
    obs = np.random.default_rng(1).uniform(-1, 1, (500, 1)).astype(np.float32)
    acts, _ = agent.predict(obs, deterministic=False)
    return acts[:, 0]


def test_q_term_moves_the_policy_to_the_best_action(bandit: Any, tmp_path: Path) -> None:
    acts = _actions(bandit, alpha=0.1, tmp=tmp_path)
    assert abs(float(np.mean(acts)) - BEST) < 0.15 and float(np.std(acts)) < 0.2, (acts.mean(), acts.std())


def test_a_large_alpha_keeps_the_behaviour_distribution(bandit: Any, tmp_path: Path) -> None:
    acts = _actions(bandit, alpha=1000.0, tmp=tmp_path)  # distillation dominates: the flow's uniform actions
    assert abs(float(np.mean(acts))) < 0.2 and float(np.std(acts)) > 0.4, (acts.mean(), acts.std())
