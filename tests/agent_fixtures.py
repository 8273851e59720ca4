"""Small datasets and agent factories shared by the agent contract tests."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np


def make_pendulum_dataset(root: Path, dataset_id: str = "test/pendulum/mixed-v0", episodes: int = 6,
                          seed: int = 0) -> Any:
    """A tiny Pendulum-v1 Minari dataset (random-ish actions with a simple energy controller mixed in)."""
    import minari
    from minari.data_collector import EpisodeBuffer

    os.environ["MINARI_DATASETS_PATH"] = str(root)
    env = gym.make("Pendulum-v1", max_episode_steps=50)
    rng = np.random.default_rng(seed)
    buffers = []
    for ep in range(episodes):
        obs, _ = env.reset(seed=seed + ep)
        observations, actions, rewards, terms, truncs = [obs], [], [], [], []
        while True:
            a = np.clip(-2.0 * obs[2:3] + rng.normal(0, 0.5, 1), -2, 2).astype(np.float32)
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
    return minari.create_dataset_from_buffers(dataset_id, buffers, env="Pendulum-v1", eval_env="Pendulum-v1",
                                              ref_min_score=-1500.0, ref_max_score=-150.0,
                                              algorithm_name="test", description="test data")


def make_mountaincar_dataset(root: Path, dataset_id: str = "test/mountaincar/pump-v0", episodes: int = 8,
                             seed: int = 0) -> Any:
    """MountainCarContinuous-v0 episodes of an energy-pumping controller ``a = sign(v)`` with N(0, 0.3) noise.

    The controller reaches the goal in ~100-200 steps (return ~ +90) while a random policy scores below 0, so
    behaviour cloning on this data gives a clear, robust improvement signal.
    """
    import minari
    from minari.data_collector import EpisodeBuffer

    os.environ["MINARI_DATASETS_PATH"] = str(root)
    env = gym.make("MountainCarContinuous-v0")
    rng = np.random.default_rng(seed)
    buffers = []
    for ep in range(episodes):
        obs, _ = env.reset(seed=seed + ep)
        observations, actions, rewards, terms, truncs = [obs], [], [], [], []
        while True:
            a = np.clip([1.0 if obs[1] >= 0 else -1.0] + rng.normal(0, 0.3, 1), -1, 1).astype(np.float32)
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
    return minari.create_dataset_from_buffers(dataset_id, buffers, env="MountainCarContinuous-v0",
                                              eval_env="MountainCarContinuous-v0", ref_min_score=-30.0,
                                              ref_max_score=90.0, algorithm_name="pump", description="test data")
