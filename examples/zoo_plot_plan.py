"""Load a pretrained zoo agent, run one episode and save a figure of it.

A planner (Diffuser, Decision Diffuser) gets its planned windows drawn against the executed trajectory (x-y over
the maze for PointMaze); any other agent gets its executed states and predicted actions over time.

    python examples/zoo_plot_plan.py --id diffusionql-pendulum-expert --out episode.png
    python examples/zoo_plot_plan.py --smoke
"""

from __future__ import annotations

import argparse

import torch

from diffagents import zoo
from diffagents.plots import plot_plan, plot_rollout


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--id", default="diffusionql-pendulum-expert", help="zoo id (see `diffagents zoo list`)")
    p.add_argument("--out", default="zoo_episode.png")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--smoke", action="store_true", help="a 50-step episode")
    args = p.parse_args()
    torch.set_num_threads(1)

    env = zoo.make_env(args.id)
    agent = zoo.load(args.id, env=env, device="cpu")
    planner = type(agent).__name__ in ("Diffuser", "DecisionDiffuser")
    draw = plot_plan if planner else plot_rollout
    ro = draw(agent, env, args.seed, args.out, max_steps=50 if args.smoke else None)
    print(f"{args.id}: {len(ro.actions)} steps, return {ro.ret:.1f}, {len(ro.plans)} plans; wrote {args.out}")


if __name__ == "__main__":
    main()
