"""Soak test: many ``predict`` calls and a long ``learn`` run at constant memory.

Measures resident memory (RSS, from /proc/self/statm) after a warm-up and at the end; the acceptance target is
growth below 5%.

    python benchmarks/soak.py --predicts 100000 --learn-steps 20000
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
from common import hardware, synthetic_dataset, write


def rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--predicts", type=int, default=100_000)
    p.add_argument("--learn-steps", type=int, default=20_000)
    args = p.parse_args()
    torch.set_num_threads(1)
    from diffagents import DiffusionQL

    ds = synthetic_dataset("Pendulum-v1", 5000, Path(tempfile.mkdtemp()))
    agent = DiffusionQL(env=gym.make("Pendulum-v1"), dataset=ds, seed=0, hidden=(64, 64), critic_hidden=(64, 64),
                        n_candidates=4, batch_size=64)
    rows = []
    obs = np.zeros(3, dtype=np.float32)
    warm = min(2000, args.predicts // 10)
    for _ in range(warm):
        agent.predict(obs)
    start, t0 = rss_mb(), time.perf_counter()
    for i in range(args.predicts):
        obs[0] = np.cos(i)
        agent.predict(obs, deterministic=bool(i % 2))
    end = rss_mb()
    rows.append({"phase": f"{args.predicts} predict calls", "rss_start_mb": start, "rss_end_mb": end,
                 "growth_pct": 100 * (end - start) / start, "seconds": time.perf_counter() - t0})
    print(rows[-1], flush=True)
    agent.learn(min(1000, args.learn_steps // 10))
    start, t0 = rss_mb(), time.perf_counter()
    agent.learn(args.learn_steps, reset_num_timesteps=False, log_interval=1000)
    end = rss_mb()
    rows.append({"phase": f"learn {args.learn_steps} gradient steps", "rss_start_mb": start, "rss_end_mb": end,
                 "growth_pct": 100 * (end - start) / start, "seconds": time.perf_counter() - t0})
    print(rows[-1], flush=True)
    md = ["# Soak: memory over long runs\n",
          f"Command: `python benchmarks/soak.py --predicts {args.predicts} --learn-steps {args.learn_steps}`; "
          f"DiffusionQL (2x64 MLPs, 4 candidates) on 5000 random Pendulum-v1 steps; {hardware()}; "
          f"{time.strftime('%Y-%m-%d')}.\n",
          "| phase | RSS start (MB) | RSS end (MB) | growth | wall s |", "|---|---:|---:|---:|---:|"]
    md += [f"| {r['phase']} | {r['rss_start_mb']:.1f} | {r['rss_end_mb']:.1f} | {r['growth_pct']:+.2f}% | "
           f"{r['seconds']:.0f} |" for r in rows]
    write("soak", {"rows": rows, "hardware": hardware()}, "\n".join(md) + "\n")


if __name__ == "__main__":
    main()
