"""Score and latency effect of fast planner sampling: few-step DDIM / DPM-Solver++, plan reuse, warm start.

Loads one trained planner checkpoint (Diffuser or DecisionDiffuser) and evaluates it on its dataset's eval env
once per act-time variant, without retraining: the sampler and step count (``set_sampler``), ``replan_every``
(receding-horizon plan reuse) and, for Diffuser, ``warm_start`` (the shifted previous plan re-noised to that
fraction of the chain). Every variant is evaluated on the same seeds; decision latency (mean) is timed at batch 1
(one thread) over consecutive decisions of one episode, so plan reuse shows up in it. A rerun with the same
``--out``, checkpoint and protocol keeps the variants already measured and runs only the others.

    python benchmarks/offline_benchmark.py --datasets diffagents/hopper/medium-v0 --algos decisiondiffuser \\
        --seeds 0 --steps 3000 --save-dir /tmp/agents ...   # any trained planner checkpoint, or a zoo id
    python benchmarks/planner_samplers.py --algo decisiondiffuser --dataset diffagents/hopper/medium-v0 \\
        --agent /tmp/agents/decisiondiffuser-diffagents-hopper-medium-v0-s0-3000.zip \\
        --variants ddpm:20:1 ddim:10:1 ddim:5:1 dpm:5:1 dpm:3:1 ddpm:20:4 ddim:5:4 --out results/planner_samplers_dd_hopper
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from diffagents.data.safe_env import make_env_from_dataset


def parse_variant(text: str) -> dict[str, Any]:
    """``SAMPLER:STEPS:REPLAN[:WARM]`` -> dict (REPLAN 0 = plan once per episode)."""
    parts = text.split(":")
    if len(parts) not in (3, 4):
        raise SystemExit(f"--variants: expected SAMPLER:STEPS:REPLAN[:WARM], got {text!r}")
    replan = int(parts[2])
    return {"sampler": parts[0], "steps": int(parts[1]), "replan_every": replan or None,
            "warm_start": float(parts[3]) if len(parts) == 4 else None}


def batch1_latency_ms(agent: Any, env: Any, decisions: int, seed: int) -> float:
    """Mean ms per ``predict`` over ``decisions`` consecutive steps of one episode (plan reuse amortised in)."""
    obs, _ = env.reset(seed=seed)
    state, times = None, []
    for t in range(decisions):
        t0 = time.perf_counter()
        action, state = agent.predict(obs, state=state, episode_start=np.array([t == 0]), deterministic=True)
        times.append(time.perf_counter() - t0)
        obs, _, term, trunc, _ = env.step(action)
        if term or trunc:
            obs, _ = env.reset()
            state = None
    return 1e3 * float(np.mean(times))


def previous_rows(args: argparse.Namespace) -> list[dict[str, Any]]:
    """The rows of OUT.json when it was written for the same checkpoint, dataset and evaluation protocol."""
    path = args.out.with_suffix(".json")
    if not path.is_file():
        return []
    old = json.loads(path.read_text())
    same = all(old["meta"][k] == getattr(args, k) for k in ("algo", "agent", "dataset", "episodes", "eval_envs", "seed"))
    return list(old["rows"]) if same else []


def write(args: argparse.Namespace, agent: Any, rows: list[dict[str, Any]], hardware: str) -> str:
    """Write OUT.json and OUT.md (after every variant, so an interrupted run keeps what it measured)."""
    meta = {"algo": args.algo, "agent": args.agent, "dataset": args.dataset, "episodes": args.episodes,
            "eval_envs": args.eval_envs, "seed": args.seed, "config": agent.config.to_dict(), "hardware": hardware,
            "date": time.strftime("%Y-%m-%d %H:%M")}
    args.out.with_suffix(".json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    md = [f"Planner `{args.algo}` checkpoint `{Path(args.agent).name}` on `{args.dataset}`: {args.episodes} deterministic "
          f"episodes per variant ({args.eval_envs} envs at once, seeds {args.seed}+), same weights for every row; "
          f"latency = mean ms per `predict` at batch 1 over {args.latency_decisions} consecutive decisions "
          f"(plan reuse included). Hardware: {meta['hardware']}.\n",
          "| sampler | steps | replan every | warm start | normalized (mean ± std) | mean episode length | "
          "ms / decision (batch 1) |", "|---|---:|---:|---:|---:|---:|---:|"]
    md += [f"| {r['sampler']} | {r['steps']} | {r['replan_every'] or 'once'} | {r['warm_start'] or '-'} | "
           f"{r['normalized_mean']:.1f} ± {r['normalized_std']:.1f} | {r['episode_len_mean']:.0f} | "
           f"{r['latency_ms_batch1']:.1f} |" for r in rows]
    args.out.with_suffix(".md").write_text("\n".join(md) + "\n")
    return "\n".join(md)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--algo", required=True, choices=["diffuser", "decisiondiffuser"])
    p.add_argument("--agent", required=True, help="checkpoint written by the agent's save(), or a zoo id")
    p.add_argument("--dataset", required=True)
    p.add_argument("--variants", nargs="+", required=True, help="SAMPLER:STEPS:REPLAN[:WARM], e.g. ddim:5:4:0.5")
    p.add_argument("--episodes", type=int, default=10)
    p.add_argument("--eval-envs", type=int, default=10)
    p.add_argument("--latency-decisions", type=int, default=32)
    p.add_argument("--seed", type=int, default=10_000)
    p.add_argument("--out", type=Path, required=True, help="writes OUT.json and OUT.md")
    args = p.parse_args()
    torch.set_num_threads(1)
    from common import hardware

    from diffagents.agents import get_agent_class
    from diffagents.data import make_dataset, reference_scores
    from diffagents.evaluation import evaluate_agent

    ds = make_dataset(args.dataset)
    ref = reference_scores(ds)
    if Path(args.agent).is_file():
        agent = get_agent_class(args.algo).load(args.agent, env=make_env_from_dataset(ds))
    else:
        from diffagents import zoo

        agent = zoo.load(args.agent)
    rows = previous_rows(args)
    for text in args.variants:
        v = parse_variant(text)
        if any(all(r[k] == v[k] for k in v) for r in rows):
            continue  # measured by an earlier, interrupted run with the same checkpoint and protocol
        if v["warm_start"] is not None and not hasattr(agent.config, "warm_start"):
            raise SystemExit(f"--variants {text}: {type(agent).__name__} has no warm_start")
        agent.set_sampler(v["sampler"], v["steps"])
        agent.config.replan_every = v["replan_every"]
        if hasattr(agent.config, "warm_start"):
            agent.config.warm_start = v["warm_start"]
        t0 = time.perf_counter()
        res = evaluate_agent(agent, lambda: make_env_from_dataset(ds), n_episodes=args.episodes,
                             seed=args.seed, ref_scores=ref, n_envs=args.eval_envs)
        eval_s = time.perf_counter() - t0
        lat = batch1_latency_ms(agent, make_env_from_dataset(ds), args.latency_decisions, args.seed)
        norm = res.normalized if res.normalized is not None else res.returns
        rows.append({**v, "normalized_mean": float(np.mean(norm)), "normalized_std": float(np.std(norm)),
                     "return_mean": float(res.returns.mean()), "episode_len_mean": float(res.lengths.mean()),
                     "latency_ms_batch1": lat, "eval_s": eval_s})
        print(rows[-1], flush=True)
        md = write(args, agent, rows, hardware())
    print(md)


if __name__ == "__main__":
    main()
