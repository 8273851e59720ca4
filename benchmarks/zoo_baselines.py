"""Add d3rlpy baselines (BC, TD3+BC, IQL) trained on the same data and gradient steps to zoo model cards.

For each trained zoo entry (or the ids given), every baseline is trained on the entry's dataset for the entry's
number of gradient steps with the entry's seed, evaluated for the entry's number of episodes on the same eval env
(seeds 10000 + seed + i, deterministic), and stored in the card under ``baselines``:
``{algo: {steps, seed, episodes, return_mean, return_std, normalized_mean, normalized_std, train_s}}``.
``make_results.py`` prints them next to the zoo entry.

    OMP_NUM_THREADS=1 python benchmarks/zoo_baselines.py [ZOO_ID ...] [--algos bc td3+bc iql]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from offline_benchmark import run_d3rlpy

CARDS = Path(__file__).resolve().parents[1] / "zoo" / "cards"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("ids", nargs="*", help="zoo ids (default: every card)")
    p.add_argument("--algos", nargs="+", default=["bc", "td3+bc", "iql"])
    args = p.parse_args()
    torch.set_num_threads(1)
    from common import hardware

    from diffagents.data import make_dataset, reference_scores

    paths = [CARDS / f"{i}.json" for i in args.ids] if args.ids else sorted(CARDS.glob("*.json"))
    for path in paths:
        card = json.loads(path.read_text())
        if card.get("algo") == "MADiff":  # d3rlpy has no multi-agent baselines
            continue
        ds = make_dataset(card["dataset"], size=card.get("dataset_size"))
        ref = reference_scores(ds)
        episodes = card["evaluation"]["episodes"]
        for algo in args.algos:
            env = ds.recover_environment(eval_env=True)
            r = run_d3rlpy(algo, ds, env, card["seed"], card["gradient_steps"], episodes)
            rets = np.asarray(r["returns"])
            entry = {"library": "d3rlpy 2.8", "steps": card["gradient_steps"], "seed": card["seed"],
                     "episodes": episodes, "return_mean": float(rets.mean()), "return_std": float(rets.std()),
                     "train_s": round(r["train_s"], 1), "hardware": hardware(), "date": time.strftime("%Y-%m-%d")}
            if ref:
                norm = 100 * (rets - ref[0]) / (ref[1] - ref[0])
                entry.update(normalized_mean=float(norm.mean()), normalized_std=float(norm.std()))
            card.setdefault("baselines", {})[algo] = entry
            path.write_text(json.dumps(card, indent=1) + "\n")
            print(f"{path.stem} {algo}: {entry}", flush=True)


if __name__ == "__main__":
    main()
