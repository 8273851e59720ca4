"""Offline learning curves: normalized score against gradient steps, ours vs d3rlpy BC / TD3+BC / IQL.

One training run per (algorithm, seed) up to ``max(--eval-at)`` gradient steps, evaluated (``--episodes``
deterministic episodes, env seeded ``10000 + seed + episode``, the protocol of ``offline_benchmark.py``) when it
reaches each step count of ``--eval-at``. Ours are evaluated from an SB3 callback inside ``learn``, d3rlpy from
``fit``'s ``epoch_callback`` with one epoch per evaluation interval, so every learning-rate schedule runs over the
whole run (a point of the curve is not a separate run of that many steps). Each point appends one JSON line to
``--out``; points already there are not run or written again (several processes can share one ``--out``). A killed
run is rerun from the start unless ``--checkpoint-dir`` is given: our agents then write a training checkpoint there
every ``--checkpoint-every`` steps and a rerun resumes from the latest one (``learn(checkpoint_dir=...)``, which ends
with the weights of an uninterrupted run on CPU); d3rlpy runs always restart. ``--report`` writes
``results/<name>.{md,png}`` from a results file; ``make_results.py`` adds the hand-written ``<name>.notes.md``.

    python offline_curves.py --dataset diffagents/hopper/medium-v0 --algos diffusionql td3+bc iql bc \\
        --seeds 0 --eval-at 3000 10000 20000 30000 40000 --out results/curves_hopper_medium.jsonl
    python offline_curves.py --report results/curves_hopper_medium.jsonl
    python offline_curves.py --summary results/curves_*.jsonl --eval-at 40000
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import shutil
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.common import RESULTS, hardware  # noqa: E402
from benchmarks.offline_benchmark import D3RLPY, OURS, d3rlpy_dataset, d3rlpy_model, d3rlpy_returns  # noqa: E402
from diffagents.data.safe_env import make_env_from_dataset

Point = dict[str, Any]


def curve_ours(algo: str, ds: Any, env: Any, seed: int, eval_at: list[int], episodes: int,
               hyper: dict[str, Any], on_point: Callable[[Point], None], ckpt_dir: Path | None = None,
               ckpt_every: int = 1000) -> None:
    """Train one of our agents to ``max(eval_at)`` steps, evaluating at each step count of ``eval_at``.

    With ``ckpt_dir`` the run checkpoints there every ``ckpt_every`` steps and resumes from the latest checkpoint. A
    checkpoint at step k is written before the evaluation at k, so a run resumed at an evaluation step evaluates it
    again (the point is written once) and the training after it is the uninterrupted run's. ``train_s`` excludes every
    evaluation: the seconds of each are kept in ``ckpt_dir/eval_s.json`` and subtracted from the restored
    ``train_wall_s``, which counts the evaluations before the checkpoint (time lost after the last checkpoint of a
    killed run is not counted).
    """
    from stable_baselines3.common.callbacks import BaseCallback

    from diffagents.agents import get_agent_class
    from diffagents.evaluation import evaluate_agent

    agent = get_agent_class(algo)(env=env, dataset=ds, seed=seed, **hyper)
    eval_log = ckpt_dir / "eval_s.json" if ckpt_dir is not None else None
    eval_times: dict[int, float] = ({int(k): v for k, v in json.loads(eval_log.read_text()).items()}
                                    if eval_log is not None and eval_log.exists() else {})
    t0, wall_start = time.perf_counter(), 0.0

    class EvalAt(BaseCallback):
        def _on_training_start(self) -> None:  # after a resume: the restored wall time; later evaluations are redone
            nonlocal t0, wall_start
            t0, wall_start = time.perf_counter(), self.model.train_wall_s
            for k in [k for k in eval_times if k >= self.num_timesteps]:
                del eval_times[k]
            if self.num_timesteps in eval_at:
                self._evaluate()

        def _on_step(self) -> bool:
            if self.num_timesteps in eval_at:
                self._evaluate()
            return True

        def _evaluate(self) -> None:
            t1 = time.perf_counter()
            res = evaluate_agent(self.model, env, n_episodes=episodes, seed=10_000 + seed)
            eval_times[self.num_timesteps] = time.perf_counter() - t1
            if eval_log is not None:  # atomic: a run killed mid-write resumes from the previous file
                tmp = eval_log.with_suffix(".tmp")
                tmp.write_text(json.dumps(eval_times))
                tmp.replace(eval_log)
            on_point({"steps": self.num_timesteps, "returns": res.returns.tolist(),
                      "train_s": wall_start + time.perf_counter() - t0 - sum(eval_times.values())})

    agent.learn(max(eval_at), callback=EvalAt(), checkpoint_dir=ckpt_dir, checkpoint_every=ckpt_every)
    if ckpt_dir is not None:  # finished: the checkpoints are no longer needed
        shutil.rmtree(ckpt_dir, ignore_errors=True)


def curve_d3rlpy(algo: str, ds: Any, env: Any, seed: int, eval_at: list[int], episodes: int,
                 on_point: Callable[[Point], None]) -> None:
    """Train a d3rlpy baseline to ``max(eval_at)`` steps, evaluating at each step count of ``eval_at``."""
    import d3rlpy

    dataset = d3rlpy_dataset(ds)
    model = d3rlpy_model(algo, env, seed)
    t0, eval_s = time.perf_counter(), 0.0

    def on_epoch(algo_: Any, epoch: int, total_step: int) -> None:
        nonlocal eval_s
        if total_step in eval_at:
            t1 = time.perf_counter()
            returns = d3rlpy_returns(algo_, ds, env, seed, episodes)
            eval_s += time.perf_counter() - t1
            on_point({"steps": total_step, "returns": returns, "train_s": time.perf_counter() - t0 - eval_s})

    interval = math.gcd(*eval_at)
    model.fit(dataset, n_steps=max(eval_at), n_steps_per_epoch=interval, show_progress=False,
              save_interval=10**9, logger_adapter=d3rlpy.logging.NoopAdapterFactory(), epoch_callback=on_epoch)


def read_points(path: Path) -> list[dict[str, Any]]:
    """The points of a results file (one JSON object per line; blank lines skipped)."""
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def _cell(scores: Any) -> str:
    """A table cell of per-seed scores: ``mean ± std (n=k)``, empty when there are none."""
    return f"{np.mean(scores):.1f} ± {np.std(scores):.1f} (n={len(scores)})" if len(scores) else ""


def report(path: Path) -> str:
    """Markdown table (normalized score, mean +- std over seeds, per algorithm and step count) and a PNG."""
    from diffagents.plots import plot_learning_curves

    rows = read_points(path)
    score = {(r["algo"], r["seed"], r["steps"]): float(np.mean(r["normalized"])) for r in rows}
    steps = sorted({r["steps"] for r in rows})
    algos = sorted({r["algo"] for r in rows}, key=lambda a: (a in D3RLPY, a))
    grid = {}  # algorithm -> (seeds, step counts) scores, NaN where a seed lacks a point
    for a in algos:
        seeds = sorted({r["seed"] for r in rows if r["algo"] == a})
        grid[a] = np.array([[score.get((a, seed, s), np.nan) for s in steps] for seed in seeds])
    lines = ["| algorithm | " + " | ".join(f"{s} steps" for s in steps) + " |", "|---|" + "---:|" * len(steps)]
    for a, g in grid.items():
        cells = [_cell(col[~np.isnan(col)]) for col in g.T]
        lines.append(f"| {a} | " + " | ".join(cells) + " |")
    png = RESULTS / f"{path.stem}.png"
    curves = {}
    for a, g in grid.items():
        has = ~np.isnan(g).all(axis=0)  # the step counts this algorithm reached
        curves[f"{a} ({len(g)} seed{'s' if len(g) > 1 else ''})"] = ([s for s, h in zip(steps, has) if h], g[:, has])
    plot_learning_curves(curves, png, xlabel="gradient steps", ylabel="normalized score",
                         title=rows[0]["dataset"])
    r0 = rows[0]
    lines += ["", f"Dataset {r0['dataset']}; {r0['episodes']} deterministic episodes per point (env seeds "
              f"10000 + seed ..); one training run per algorithm and seed, evaluated during training; hardware: "
              f"{r0['hardware']}. Curves: `{png.name}`."]
    text = "\n".join(lines) + "\n"
    (RESULTS / f"{path.stem}.md").write_text(text)
    return text


def summary(paths: list[Path], steps: int, min_seeds: int = 3) -> str:
    """Cross-dataset table at one step count: normalized score (mean +- std over seeds) per dataset and algorithm,
    and each algorithm's average over the datasets where every algorithm has ``min_seeds`` seeds (the #6 goal:
    Diffusion-QL's average >= the best d3rlpy baseline's, at equal gradient steps). Writes
    ``results/curves_summary_<steps>.md``."""
    by: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    hardware_ = set()
    for path in paths:
        for r in read_points(path):
            if r["steps"] == steps and r["normalized"] is not None:
                by[r["dataset"]][r["algo"]].append(float(np.mean(r["normalized"])))
                hardware_.add(r["hardware"])
    if not by:
        raise SystemExit(f"--summary: no point at {steps} steps in {[str(p) for p in paths]}")
    algos = sorted({a for d in by.values() for a in d}, key=lambda a: (a in D3RLPY, a))
    lines = ["| dataset | " + " | ".join(algos) + " |", "|---|" + "---:|" * len(algos)]
    complete = [d for d in sorted(by) if all(len(by[d][a]) >= min_seeds for a in algos)]
    for d in sorted(by):
        cells = [_cell(by[d][a]) for a in algos]
        lines.append(f"| {d} | " + " | ".join(cells) + " |")
    if complete:
        means = {a: float(np.mean([np.mean(by[d][a]) for d in complete])) for a in algos}
        lines.append(f"| **average over {len(complete)} dataset{'s' if len(complete) > 1 else ''}** | "
                     + " | ".join(f"**{means[a]:.1f}**" for a in algos) + " |")
    lines += ["", f"{steps} gradient steps; each cell: one training run per seed, {min_seeds}+ seeds for the "
              f"average (datasets in it: {', '.join(complete) or 'none yet'}); sources: "
              f"{', '.join(f'`{p.name}`' for p in paths)}; hardware: {'; '.join(sorted(hardware_))}."]
    text = "\n".join(lines) + "\n"
    (RESULTS / f"curves_summary_{steps}.md").write_text(text)
    return text


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default="diffagents/hopper/medium-v0")
    p.add_argument("--algos", nargs="*", default=["diffusionql", "td3+bc", "iql", "bc"])
    p.add_argument("--seeds", nargs="*", type=int, default=[0])
    p.add_argument("--eval-at", nargs="*", type=int, default=[3000, 10000, 20000, 30000, 40000])
    p.add_argument("--episodes", type=int, default=10)
    p.add_argument("--hyper", default="{}", help="JSON dict of per-algo hyperparameters of ours")
    p.add_argument("--out", type=Path, default=RESULTS / "curves.jsonl")
    p.add_argument("--checkpoint-dir", type=Path, default=None,
                   help="resumable runs of ours: training checkpoints under this folder (one subfolder per run)")
    p.add_argument("--checkpoint-every", type=int, default=1000, help="steps between checkpoints (default 1000)")
    p.add_argument("--report", type=Path, default=None, help="write the table and plot of a results file and exit")
    p.add_argument("--summary", type=Path, nargs="+", default=None,
                   help="write the cross-dataset table of these results files at max(--eval-at) steps and exit")
    args = p.parse_args()
    if args.report is not None:
        print(report(args.report))
        return
    if args.summary is not None:
        print(summary(args.summary, max(args.eval_at)))
        return
    if not args.eval_at or min(args.eval_at) < 1:
        raise SystemExit(f"--eval-at: expected positive step counts, got {args.eval_at}")
    unknown = set(args.algos) - OURS - D3RLPY
    if unknown:
        raise SystemExit(f"--algos: unknown {sorted(unknown)}; choose from {sorted(OURS | D3RLPY)}")
    torch.set_num_threads(1)
    from diffagents.data import make_dataset, reference_scores
    from diffagents.evaluation import normalized_scores

    ds = make_dataset(args.dataset)
    ref = reference_scores(ds)
    hyper = json.loads(args.hyper)

    def recorded() -> set[tuple[str, str, int, int]]:
        """(dataset, algo, seed, steps) of the points already in ``--out``, re-read before each run and point."""
        return {(r["dataset"], r["algo"], r["seed"], r["steps"]) for r in read_points(args.out)}

    ds_id = ds.spec.dataset_id
    for algo in args.algos:
        for seed in args.seeds:
            done = recorded()
            if all((ds_id, algo, seed, s) in done for s in args.eval_at):
                continue
            env = make_env_from_dataset(ds)

            def record(pt: Point, algo: str = algo, seed: int = seed) -> None:
                if (ds_id, algo, seed, pt["steps"]) in recorded():
                    return
                rets = np.asarray(pt["returns"])
                scores = normalized_scores(rets, ref)
                norm = None if scores is None else scores.tolist()
                with args.out.open("a") as fh:
                    fh.write(json.dumps({"dataset": ds_id, "algo": algo, "seed": seed,
                                         "steps": pt["steps"], "run_steps": max(args.eval_at),
                                         "episodes": args.episodes, "return_mean": float(rets.mean()),
                                         "normalized": norm, "train_s": pt["train_s"],
                                         "hyper": hyper.get(algo, {}), "hardware": hardware(),
                                         "date": time.strftime("%Y-%m-%d %H:%M")}) + "\n")
                print(f"{algo} seed {seed} @ {pt['steps']}: normalized "
                      f"{np.mean(norm) if norm else float('nan'):.1f}, {pt['train_s']:.0f} s", flush=True)

            if algo in OURS:
                run_dir = None
                if args.checkpoint_dir is not None:
                    tag = hashlib.sha1(json.dumps([hyper.get(algo, {}), sorted(args.eval_at)],
                                                  sort_keys=True).encode()).hexdigest()[:8]
                    run_dir = args.checkpoint_dir / f"{ds_id.replace('/', '_')}-{algo}-seed{seed}-{tag}"
                curve_ours(algo, ds, env, seed, args.eval_at, args.episodes, hyper.get(algo, {}), record, run_dir,
                           args.checkpoint_every)
            else:
                curve_d3rlpy(algo, ds, env, seed, args.eval_at, args.episodes, record)


if __name__ == "__main__":
    main()
