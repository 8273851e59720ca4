"""Online SynthER: SAC + SynthERReplayBuffer vs plain SAC at equal env steps (Lu et al. 2023, Sec. 5).

Both variants use the same SAC settings (network, batch, update-to-data ratio ``--utd`` = SB3
``gradient_steps``); the SynthER variant serves ``--ratio`` synthetic rows per batch from a generator retrained
every ``--retrain-every`` env steps on the real buffer. The paper uses UTD 20, 50 % synthetic, retraining every
10k steps with a width-1024 x 6 EDM model for 100k steps and 1M samples: far beyond a CPU, so the defaults here
are a reduced configuration (compute-budget.md Sec. 6).

Output (``benchmarks/results/<out>.{json,md,png}``): evaluation returns at fixed env-step budgets (mean +- std
over seeds), learning curves, wall time and generator training / sampling cost.

Full run (too long for a CI session; ~3 x 2 x 30-60 CPU-min)::

    OMP_NUM_THREADS=1 PYTHONPATH=. python benchmarks/synther_online.py --seeds 0 1 2 --steps 30000 --utd 5

Smoke run (recorded in results/synther_online_smoke.md)::

    OMP_NUM_THREADS=1 PYTHONPATH=. python benchmarks/synther_online.py --seeds 0 --steps 3000 --eval-every 1000 \
        --retrain-every 1000 --generator-steps 300 --synthetic-size 5000 --width 128 --blocks 2 --utd 2 \
        --out synther_online_smoke
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchmarks.common import RESULTS, hardware  # noqa: E402
from benchmarks.online_curves import (  # noqa: E402
    Curve,
    budget_table,
    default_budgets,
    eval_curve_callback,
    finish_report,
    plot_curves,
    table_lines,
)


def _import_buffer() -> Any:
    """``diffagents.wrappers.sb3`` (aliasing the source ``wrappers/`` folder when diffagents is not installed)."""
    try:
        from diffagents.wrappers.sb3 import SynthERReplayBuffer
    except ModuleNotFoundError:
        spec = importlib.util.spec_from_file_location(
            "diffagents.wrappers", ROOT / "wrappers" / "__init__.py", submodule_search_locations=[str(ROOT / "wrappers")])
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules["diffagents.wrappers"] = module
        spec.loader.exec_module(module)
        from diffagents.wrappers.sb3 import SynthERReplayBuffer
    return SynthERReplayBuffer


def run(variant: str, seed: int, args: argparse.Namespace) -> dict[str, Any]:
    from stable_baselines3 import SAC

    eval_env = gym.make(args.env)
    curve: Curve = []

    kwargs: dict[str, Any] = dict(learning_starts=args.learning_starts, batch_size=args.batch_size,
                                  gradient_steps=args.utd, train_freq=1, buffer_size=max(args.steps, 1000),
                                  policy_kwargs=dict(net_arch=args.net), seed=seed, device="cpu")
    if variant == "sac+synther":
        kwargs["replay_buffer_class"] = _import_buffer()
        kwargs["replay_buffer_kwargs"] = dict(
            synthetic_ratio=args.ratio, retrain_every=args.retrain_every, generator_steps=args.generator_steps,
            synthetic_size=args.synthetic_size, seed=seed,
            synthesizer_kwargs=dict(width=args.width, n_blocks=args.blocks, sampler_steps=args.sample_steps,
                                    batch_size=args.generator_batch, process=args.process, device="cpu"))
    env = gym.make(args.env)
    env.reset(seed=seed)
    model = SAC("MlpPolicy", env, **kwargs)
    t0 = time.perf_counter()
    model.learn(args.steps, callback=eval_curve_callback(eval_env, args.eval_every, args.eval_episodes, curve))
    wall = time.perf_counter() - t0
    out: dict[str, Any] = {"variant": variant, "seed": seed, "curve": curve, "wall_s": wall}
    log = getattr(model.replay_buffer, "retrain_log", None)
    if log is not None:
        out["generator"] = {"retrains": len(log), "fit_s": sum(r["fit_s"] for r in log),
                            "sample_s": sum(r["sample_s"] for r in log), "log": log}
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--env", default="InvertedDoublePendulum-v5")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--steps", type=int, default=30_000)
    p.add_argument("--budgets", type=int, nargs="*", default=None, help="env-step budgets (default: quarters of --steps, on the eval grid)")
    p.add_argument("--eval-every", type=int, default=2500)
    p.add_argument("--eval-episodes", type=int, default=5)
    p.add_argument("--learning-starts", type=int, default=1000)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--net", type=int, nargs="+", default=[256, 256])
    p.add_argument("--utd", type=int, default=5, help="SB3 gradient_steps per env step (both variants)")
    p.add_argument("--ratio", type=float, default=0.5)
    p.add_argument("--retrain-every", type=int, default=5000)
    p.add_argument("--generator-steps", type=int, default=3000)
    p.add_argument("--generator-batch", type=int, default=256)
    p.add_argument("--synthetic-size", type=int, default=50_000)
    p.add_argument("--width", type=int, default=256)
    p.add_argument("--blocks", type=int, default=3)
    p.add_argument("--process", choices=["edm", "discrete"], default="edm")
    p.add_argument("--sample-steps", type=int, default=32)
    p.add_argument("--variants", nargs="+", default=["sac", "sac+synther"])
    p.add_argument("--note", default="", help="a label printed at the top of the report (e.g. SMOKE RUN)")
    p.add_argument("--out", default="synther_online")
    args = p.parse_args(argv)
    budgets = args.budgets or default_budgets(args.steps, args.eval_every)
    runs = [run(v, s, args) for s in args.seeds for v in args.variants]
    table = budget_table(runs, args.variants, budgets)
    for v in args.variants:
        rs = [r for r in runs if r["variant"] == v]
        gens = [r["generator"] for r in rs if "generator" in r]
        if gens:
            table[v]["generator_fit_s"] = float(np.mean([g["fit_s"] for g in gens]))
            table[v]["generator_sample_s"] = float(np.mean([g["sample_s"] for g in gens]))
            table[v]["retrains"] = float(np.mean([g["retrains"] for g in gens]))
    plot_curves(runs, RESULTS / f"{args.out}.png", f"{args.env}: SAC vs SAC + SynthER (UTD {args.utd})")
    cmd = "OMP_NUM_THREADS=1 PYTHONPATH=. python benchmarks/synther_online.py " + " ".join(
        argv if argv is not None else sys.argv[1:])
    lines = [f"# Online SynthER on {args.env}", "", *([f"**{args.note}**", ""] if args.note else []),
             f"Seeds {args.seeds}; {args.steps} env steps; SAC net {args.net}, batch {args.batch_size}, UTD {args.utd}, "
             f"learning_starts {args.learning_starts}; SynthER: ratio {args.ratio}, retrain every {args.retrain_every} "
             f"steps for {args.generator_steps} steps (width {args.width} x {args.blocks}, {args.process}, "
             f"{args.sample_steps} sampling steps), pool {args.synthetic_size}. Eval: {args.eval_episodes} "
             f"deterministic episodes every {args.eval_every} steps.", f"Hardware: {hardware()}.", ""]
    lines += table_lines(table, budgets, {"generator fit s": lambda r: f"{r.get('generator_fit_s', 0):.0f}",
                                          "generator sample s": lambda r: f"{r.get('generator_sample_s', 0):.0f}"})
    payload = {"args": vars(args), "budgets": budgets, "table": table, "runs": runs, "hardware": hardware()}
    return finish_report(args.out, lines, cmd, payload)


if __name__ == "__main__":
    main()
