"""Online SAC in Tianshou 2.0 with SynthER synthetic replay (OffPolicyTrainer + SynthERTianshouBuffer).

    python examples/synther_tianshou.py --epochs 10
    python examples/synther_tianshou.py --smoke
"""

from __future__ import annotations

import argparse

import gymnasium as gym
import torch
from diffagents.wrappers.synther_tianshou import SynthERTianshouBuffer
from tianshou.algorithm import SAC
from tianshou.algorithm.modelfree.sac import SACPolicy
from tianshou.algorithm.optim import AdamOptimizerFactory
from tianshou.data import Collector, CollectStats
from tianshou.env import DummyVectorEnv
from tianshou.trainer import OffPolicyTrainerParams
from tianshou.utils.net.common import Net
from tianshou.utils.net.continuous import ContinuousActorProbabilistic, ContinuousCritic


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--env", default="Pendulum-v1")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--smoke", action="store_true")
    args = p.parse_args()
    torch.set_num_threads(1)

    env = gym.make(args.env)
    obs_shape, act_shape = tuple(env.observation_space.shape or ()), tuple(env.action_space.shape or ())
    hidden = [16] if args.smoke else [256, 256]
    actor = ContinuousActorProbabilistic(preprocess_net=Net(state_shape=obs_shape, hidden_sizes=hidden),
                                         action_shape=act_shape, unbounded=True, conditioned_sigma=True)
    critics = [ContinuousCritic(preprocess_net=Net(state_shape=obs_shape, action_shape=act_shape,
                                                   hidden_sizes=hidden, concat=True)) for _ in range(2)]
    algo = SAC(policy=SACPolicy(actor=actor, action_space=env.action_space, observation_space=env.observation_space),
               policy_optim=AdamOptimizerFactory(lr=1e-3), critic=critics[0],
               critic_optim=AdamOptimizerFactory(lr=1e-3), critic2=critics[1],
               critic2_optim=AdamOptimizerFactory(lr=1e-3))
    envs = DummyVectorEnv([lambda: gym.make(args.env) for _ in range(2)])
    envs.seed(0)
    buf = SynthERTianshouBuffer(  # real data from 2 envs + a retrained synthetic pool (50% of each batch)
        1_000 if args.smoke else 100_000, 2, observation_space=env.observation_space, action_space=env.action_space,
        synthetic_ratio=0.5, retrain_every=100 if args.smoke else 5_000,
        generator_steps=5 if args.smoke else 2_000, synthetic_size=64 if args.smoke else 20_000,
        synthesizer_kwargs=dict(width=32, n_blocks=1) if args.smoke else dict(width=256, n_blocks=3), seed=0)
    collector = Collector[CollectStats](algo, envs, buf, exploration_noise=True)
    collector.reset()
    collector.collect(n_step=64 if args.smoke else 1_000, random=True)
    result = algo.run_training(OffPolicyTrainerParams(
        training_collector=collector, max_epochs=1 if args.smoke else args.epochs,
        epoch_num_steps=200 if args.smoke else 5_000, collection_step_num_env_steps=10,
        update_step_num_gradient_steps_per_sample=0.5, batch_size=32 if args.smoke else 256,
        test_collector=None, show_progress=not args.smoke, verbose=False))
    print(f"SAC + SynthER (Tianshou): {result.update_step} gradient steps, generator retrained "
          f"{len(buf.retrain_log)} times")


if __name__ == "__main__":
    main()
