"""Multi-agent planning: MADiff (Zhu et al. 2023) trained offline on simple_spread data, run on a PettingZoo env.

The dataset is the local ``diffagents/mpe-spread/expert-v0`` recipe (3 agents, continuous actions, team reward);
evaluation runs the agent on mpe2's ``simple_spread_v3`` Parallel env and reports normalised team returns
(0 = uniform random, 100 = the scripted expert). ``--decentralized`` trains MADiff-D (each agent plans from its
own observation) instead of MADiff-C.

    python examples/madiff_pettingzoo.py --steps 15000
    python examples/madiff_pettingzoo.py --smoke
"""

from __future__ import annotations

import argparse
import functools

import numpy as np
import torch
from diffagents.wrappers.pettingzoo import evaluate
from mpe2 import simple_spread_v3

from diffagents import MADiff
from diffagents.agents.multiagent.madiff import CPU_HYPERPARAMETERS
from diffagents.data import make_dataset

SMOKE = dict(dim=8, dim_mults=(1, 2), horizon=8, n_diffusion_steps=10, sampler="ddim", sampler_steps=4,
             inv_hidden=(32,), batch_size=8, inv_batch_size=32, returns_scale=50.0, n_heads=2)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--steps", type=int, default=15_000)
    p.add_argument("--episodes", type=int, default=20)
    p.add_argument("--decentralized", action="store_true")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--smoke", action="store_true")
    args = p.parse_args()
    torch.set_num_threads(1)

    ds = make_dataset("diffagents/mpe-spread/expert-v0", size=250 if args.smoke else None)
    env_fn = functools.partial(simple_spread_v3.parallel_env, N=3, local_ratio=0.5, max_cycles=25,
                               continuous_actions=True)
    agent = MADiff(env_fn, ds, seed=args.seed, decentralized=args.decentralized,
                   **(SMOKE if args.smoke else CPU_HYPERPARAMETERS))
    agent.learn(20 if args.smoke else args.steps, log_interval=0 if args.smoke else 1_000)
    out = evaluate(agent, env_fn, n_episodes=1 if args.smoke else args.episodes, seed=10_000, reference_scores=ds)
    print(f"MADiff-{'D' if args.decentralized else 'C'} after {agent.num_timesteps} gradient steps: team return "
          f"{out['mean']:.1f} +- {out['std']:.1f}, normalized {np.mean(out['normalized']):.1f} over "
          f"{len(out['returns'])} episodes ({1e3 * out['step_latency_s']:.0f} ms per joint step)")


if __name__ == "__main__":
    main()
