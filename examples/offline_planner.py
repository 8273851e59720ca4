"""Offline training of a diffusion planner: Diffuser (value-guided, receding horizon) or Decision Diffuser.

    python examples/offline_planner.py --algo diffuser --dataset diffagents/pendulum/medium-v0 --steps 20000
    python examples/offline_planner.py --smoke
"""

from __future__ import annotations

import argparse

import torch

from diffagents.agents import get_agent_class
from diffagents.data import make_dataset, reference_scores
from diffagents.data.safe_env import make_env_from_dataset
from diffagents.evaluation import evaluate_agent

CPU_BUDGET = {  # compute-budget.md §7: small U-Nets, 20-40k steps; paper sizes are the agent defaults
    "diffuser": dict(horizon=32, dim=32, dim_mults=(1, 2, 4), n_samples=16, replan_every=4, sampler="ddim",
                     sampler_steps=10),
    "decisiondiffuser": dict(horizon=32, dim=32, dim_mults=(1, 2, 4), n_diffusion_steps=50, sampler="ddim",
                             sampler_steps=10, returns_scale=200.0, replan_every=4),
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--algo", default="diffuser", choices=sorted(CPU_BUDGET))
    p.add_argument("--dataset", default="diffagents/pendulum/medium-v0")
    p.add_argument("--steps", type=int, default=20_000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--smoke", action="store_true")
    args = p.parse_args()
    torch.set_num_threads(1)

    ds = make_dataset(args.dataset, size=2_000 if args.smoke else None)
    env = make_env_from_dataset(ds)
    kw = dict(CPU_BUDGET[args.algo])
    if args.smoke:
        kw |= dict(horizon=8, dim=32, dim_mults=(1, 2), n_diffusion_steps=5, sampler_steps=3, batch_size=8)
        kw |= dict(n_samples=2) if args.algo == "diffuser" else {}
    agent = get_agent_class(args.algo)(env=env, dataset=ds, seed=args.seed, **kw)
    agent.learn(30 if args.smoke else args.steps, progress_bar=not args.smoke)
    res = evaluate_agent(agent, env, n_episodes=1 if args.smoke else 10, seed=123, ref_scores=reference_scores(ds))
    print(f"{type(agent).__name__}: {res.summary()}")


if __name__ == "__main__":
    main()
