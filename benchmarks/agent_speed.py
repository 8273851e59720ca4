"""Training throughput and decision latency of every agent on CPU (or GPU with --device cuda).

Measures, side by side in one run:
* gradient steps/s of each agent's full update (DiffusionQL: critic + actor through the T=5 chain + EMA, at
  batch 256; the EDP action-approximation variant; IDQL; offline CPQL; Diffusion Policy; the distilled one-step
  student of a DiffusionQL; Diffuser; Decision Diffuser), every agent built by ``diffagents.bench.build_agent``;
* decision latency of ``predict`` at batch 1 (N-candidate selection included) for each agent, and for Diffuser
  per sampler / step count, with and without warm-start replanning;
* Diffuser's plan-cache reuse rate when replanning every k steps.

Data: 5000 uniform-random HalfCheetah-v5 steps (obs 17, act 6), only used for shapes and normalisers.

Usage: ``python benchmarks/agent_speed.py [--quick] [--device cpu|cuda]``; writes benchmarks/results/agent_speed.*
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from common import hardware, synthetic_dataset, write

from diffagents.bench import build_agent, decision_latency, train_rate

#: overrides of each agent's ``bench_config()`` (the same agents and sizes as ``diffagents bench``); policies at paper
#: sizes (DiffusionQL 3x256 MLP, T=5, 50 candidates, batch 256; IDQL LN-ResNet 256x3, 64 candidates; CPQL 1 step)
POLICY_SIZES: dict[str, dict[str, Any]] = {
    "DiffusionQL": {}, "DiffusionQL-EDP": dict(action_approx=True), "IDQL": {}, "CPQL": {}, "DiffusionPolicy": {},
    "DistilledPolicy": {},
}
#: CPU budgets (compute-budget.md §6-7); paper: dim 32, mults (1,2,4,8)
PLANNER_SIZES: dict[str, dict[str, Any]] = {"Diffuser": {}, "DecisionDiffuser": {}}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--quick", action="store_true")
    p.add_argument("--device", default="cpu")
    args = p.parse_args()
    torch.set_num_threads(1)
    quick = args.quick
    sync = args.device.startswith("cuda")
    root = Path(tempfile.mkdtemp())
    ds = synthetic_dataset("HalfCheetah-v5", 2000 if quick else 5000, root)
    env = gym.make("HalfCheetah-v5")
    obs = env.observation_space.sample().astype(np.float32)
    rows: list[dict[str, Any]] = []
    for name, kw in {**POLICY_SIZES, **PLANNER_SIZES}.items():
        agent = build_agent(name.split("-")[0], env, ds, device=args.device, **kw)
        steps = 10 if quick else (200 if name in POLICY_SIZES else 60)
        rate = train_rate(agent, steps, sync=sync)
        lat = decision_latency(agent, obs, 3 if quick else 15, sync)
        rows.append({"agent": name, "train_steps_per_s": rate, "batch": agent.config.batch_size,
                     "latency_ms": 1e3 * lat})
        print(rows[-1], flush=True)
        if name == "DiffusionQL":
            for sampler, steps_ in (("ddim", 2), ("dpm", 3)):
                agent.set_sampler(sampler, steps_)
                rows.append({"agent": f"DiffusionQL act-time {sampler} {steps_} steps", "train_steps_per_s": None,
                             "batch": None, "latency_ms": 1e3 * decision_latency(agent, obs, 3 if quick else 15, sync)})
                print(rows[-1], flush=True)
    # Diffuser samplers, warm start and plan reuse
    sampler_rows: list[dict[str, Any]] = []
    for n_samples in (1, 64):
        for sampler, n in (("ddpm", 20), ("ddim", 10), ("ddim", 5), ("dpm", 10), ("dpm", 5)):
            agent = build_agent("Diffuser", env, ds, device=args.device, n_samples=n_samples, sampler=sampler,
                                sampler_steps=n)
            lat = decision_latency(agent, obs, 3 if quick else 10, sync)
            sampler_rows.append({"n_samples": n_samples, "sampler": sampler, "steps": n, "latency_ms": 1e3 * lat})
            print(sampler_rows[-1], flush=True)
    reuse_rows = []
    for replan, warm in ((1, None), (4, None), (4, 0.5)):
        agent = build_agent("Diffuser", env, ds, device=args.device, n_samples=1, replan_every=replan,
                            warm_start=warm)
        state, start = None, np.array([True])
        n_dec = 12 if quick else 64
        t0 = time.perf_counter()
        for _ in range(n_dec):
            _, state = agent.predict(obs[None], state=state, episode_start=start, deterministic=True)
            start = np.array([False])
        per = (time.perf_counter() - t0) / n_dec
        reuse_rows.append({"replan_every": replan, "warm_start": warm, "reuse_rate": agent.plan_reuse_rate(),
                           "ms_per_decision": 1e3 * per})
        print(reuse_rows[-1], flush=True)
    md = [f"# Agent speed ({'quick' if quick else 'full'} run)\n",
          f"Command: `python benchmarks/agent_speed.py{' --quick' if quick else ''} --device {args.device}`; "
          f"hardware: {hardware()}; date {time.strftime('%Y-%m-%d')}. Data: random HalfCheetah-v5 (obs 17, act 6). "
          "The 2 cores were shared with other jobs during the run: compare rows, not absolute numbers.\n",
          "| agent (size) | batch | train grad steps/s | decision latency, batch 1 (ms) |", "|---|---:|---:|---:|"]
    for r in rows:
        rate = "" if r["train_steps_per_s"] is None else f"{r['train_steps_per_s']:.1f}"
        md.append(f"| {r['agent']} | {r['batch'] or ''} | {rate} | {r['latency_ms']:.2f} |")
    md += ["\nDiffuser (dim 32, mults (1,2,4), H 32, T 20, value guidance on) plan latency at batch 1:\n",
           "| candidate plans | sampler | steps | latency (ms) |", "|---:|---|---:|---:|"]
    md += [f"| {r['n_samples']} | {r['sampler']} | {r['steps']} | {r['latency_ms']:.1f} |" for r in sampler_rows]
    md += ["\nReceding-horizon plan reuse (1 candidate plan, DDPM 20 steps):\n",
           "| replan every | warm start | plan reuse rate | ms / decision |", "|---:|---|---:|---:|"]
    md += [f"| {r['replan_every']} | {r['warm_start']} | {r['reuse_rate']:.2f} | {r['ms_per_decision']:.1f} |"
           for r in reuse_rows]
    write("agent_speed" + ("_quick" if quick else ""), {"hardware": hardware(), "rows": rows,
                                                        "diffuser_samplers": sampler_rows, "reuse": reuse_rows},
          "\n".join(md) + "\n")


if __name__ == "__main__":
    main()
