"""Maze2D execution of Diffuser plans: the paper's timetable tracking vs path following, on the same weights.

Diffuser's Maze2D mode (Janner et al. 2022, Sec. 5.1; ``scripts/plan_maze2d.py``) plans once per episode with the
start inpainted at ``h = 0`` and the goal at ``h = H - 1``, then a PD law tracks the planned state of the next
step and holds the last one once the plan has run out. Its agent therefore reaches the goal when the plan does,
about ``H - 1`` steps in, whatever the distance, and the sparse reward (steps spent at the goal) is capped at
``T - H + 1``. This script scores one trained checkpoint (or zoo id) under each execution variant on the same
evaluation seeds, with the first step at the goal, and prints that cap on both normalisations:

* ``track``: the paper (plan once, hold the last planned state);
* ``track-replan``: the same tracking, but a new plan is made from where the agent is whenever the old one has
  run out (what our ``track`` did before it held the last state, kept to measure the difference);
* ``follow:R``: ``execution="follow"`` with ``follow_radius=R`` (ours): the plan as a path, chased at the
  controller's pace, skipping stretches of it that come back within ``R`` of the agent;
* ``follow:R:K``: the same with ``follow_stall_steps=K``: a plan that has not advanced for ``K`` steps short of
  its end (the agent pressed against a wall the plan cuts through) is replaced by a new plan from where the agent
  is;
* ``follow:R:K:supportN``: the same with ``n_samples=N`` candidate plans per decision and
  ``plan_selection="support"`` (ours): the candidate with the least of its path in positions the dataset never
  visits is followed (the grid is fitted on ``--dataset`` at the agent's ``support_resolution``).

The noise-free waypoint controller that defines the reference maximum runs on the same seeds for comparison.

    OMP_NUM_THREADS=1 python benchmarks/maze_execution.py --agent diffuser-pointmaze-umaze \\
        --variants track track-replan follow:0.5 follow:0.5:25 --out benchmarks/results/maze_execution_umaze
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from diffagents.data.safe_env import make_env_from_dataset

# D4RL maze2d reference scores (d4rl/infos.py: the waypoint controller and a random policy on D4RL's maze2d envs)
D4RL_REFS = {"umaze": (23.85, 161.86), "medium": (13.13, 277.39), "large": (6.7, 273.99)}


class FirstHit(gym.Wrapper):  # type: ignore[type-arg]
    """Records, per episode, the first step with a positive (at-the-goal) reward (None if never)."""

    def __init__(self, env: gym.Env) -> None:  # type: ignore[type-arg]
        super().__init__(env)
        self.hits: list[int | None] = []
        self._t = 0

    def reset(self, **kwargs: Any) -> Any:
        self.hits.append(None)
        self._t = 0
        return self.env.reset(**kwargs)

    def step(self, action: Any) -> Any:
        out = self.env.step(action)
        if float(out[1]) > 0 and self.hits[-1] is None:
            self.hits[-1] = self._t
        self._t += 1
        return out


def summarize(name: str, returns: np.ndarray, hits: list[int | None], ref: tuple[float, float]) -> dict[str, Any]:
    from diffagents.evaluation import normalized_scores

    norm = normalized_scores(returns, ref)
    assert norm is not None
    reached = [h for h in hits if h is not None]
    return {"variant": name, "normalized_mean": float(norm.mean()), "normalized_std": float(norm.std()),
            "return_mean": float(returns.mean()), "success": len(reached) / len(hits),
            "first_hit_mean": float(np.mean(reached)) if reached else None}


def run_agent(agent: Any, base: Any, ds: Any, variant: str, episodes: int, seed: int, ref: tuple[float, float]
              ) -> dict[str, Any]:
    """Evaluate ``agent`` with its loaded config ``base`` changed as ``variant`` says."""
    from diffagents.evaluation import evaluate_agent

    changes: dict[str, Any] = {"execution": "follow" if variant.startswith("follow") else "track",
                               "replan_every": None, "follow_stall_steps": None, "n_samples": 1,
                               "plan_selection": "value"}
    if variant == "track-replan":
        changes["replan_every"] = base.horizon  # a new plan each time the old one runs out
    if variant.startswith("follow:"):
        parts = variant.split(":")
        changes["follow_radius"] = float(parts[1])
        changes["follow_stall_steps"] = int(parts[2]) if len(parts) > 2 else None
        if len(parts) > 3:
            if not parts[3].startswith("support"):
                raise ValueError(f"variant {variant!r}: expected follow:R:K:supportN as the 4th field, "
                                 f"got {parts[3]!r}")
            changes["n_samples"], changes["plan_selection"] = int(parts[3][len("support"):]), "support"
    agent.config = dataclasses.replace(base, **changes)  # every variant starts from the loaded settings
    if agent.acting_needs_data:
        agent.set_dataset(ds)
    env = FirstHit(make_env_from_dataset(ds))
    res = evaluate_agent(agent, env, n_episodes=episodes, seed=seed)
    return summarize(variant, res.returns, env.hits[: len(res.returns)], ref)


class ControllerPolicy:
    """The waypoint controller behind SB3's ``predict``, so it is evaluated exactly as the agents are."""

    def __init__(self, maze: Any) -> None:
        from diffagents.data.recipes.maze_controller import WaypointController

        self.controller = WaypointController(maze)

    def predict(self, obs: dict[str, np.ndarray], state: Any = None, episode_start: Any = None,
                deterministic: bool = True) -> tuple[np.ndarray, Any]:
        n = len(obs["observation"])
        return np.stack([self.controller({k: v[i] for k, v in obs.items()}) for i in range(n)]), state


