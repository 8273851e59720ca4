"""Distilled 1-step actor vs its teacher: decision latency ratio and score change.

Teacher: the zoo's ``diffusionql-pendulum-expert`` (Diffusion-QL, T = 5 DDPM chain, 10 candidates). The student is
``diffagents.distill(teacher, steps)`` (consistency distillation, 1 network evaluation per candidate). Both are
evaluated on the same 20 seeded deterministic episodes, and timed on the same batch-1 observations, interleaved.

    python benchmarks/distill.py --steps 2000
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
from common import hardware, write

from diffagents.data.safe_env import make_env_from_dataset


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--episodes", type=int, default=20)
    args = p.parse_args()
    torch.set_num_threads(1)
    from diffagents import distill, zoo
    from diffagents.data import make_dataset, reference_scores
    from diffagents.evaluation import evaluate_agent

    teacher = zoo.load("diffusionql-pendulum-expert")
    ds = make_dataset("diffagents/pendulum/expert-v0")
    teacher.set_dataset(ds)
    t0 = time.perf_counter()
    student = distill(teacher, steps=args.steps, seed=0)
    distill_s = time.perf_counter() - t0
    env = make_env_from_dataset(ds)
    ref = reference_scores(ds)
    res = {name: evaluate_agent(agent, env, n_episodes=args.episodes, seed=20_000, ref_scores=ref)
           for name, agent in (("teacher", teacher), ("student", student))}
    obs = np.random.default_rng(0).normal(size=(200, 3)).astype(np.float32)
    lat: dict[str, list[float]] = {"teacher": [], "student": []}
    for o in obs:  # interleaved timing
        for name, agent in (("teacher", teacher), ("student", student)):
            t = time.perf_counter()
            agent.predict(o, deterministic=True)
            lat[name].append(time.perf_counter() - t)
    med = {k: 1e3 * statistics.median(v) for k, v in lat.items()}
    rows = {k: {"return_mean": r.mean, "return_std": r.std, "normalized_mean": float(np.mean(r.normalized)),
                "normalized_std": float(np.std(r.normalized)), "latency_ms": med[k]} for k, r in res.items()}
    print(rows, flush=True)
    md = ["# Distilled 1-step actor vs its teacher\n",
          f"Command: `python benchmarks/distill.py --steps {args.steps}`; teacher `diffusionql-pendulum-expert` "
          f"(zoo), student `distill(teacher, steps={args.steps}, seed=0)` ({distill_s:.0f} s); "
          f"{args.episodes} deterministic episodes (seeds 20000+); latency: median of 200 interleaved batch-1 "
          f"`predict` calls; {hardware()}; {time.strftime('%Y-%m-%d')}.\n",
          "| actor | network evaluations per candidate | normalized score | return | latency (ms) |",
          "|---|---:|---:|---:|---:|"]
    for k, evals in (("teacher", teacher.config.n_diffusion_steps), ("student", 1)):
        r = rows[k]
        md.append(f"| {k} | {evals} | {r['normalized_mean']:.1f} ± {r['normalized_std']:.1f} | "
                  f"{r['return_mean']:.1f} ± {r['return_std']:.1f} | {r['latency_ms']:.2f} |")
    md.append(f"\nLatency ratio teacher / student: {med['teacher'] / med['student']:.2f}x; score change "
              f"{rows['student']['normalized_mean'] - rows['teacher']['normalized_mean']:+.1f} points.\n")
    write("distill", {"rows": rows, "steps": args.steps, "hardware": hardware()}, "\n".join(md) + "\n")


if __name__ == "__main__":
    main()
