"""Training throughput through Tianshou's OfflineTrainer vs through ``agent.learn()`` for the same agent.

Both paths run the agent's own gradient step; the difference is the batch pipeline (Tianshou samples a
``Batch`` from its ``ReplayBuffer`` on the host and we convert it, vs our device-resident sampler) and the
trainer's bookkeeping. Runs are interleaved (learn, Tianshou, learn, ...) to cancel load drift.

    python benchmarks/tianshou_overhead.py --steps 300 --repeats 3
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import gymnasium as gym
import torch
from common import hardware, synthetic_dataset, write


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    torch.set_num_threads(1)
    from diffagents.wrappers.tianshou import as_algorithm, from_minari
    from tianshou.trainer import OfflineTrainerParams

    from diffagents import Diffuser, DiffusionQL

    ds = synthetic_dataset("Pendulum-v1", 20_000, Path(tempfile.mkdtemp()))
    env = gym.make("Pendulum-v1")
    configs = {
        "DiffusionQL (3x256, T=5, batch 256)": (DiffusionQL, dict()),
        "Diffuser (dim 32, (1,2,4), H 32, batch 32)": (Diffuser, dict(horizon=32, dim=32, dim_mults=(1, 2, 4))),
    }
    rows = []
    for label, (cls, kw) in configs.items():
        agent = cls(env=env, dataset=ds, seed=0, **kw)
        algo = as_algorithm(agent)
        buf = algo.process_buffer(from_minari(ds))
        steps = args.steps if cls is DiffusionQL else max(args.steps // 5, 20)
        ours, theirs = [], []
        agent.learn(5)
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            agent.learn(steps, reset_num_timesteps=False)
            ours.append(steps / (time.perf_counter() - t0))
            params = OfflineTrainerParams(buffer=buf, batch_size=agent.config.batch_size, max_epochs=1,
                                          epoch_num_steps=steps, show_progress=False)
            trainer = algo.create_trainer(params)
            trainer.buffer = buf  # already processed: skip a second action mapping
            t0 = time.perf_counter()
            trainer.run()
            theirs.append(steps / (time.perf_counter() - t0))
        row = {"agent": label, "learn_steps_per_s": statistics.median(ours),
               "tianshou_steps_per_s": statistics.median(theirs)}
        row["overhead_ratio"] = row["learn_steps_per_s"] / row["tianshou_steps_per_s"]
        rows.append(row)
        print(row, flush=True)
    md = ["# Tianshou trainer overhead\n",
          f"Command: `python benchmarks/tianshou_overhead.py --steps {args.steps} --repeats {args.repeats}`; "
          f"{hardware()}; {time.strftime('%Y-%m-%d')}. Median over interleaved repeats; data: 20k random "
          "Pendulum-v1 steps. Ratio > 1 means Tianshou's trainer is slower.\n",
          "| agent | agent.learn() steps/s | Tianshou OfflineTrainer steps/s | time ratio (Tianshou / learn) |",
          "|---|---:|---:|---:|"]
    md += [f"| {r['agent']} | {r['learn_steps_per_s']:.1f} | {r['tianshou_steps_per_s']:.1f} | "
           f"{r['overhead_ratio']:.2f} |" for r in rows]
    write("tianshou_overhead", {"rows": rows, "hardware": hardware()}, "\n".join(md) + "\n")


if __name__ == "__main__":
    main()
