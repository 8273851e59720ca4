"""SynthERTianshouBuffer: real/synthetic layout, the synthetic ratio, retraining on add, Collector and
OffPolicyTrainer (Tianshou 2.0 SAC) end to end."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch

torch.set_num_threads(1)
TINY = dict(width=32, n_blocks=1, time_dim=16, batch_size=64, sampler_steps=3)
MARK = 1.0e6

pytest.importorskip("tianshou")
from diffagents.wrappers.synther_tianshou import SynthERTianshouBuffer  # noqa: E402
from tianshou.data import Batch  # noqa: E402


def make_buffer(**kwargs: Any) -> SynthERTianshouBuffer:
    env = gym.make("Pendulum-v1")
    defaults: dict[str, Any] = dict(observation_space=env.observation_space, action_space=env.action_space,
                                    synthetic_size=20, retrain_every=10_000, generator_steps=2,
                                    synthesizer_kwargs=TINY, seed=0)
    return SynthERTianshouBuffer(100, 2, **(defaults | kwargs))


def add_real(buf: SynthERTianshouBuffer, steps: int) -> None:
    rng = np.random.default_rng(0)
    for t in range(steps):
        obs = rng.normal(size=(2, 3)).astype(np.float32)
        buf.add(Batch(obs=obs, act=rng.uniform(-1, 1, (2, 1)).astype(np.float32), rew=np.array([0.0, 1.0]),
                      terminated=np.array([False, t % 7 == 6]), truncated=np.array([t % 9 == 8, False]),
                      obs_next=obs + 0.1, info=Batch(env_id=np.array([0, 1]))))


def test_layout_ratio_and_marked_synthetic_rows() -> None:
    buf = make_buffer(synthetic_ratio=0.25)
    assert buf.buffer_num == 3 and buf.syn_id == 2
    add_real(buf, 10)
    assert len(buf) == 20 and buf.real_size() == 20
    idx = buf.sample_indices(40)
    assert np.all(idx < buf._offset[buf.syn_id])  # nothing synthetic yet
    n = 20
    buf.set_synthetic({"observations": np.zeros((n, 3), np.float32), "actions": np.ones((n, 1), np.float32),
                       "rewards": np.full(n, MARK, np.float32), "next_observations": np.ones((n, 3), np.float32),
                       "terminations": np.arange(n) % 2 == 0})
    batch, idx = buf.sample(40)
    assert int((batch.rew == MARK).sum()) == 10 and batch.obs.shape == (40, 3) and batch.act.shape == (40, 1)
    syn = batch.rew == MARK
    assert np.all(batch.done[syn]) and np.array_equal(batch.terminated[syn], ~batch.truncated[syn])
    assert np.all(buf.next(idx[syn]) == idx[syn])  # one-step episodes never chain
    assert set(buf.sample_indices(0)) >= set(idx)
    with pytest.raises(ValueError, match="buffer_ids"):
        buf.add(Batch(obs=np.zeros((1, 3)), act=np.zeros((1, 1)), rew=np.zeros(1), terminated=np.zeros(1, bool),
                      truncated=np.zeros(1, bool), obs_next=np.zeros((1, 3))), buffer_ids=[2])


def test_retrains_on_add_and_models_policy_space_actions() -> None:
    buf = make_buffer(retrain_every=30)
    add_real(buf, 14)
    assert buf.retrain_log == []
    add_real(buf, 1)
    assert len(buf.retrain_log) == 1 and int(buf._lengths[buf.syn_id]) == 20
    syn_act = buf._meta.act[buf._offset[buf.syn_id]: buf._offset[buf.syn_id] + 20]
    assert np.all(np.abs(syn_act) <= 1.0)  # action_scaling=True: the generator models [-1, 1] actions
    assert buf.generator.action_space.low.min() == -1.0


def test_off_policy_trainer_sac_runs() -> None:
    from tianshou.algorithm import SAC
    from tianshou.algorithm.modelfree.sac import SACPolicy
    from tianshou.algorithm.optim import AdamOptimizerFactory
    from tianshou.data import Collector, CollectStats
    from tianshou.env import DummyVectorEnv
    from tianshou.trainer import OffPolicyTrainerParams
    from tianshou.utils.net.common import Net
    from tianshou.utils.net.continuous import ContinuousActorProbabilistic, ContinuousCritic

    env = gym.make("Pendulum-v1")
    obs_dim, act_dim = tuple(env.observation_space.shape or ()), tuple(env.action_space.shape or ())
    actor = ContinuousActorProbabilistic(preprocess_net=Net(state_shape=obs_dim, hidden_sizes=[16]),
                                         action_shape=act_dim, unbounded=True, conditioned_sigma=True)
    critics = [ContinuousCritic(preprocess_net=Net(state_shape=obs_dim, action_shape=act_dim, hidden_sizes=[16],
                                                   concat=True)) for _ in range(2)]
    policy = SACPolicy(actor=actor, action_space=env.action_space, observation_space=env.observation_space)
    algo: Any = SAC(policy=policy, policy_optim=AdamOptimizerFactory(lr=1e-3), critic=critics[0],
               critic_optim=AdamOptimizerFactory(lr=1e-3), critic2=critics[1],
               critic2_optim=AdamOptimizerFactory(lr=1e-3))
    envs = DummyVectorEnv([lambda: gym.make("Pendulum-v1") for _ in range(2)])
    envs.seed(0)
    buf = SynthERTianshouBuffer(1000, 2, observation_space=env.observation_space, action_space=env.action_space,
                                synthetic_size=64, retrain_every=100, generator_steps=5, synthesizer_kwargs=TINY,
                                seed=0)
    collector = Collector[CollectStats](algo, envs, buf, exploration_noise=True)
    collector.reset()
    collector.collect(n_step=64, random=True)
    result = algo.run_training(OffPolicyTrainerParams(
        training_collector=collector, max_epochs=1, epoch_num_steps=200, collection_step_num_env_steps=10,
        update_step_num_gradient_steps_per_sample=0.5, batch_size=32, test_collector=None, show_progress=False,
        verbose=False))
    assert result.update_step > 0
    assert len(buf.retrain_log) >= 2 and int(buf._lengths[buf.syn_id]) == 64
    assert buf.real_size() == buf.env_steps_added
