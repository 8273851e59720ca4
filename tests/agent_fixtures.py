"""Small datasets and agent factories shared by the agent contract tests."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np


def _rollout_dataset(root: Path, dataset_id: str, env_id: str, policy: Any, episodes: int, seed: int,
                     ref: tuple[float, float], env_kwargs: dict[str, Any] | None = None, **meta: Any) -> Any:
    """Roll out ``policy(obs, rng)`` for ``episodes`` seeded episodes into a Minari dataset under ``root``."""
    import minari
    from minari.data_collector import EpisodeBuffer

    os.environ["MINARI_DATASETS_PATH"] = str(root)
    env = gym.make(env_id, **(env_kwargs or {}))
    rng = np.random.default_rng(seed)
    buffers = []
    for ep in range(episodes):
        obs, _ = env.reset(seed=seed + ep)
        observations, actions, rewards, terms, truncs = [obs], [], [], [], []
        while True:
            a = np.asarray(policy(obs, rng), dtype=np.float32)
            obs, r, term, trunc, _ = env.step(a)
            observations.append(obs)
            actions.append(a)
            rewards.append(r)
            terms.append(term)
            truncs.append(trunc)
            if term or trunc:
                break
        buffers.append(EpisodeBuffer(id=ep, seed=seed + ep, observations=np.asarray(observations),
                                     actions=np.asarray(actions), rewards=np.asarray(rewards),
                                     terminations=np.asarray(terms), truncations=np.asarray(truncs), infos={}))
    return minari.create_dataset_from_buffers(dataset_id, buffers, env=env_id, eval_env=env_id,
                                              ref_min_score=ref[0], ref_max_score=ref[1], description="test data",
                                              **meta)


def make_pendulum_dataset(root: Path, dataset_id: str = "test/pendulum/mixed-v0", episodes: int = 6,
                          seed: int = 0) -> Any:
    """A tiny Pendulum-v1 Minari dataset: a damping controller ``a = -2 thetadot`` with N(0, 0.5) noise,
    50-step episodes."""
    return _rollout_dataset(root, dataset_id, "Pendulum-v1",
                            lambda obs, rng: np.clip(-2.0 * obs[2:3] + rng.normal(0, 0.5, 1), -2, 2),
                            episodes, seed, (-1500.0, -150.0), env_kwargs={"max_episode_steps": 50},
                            algorithm_name="test")


def make_mountaincar_dataset(root: Path, dataset_id: str = "test/mountaincar/pump-v0", episodes: int = 8,
                             seed: int = 0) -> Any:
    """MountainCarContinuous-v0 episodes of an energy-pumping controller ``a = sign(v)`` with N(0, 0.3) noise.

    The controller reaches the goal in ~100-200 steps (return ~ +90) while a random policy scores below 0, so
    behaviour cloning on this data gives a clear, robust improvement signal.
    """
    return _rollout_dataset(root, dataset_id, "MountainCarContinuous-v0",
                            lambda obs, rng: np.clip([1.0 if obs[1] >= 0 else -1.0] + rng.normal(0, 0.3, 1), -1, 1),
                            episodes, seed, (-30.0, 90.0), algorithm_name="pump")


def dataset_root(tmp_path_factory: Any) -> Path:
    """A module-scoped folder holding the Pendulum test dataset; MINARI_DATASETS_PATH is left as it was."""
    old = os.environ.get("MINARI_DATASETS_PATH")
    root = tmp_path_factory.mktemp("minari")
    make_pendulum_dataset(root)
    if old is None:
        os.environ.pop("MINARI_DATASETS_PATH", None)
    else:
        os.environ["MINARI_DATASETS_PATH"] = old
    return Path(root)
