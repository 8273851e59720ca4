"""Which candidate Maze2D plan to follow: per-candidate returns against plan-quality criteria.

For each evaluation start state (the states SB3's ``evaluate_policy`` meets from ``--seed``: one seeded reset,
then plain resets), ``--candidates`` plans are sampled from the agent's weights with independent noise, and each
is followed to the end of its episode with the agent's acting settings (its ``execution`` and stall replanning;
only the first plan is forced, a replacement after a stall is one plan, ``n_samples = 1``). Each candidate is scored by

* ``unvisited``: the fraction of its path in positions the dataset never visits (``plan_selection="support"``);
* ``length``: path length of the planned positions; ``max_step``: its largest step between consecutive states;
* ``gap_10`` / ``gap_25``: a restoration gap (Lee et al., NeurIPS 2023): the plan re-noised to 10% / 25% of the
  sampling chain and denoised again, mean squared change of its states (two draws, averaged).

The report gives, per criterion, the mean return of the candidate it ranks best and the mean within-episode rank
correlation between the criterion and the return (negative = lower is better), next to the mean over all
candidates and the best candidate in hindsight (an oracle).

    OMP_NUM_THREADS=1 python benchmarks/maze_plan_candidates.py --agent diffuser-pointmaze-large --seed 20000 \\
        --episodes 20 --candidates 8 --out benchmarks/results/maze_plan_candidates_large
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from diffagents.data.safe_env import make_env_from_dataset

CRITERIA = ("unvisited", "length", "max_step", "gap_10", "gap_25")


def start_observations(env: Any, seed: int, episodes: int) -> list[Any]:
    """The start observations of ``evaluate_policy`` on one env from ``seed`` (a seeded reset, then plain ones)."""
    obs = [env.reset(seed=seed)[0]]
    obs += [env.reset()[0] for _ in range(episodes - 1)]
    return obs


def restoration_gap(agent: Any, plans: torch.Tensor, obs: torch.Tensor, level: float, draws: int = 2,
                    seed: int = 7) -> torch.Tensor:
    """Mean squared change of the planned states after re-noising to ``level`` of the chain and denoising."""
    planner = agent.ema.model
    start = int(round((1.0 - level) * len(planner.sampler.timesteps)))
    reps, obs_rep = plans.repeat(draws, 1, 1), obs.repeat(draws, 1)
    inpaint = agent._inpaint(tuple(reps.shape), obs_rep, agent._goal_state(obs_rep))
    gen = torch.Generator(device=plans.device).manual_seed(seed)
    restored = planner.plan(reps.shape[0], inpaint, generator=gen, x_init=planner.renoise(reps, start, gen),
                            start_index=start, device=plans.device)
    change = (restored - reps)[..., agent.act_dim:].pow(2).mean(dim=(1, 2))
    return change.view(draws, -1).mean(dim=0)


def follow_episode(agent: Any, env: Any, seed: int, index: int, first_plan: torch.Tensor) -> float:
    """Return of episode ``index`` (of a run from ``seed``) with ``first_plan`` forced as the agent's first plan."""
    obs = start_observations(env, seed, index + 1)[-1]  # the env now sits at that episode's start state
    original, forced = agent._plan, [first_plan]

    def plan(o: torch.Tensor, deterministic: bool, prev: Any = None, salt: int = 0) -> torch.Tensor:
        if forced:
            agent.plans_made += 1
            return forced.pop()[None]
        return original(o, deterministic, prev, salt)

    agent._plan = plan
    try:
        state, start, total = None, np.array([True]), 0.0
        while True:
            action, state = agent.predict(obs, state=state, episode_start=start, deterministic=True)
            start = np.array([False])
            obs, reward, terminated, truncated, _ = env.step(action)
            total += float(reward)
            if terminated or truncated:
                return total
    finally:
        agent._plan = original


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--agent", required=True, help="a Diffuser zoo id")
    p.add_argument("--seed", type=int, default=20_000)
    p.add_argument("--episodes", type=int, default=20)
    p.add_argument("--candidates", type=int, default=8)
    p.add_argument("--out", type=Path, required=True, help="writes OUT.json and OUT.md")
    args = p.parse_args()
    torch.set_num_threads(1)
    from common import hardware

    from diffagents import zoo
    from diffagents.data import make_dataset
    from diffagents.execution.plan_support import VisitedPositions

    dataset = zoo.card(args.agent)["dataset"]
    ds = make_dataset(dataset)
    env = make_env_from_dataset(ds)
    agent = zoo.load(args.agent, env=env)
    agent.config = dataclasses.replace(agent.config, n_samples=1)  # candidates are drawn here, one plan each
    support = agent.plan_support
    if support is None:
        agent.config = dataclasses.replace(agent.config, plan_selection="support")
        agent.set_dataset(ds)
        support = agent.plan_support
        agent.config = dataclasses.replace(agent.config, plan_selection="value")
    assert isinstance(support, VisitedPositions)
    pos = slice(*agent.config.track_pos_dims)
    rows: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    for i, start_obs in enumerate(start_observations(env, args.seed, args.episodes)):
        obs_t = agent.prepare_obs(start_obs)[0].repeat(args.candidates, 1)
        with torch.no_grad():
            gen = torch.Generator(device=obs_t.device).manual_seed(1000 + i)
            plans = agent._sample_plans(obs_t, generator=gen)
            paths = agent._raw(obs_t, plans[..., agent.act_dim:])[..., pos]
            steps = (paths[:, 1:] - paths[:, :-1]).norm(dim=-1)
            scores = {"unvisited": support.unvisited_fraction(paths), "length": steps.sum(dim=1),
                      "max_step": steps.amax(dim=1), "gap_10": restoration_gap(agent, plans, obs_t, 0.10),
                      "gap_25": restoration_gap(agent, plans, obs_t, 0.25)}
            for k in range(args.candidates):
                ret = follow_episode(agent, env, args.seed, i, plans[k])
                rows.append({"episode": i, "candidate": k, "return": ret,
                             **{c: float(scores[c][k]) for c in CRITERIA}})
        print(f"episode {i}: returns {[r['return'] for r in rows[-args.candidates:]]}", flush=True)
    summary = summarize(rows)
    meta = {"agent": args.agent, "dataset": dataset, "seed": args.seed, "episodes": args.episodes,
            "candidates": args.candidates, "acting": {k: getattr(agent.config, k) for k in (
                "execution", "follow_radius", "follow_stall_steps")}, "support_resolution": support.resolution,
            "wall_s": time.perf_counter() - t0, "hardware": hardware(), "date": time.strftime("%Y-%m-%d %H:%M")}
    args.out.with_suffix(".json").write_text(json.dumps({"meta": meta, "summary": summary, "rows": rows}, indent=1))
    md = [f"Diffuser `{args.agent}` on `{dataset}`: {args.episodes} start states (seeds {args.seed}+, as "
          f"`evaluate_policy` meets them), {args.candidates} candidate plans each, every candidate followed to the "
          f"end of its episode (execution {meta['acting']['execution']}, radius {meta['acting']['follow_radius']}, "
          f"stall {meta['acting']['follow_stall_steps']}). Hardware: {meta['hardware']}; {meta['wall_s']:.0f} s.\n",
          f"Mean return over all candidates {summary['mean']:.1f}; best candidate in hindsight "
          f"{summary['oracle']:.1f}; "
          f"worst {summary['worst']:.1f}.\n",
          "| criterion (lowest is followed) | mean return of the chosen candidate | worst episode | "
          "within-episode rank correlation with the return |", "|---|---:|---:|---:|"]
    md += [f"| {c} | {summary[c]['chosen_mean']:.1f} | {summary[c]['chosen_min']:.0f} | "
           f"{summary[c]['rank_corr']:+.2f} |" for c in CRITERIA]
    args.out.with_suffix(".md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    episodes = sorted({r["episode"] for r in rows})
    by_ep = {e: [r for r in rows if r["episode"] == e] for e in episodes}
    out: dict[str, Any] = {
        "mean": float(np.mean([r["return"] for r in rows])),
        "oracle": float(np.mean([max(r["return"] for r in c) for c in by_ep.values()])),
        "worst": float(np.mean([min(r["return"] for r in c) for c in by_ep.values()]))}
    for crit in CRITERIA:
        chosen = [min(c, key=lambda r: r[crit])["return"] for c in by_ep.values()]
        corr = []
        for c in by_ep.values():
            ret = np.array([r["return"] for r in c])
            if ret.std() > 0:
                a = np.argsort(np.argsort([r[crit] for r in c]))
                corr.append(float(np.corrcoef(a, np.argsort(np.argsort(ret)))[0, 1]))
        out[crit] = {"chosen_mean": float(np.mean(chosen)), "chosen_min": float(np.min(chosen)),
                     "rank_corr": float(np.mean(corr)) if corr else 0.0}
    return out


if __name__ == "__main__":
    main()
