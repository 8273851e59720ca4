"""Online CPQL vs SB3 SAC at equal env steps (Chen et al. 2023, "Boosting Continuous Control with Consistency
Policy", online setting).

Both agents collect their own data with SB3's off-policy loop (same ``learning_starts``, ``train_freq`` 1,
``gradient_steps`` 1, batch 256, buffer = all steps). CPQL uses the official online defaults of
``agents/ql_cm.py`` (alpha 0.05, no Q normalisation, 1-step consistency sampling; ReLU instead of Mish on CPU);
SAC uses SB3's defaults. Variant ``cpql-recon`` trains CPQL with ``bc_loss="recon"`` (the official code's
reconstruction BC term, the offline default) instead of the online default ``"consistency"``. ``--reuse`` takes
the runs of variants not being run from an earlier report with the same env and schedule, so a new variant joins
the table and the plot without training the others again (the report names the reused file and its hardware).
Output ``benchmarks/results/<out>.{json,md,png}``: evaluation returns at fixed env-step
budgets (mean +- std over seeds), learning curves and wall time.

    OMP_NUM_THREADS=1 PYTHONPATH=. python benchmarks/online_cpql.py --env Pendulum-v1 --steps 10000 \
        --eval-every 1000 --learning-starts 1000 --out online_cpql_pendulum
    OMP_NUM_THREADS=1 PYTHONPATH=. python benchmarks/online_cpql.py --env Hopper-v5 --steps 30000 \
        --eval-every 2500 --learning-starts 5000 --out online_cpql_hopper
    OMP_NUM_THREADS=1 PYTHONPATH=. python benchmarks/online_cpql.py --env Hopper-v5 --steps 15000 \
        --eval-every 2500 --eval-episodes 5 --learning-starts 5000 --variants cpql-recon \
        --reuse benchmarks/results/online_cpql_hopper.json --out online_cpql_hopper
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import gymnasium as gym
import torch

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


def run(variant: str, seed: int, args: argparse.Namespace) -> dict[str, Any]:
    """Train one variant for ``args.steps`` env steps, evaluating every ``args.eval_every``."""
    from stable_baselines3 import SAC

    from diffagents import CPQL

    torch.set_num_threads(1)
    eval_env = gym.make(args.env)
    eval_env.reset(seed=10_000 + seed)
    curve: Curve = []
    env = gym.make(args.env)
    env.reset(seed=seed)
    common = dict(learning_starts=args.learning_starts, batch_size=args.batch_size, buffer_size=args.steps,
                  train_freq=1, gradient_steps=1)
    if variant in ("cpql", "cpql-recon"):
        model: Any = CPQL(env=env, seed=seed, device="cpu", bc_loss="recon" if variant == "cpql-recon" else None,
                          **common)
    else:
        model = SAC("MlpPolicy", env, seed=seed, device="cpu", **common)
    t0 = time.perf_counter()
    model.learn(args.steps, callback=eval_curve_callback(eval_env, args.eval_every, args.eval_episodes, curve))
    wall = time.perf_counter() - t0
    print(f"{variant} seed {seed}: {curve[-1] if curve else None} in {wall:.0f} s", flush=True)
    return {"variant": variant, "seed": seed, "curve": curve, "wall_s": wall, "hardware": hardware()}


RECON = (", cpql-recon = the same with the official code's reconstruction BC term (`bc_loss=\"recon\"`, the offline "
         "default) instead of the consistency loss")


def reuse_runs(args: argparse.Namespace) -> tuple[list[dict[str, Any]], list[str]]:
    """Runs of the variants not being run now from ``args.reuse`` (an earlier report of this script), checked to
    share the env, env steps, seeds and evaluation schedule; plus the report line that says so."""
    old = json.loads(args.reuse.read_text())
    for key in ("env", "steps", "seeds", "eval_every", "eval_episodes", "learning_starts", "batch_size"):
        if old["args"][key] != getattr(args, key):
            raise ValueError(f"--reuse {args.reuse}: {key} differs: expected {getattr(args, key)!r}, "
                             f"got {old['args'][key]!r}")
    runs = [{"hardware": old["hardware"], **r} for r in old["runs"] if r["variant"] not in args.variants]
    names = sorted({r["variant"] for r in runs})
    note = f"Runs of {', '.join(names)} reused from an earlier report (`{args.reuse.name}` as it was then; " \
           f"hardware: {', '.join(sorted({r['hardware'] for r in runs}))}); their wall times are that hardware's. " \
           f"To rerun them: the command below with `--variants {' '.join(names)}` and without `--reuse`."
    return runs, [note]


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--env", default="Pendulum-v1")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--steps", type=int, default=10_000)
    p.add_argument("--budgets", type=int, nargs="*", default=None)
    p.add_argument("--eval-every", type=int, default=1000)
    p.add_argument("--eval-episodes", type=int, default=10)
    p.add_argument("--learning-starts", type=int, default=1000)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--variants", nargs="+", default=["sac", "cpql"], choices=["sac", "cpql", "cpql-recon"])
    p.add_argument("--reuse", type=Path, default=None,
                   help="an earlier report's JSON: its runs of other variants join this report's table")
    p.add_argument("--out", default="online_cpql")
    args = p.parse_args(argv)
    budgets = args.budgets or default_budgets(args.steps, args.eval_every)
    reused, reuse_note = reuse_runs(args) if args.reuse else ([], [])
    runs = reused + [run(v, s, args) for s in args.seeds for v in args.variants]
    variants = list(dict.fromkeys(r["variant"] for r in runs))
    table = budget_table(runs, variants, budgets)
    plot_curves(runs, RESULTS / f"{args.out}.png", f"{args.env}: online CPQL vs SAC")
    cmd = "OMP_NUM_THREADS=1 PYTHONPATH=. python benchmarks/online_cpql.py " + " ".join(
        argv if argv is not None else sys.argv[1:])
    lines = [f"# Online CPQL vs SAC on {args.env}", "",
             f"Seeds {args.seeds}; {args.steps} env steps; learning_starts {args.learning_starts}, batch "
             f"{args.batch_size}, 1 gradient step per env step for both; SAC = SB3 defaults, CPQL = official online "
             f"defaults (ReLU){RECON if 'cpql-recon' in variants else ''}. Eval: {args.eval_episodes} deterministic "
             f"episodes every {args.eval_every} steps.",
             f"Hardware: {hardware()}.", *reuse_note, ""] + table_lines(table, budgets)
    payload = {"args": {**vars(args), "reuse": str(args.reuse) if args.reuse else None}, "budgets": budgets,
               "table": table, "runs": runs, "hardware": hardware()}
    return finish_report(args.out, lines, cmd, payload)


if __name__ == "__main__":
    main()
