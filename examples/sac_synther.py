"""Online SAC in Stable-Baselines3 with SynthER synthetic replay (Lu et al. 2023, Sec. 5) on Pendulum-v1.

Half of every SAC batch comes from a diffusion generator retrained every ``--retrain-every`` env steps on the
real replay buffer; ``gradient_steps`` sets the update-to-data ratio.

    python examples/sac_synther.py --steps 20000
    python examples/sac_synther.py --smoke
"""

from __future__ import annotations

import argparse

import gymnasium as gym
import torch
from diffagents.wrappers.sb3 import SynthERReplayBuffer
from stable_baselines3 import SAC
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.monitor import Monitor


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--env", default="Pendulum-v1")
    p.add_argument("--steps", type=int, default=20_000, help="env steps")
    p.add_argument("--retrain-every", type=int, default=5_000)
    p.add_argument("--utd", type=int, default=5, help="gradient steps per env step")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--smoke", action="store_true", help="tiny networks and budget")
    args = p.parse_args()
    torch.set_num_threads(1)

    steps = 300 if args.smoke else args.steps
    generator = dict(width=32, n_blocks=1, batch_size=64, sampler_steps=3) if args.smoke else \
        dict(width=256, n_blocks=3, sampler_steps=32)
    model = SAC("MlpPolicy", gym.make(args.env), learning_starts=100 if args.smoke else 1_000,
                batch_size=32 if args.smoke else 256, gradient_steps=1 if args.smoke else args.utd, train_freq=1,
                policy_kwargs=dict(net_arch=[32, 32] if args.smoke else [256, 256]), seed=args.seed, device="cpu",
                replay_buffer_class=SynthERReplayBuffer,
                replay_buffer_kwargs=dict(synthetic_ratio=0.5, retrain_every=150 if args.smoke else args.retrain_every,
                                          generator_steps=10 if args.smoke else 2_000,
                                          synthetic_size=128 if args.smoke else 50_000,
                                          synthesizer_kwargs=generator, seed=args.seed))
    model.learn(steps, progress_bar=not args.smoke)
    buf = model.replay_buffer
    assert isinstance(buf, SynthERReplayBuffer)
    mean, std = evaluate_policy(model, Monitor(gym.make(args.env)), n_eval_episodes=2 if args.smoke else 10)
    fit_s = sum(r["fit_s"] for r in buf.retrain_log)
    print(f"SAC + SynthER after {model.num_timesteps} env steps ({model._n_updates} gradient steps): return "
          f"{mean:.1f} +- {std:.1f}; generator retrained {len(buf.retrain_log)} times ({fit_s:.1f} s), "
          f"{buf.synthetic_count} synthetic transitions in the pool")


if __name__ == "__main__":
    main()