def run_controller(ds: Any, episodes: int, seed: int, ref: tuple[float, float]) -> dict[str, Any]:
    from diffagents.evaluation import evaluate_agent

    env = FirstHit(make_env_from_dataset(ds))
    res = evaluate_agent(ControllerPolicy(env.unwrapped.maze), env, n_episodes=episodes, seed=seed)  # type: ignore[attr-defined]
    return summarize("waypoint controller (noise-free; reference max)", res.returns, env.hits[: len(res.returns)],
                     ref)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--agent", required=True, help="a Diffuser checkpoint (with --dataset) or a zoo id")
    p.add_argument("--dataset", default=None, help="the checkpoint's dataset (default: the zoo entry's)")
    p.add_argument("--variants", nargs="+",
                   default=["track", "track-replan", "follow:0.5", "follow:0.5:25", "follow:0.5:10", "follow:1.0:10"])
    p.add_argument("--episodes", type=int, default=20)
    p.add_argument("--seed", type=int, default=10_000)
    p.add_argument("--out", type=Path, required=True, help="writes OUT.json and OUT.md")
    args = p.parse_args()
    torch.set_num_threads(1)
    from common import hardware

    from diffagents import Diffuser, zoo
    from diffagents.data import make_dataset, reference_scores
    from diffagents.evaluation import normalized_scores

    dataset = args.dataset or zoo.card(args.agent)["dataset"]
    ds = make_dataset(dataset)
    ref = reference_scores(ds)
    assert ref is not None
    agent = Diffuser.load(args.agent, env=make_env_from_dataset(ds)) if Path(args.agent).is_file() \
        else zoo.load(args.agent)
    rows = [run_controller(ds, args.episodes, args.seed, ref)]
    base = agent.config
    for v in args.variants:
        t0 = time.perf_counter()
        rows.append({**run_agent(agent, base, ds, v, args.episodes, args.seed, ref), "eval_s": time.perf_counter() - t0})
        print(rows[-1], flush=True)
    maze = dataset.split("/")[-1].split("-")[0]
    horizon, steps = base.horizon, make_env_from_dataset(ds).spec.max_episode_steps
    cap = steps - horizon + 1
    lo, hi = D4RL_REFS.get(maze, (float("nan"), float("nan")))
    caps = normalized_scores(np.array([cap]), ref), normalized_scores(np.array([cap]), (lo, hi))
    assert caps[0] is not None and caps[1] is not None
    cap_ours, cap_d4rl = float(caps[0][0]), float(caps[1][0])
    meta = {"agent": args.agent, "dataset": dataset, "episodes": args.episodes, "seed": args.seed,
            "horizon": horizon, "episode_steps": steps, "reference_scores": list(ref),
            "timetable_cap_return": cap, "timetable_cap_normalized": cap_ours, "timetable_cap_d4rl_scale": cap_d4rl,
            "hardware": hardware(), "date": time.strftime("%Y-%m-%d %H:%M")}
    args.out.with_suffix(".json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    md = [f"Diffuser `{args.agent}` on `{dataset}` (H = {horizon}, {steps}-step episodes): {args.episodes} "
          f"deterministic episodes per variant, seeds {args.seed}+, the same weights for every row. A plan tracked "
          f"as a timetable arrives at h = H - 1, so its return is at most {steps} - {horizon} + 1 = {cap}: "
          f"{cap_ours:.1f} normalized on our reference scores ({ref[0]:.1f}, {ref[1]:.1f}), {cap_d4rl:.1f} on "
          f"D4RL's maze2d-{maze} scores ({lo}, {hi}). Hardware: {meta['hardware']}.\n",
          "| execution | normalized (mean ± std) | return | success | first step at the goal (mean) |",
          "|---|---:|---:|---:|---:|"]
    md += [f"| {r['variant']} | {r['normalized_mean']:.1f} ± {r['normalized_std']:.1f} | {r['return_mean']:.1f} | "
           f"{100 * r['success']:.0f}% | {'-' if r['first_hit_mean'] is None else round(r['first_hit_mean'])} |"
           for r in rows]
    args.out.with_suffix(".md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
