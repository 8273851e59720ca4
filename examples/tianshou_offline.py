"""Train a diffusion policy or planner with Tianshou 2.0's own OfflineTrainer and evaluate it with a Collector.

    python examples/tianshou_offline.py --algo diffusionql --epochs 10
    python examples/tianshou_offline.py --algo diffuser --epochs 10     # planner: windows gathered from the buffer
    python examples/tianshou_offline.py --smoke
"""

from __future__ import annotations

import argparse

import gymnasium as gym
import torch
from diffagents.wrappers.tianshou import as_algorithm, from_minari
from tianshou.data import Collector, CollectStats
from tianshou.env import DummyVectorEnv
from tianshou.trainer import OfflineTrainerParams

from diffagents.agents import get_agent_class
from diffagents.data import make_dataset


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--algo", default="diffusionql", choices=["diffusionql", "idql", "diffuser", "decisiondiffuser"])
    p.add_argument("--dataset", default="diffagents/pendulum/expert-v0")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--steps-per-epoch", type=int, default=1000)
    p.add_argument("--smoke", action="store_true")
    args = p.parse_args()
    torch.set_num_threads(1)

    ds = make_dataset(args.dataset, size=2_000 if args.smoke else None)
    env_id = "Pendulum-v1"
    small = {
        "diffusionql": dict(hidden=(32, 32), critic_hidden=(32, 32), n_candidates=4, batch_size=32),
        "idql": dict(actor_width=32, actor_blocks=1, critic_hidden=(32, 32), n_candidates=4, batch_size=32),
        "diffuser": dict(horizon=8, dim=32, dim_mults=(1, 2), n_diffusion_steps=5, n_samples=2, batch_size=8),
        "decisiondiffuser": dict(horizon=8, dim=32, dim_mults=(1, 2), n_diffusion_steps=5, batch_size=8),
    }[args.algo] if args.smoke else {}
    agent = get_agent_class(args.algo)(env=gym.make(env_id), dataset=ds, seed=0, **small)
    algo = as_algorithm(agent)  # shares the agent's networks, optimizers and EMA
    envs = DummyVectorEnv([lambda: gym.make(env_id)] * 2)
    info = algo.run_training(OfflineTrainerParams(
        buffer=from_minari(ds), batch_size=agent.config.batch_size,
        max_epochs=1 if args.smoke else args.epochs, epoch_num_steps=20 if args.smoke else args.steps_per_epoch,
        test_collector=Collector[CollectStats](algo, envs), test_step_num_episodes=2, show_progress=not args.smoke))
    print(f"Tianshou OfflineTrainer: {info.update_step} gradient steps, best test return {info.best_reward:.1f}")
    agent.save(f"{args.algo}_tianshou.zip")  # the same safe checkpoint as agent.learn() writes


if __name__ == "__main__":
    main()
