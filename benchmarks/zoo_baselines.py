"""Add d3rlpy baselines (BC, TD3+BC, IQL) trained on the same data and gradient steps to zoo model cards.

For each trained zoo entry (or the ids given), every baseline is trained on the entry's dataset for the entry's
number of gradient steps with the entry's seed, evaluated for the entry's number of episodes on the same eval env
(seeds 10000 + seed + i, deterministic), and stored in the card under ``baselines``:
``{algo: {steps, seed, episodes, return_mean, return_std, normalized_mean, normalized_std, train_s}}``.
``make_results.py`` prints them next to the zoo entry. A baseline another card already holds for the same dataset
(and size), eval env, gradient steps, seed and episode count is the same run, so it is copied (with
``"copied_from": <that card's id>``) instead of trained again; ``--retrain`` trains it anyway.

    OMP_NUM_THREADS=1 python benchmarks/zoo_baselines.py [ZOO_ID ...] [--algos bc td3+bc iql] [--retrain]

``--cards DIR`` works on the cards of another folder (e.g. the card of a longer run trained outside the package
with ``diffagents.zoo.registry.train(ID, out_dir=DIR)``), so the baselines of a run can be trained before it ships.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from offline_benchmark import run_d3rlpy

from diffagents.data.safe_env import make_env_from_dataset

CARDS = Path(__file__).resolve().parents[1] / "zoo" / "cards"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("ids", nargs="*", help="zoo ids (default: every card)")
    p.add_argument("--algos", nargs="+", default=["bc", "td3+bc", "iql"])
    p.add_argument("--retrain", action="store_true", help="train every baseline even if another card has the run")
    p.add_argument("--cards", type=Path, default=CARDS, help="the folder of model cards (default: the zoo's)")
    args = p.parse_args()
    torch.set_num_threads(1)
    from common import hardware
    from diffagents.zoo.registry import write_card

    from diffagents.data import make_dataset, reference_scores

    paths = [args.cards / f"{i}.json" for i in args.ids] if args.ids else sorted(args.cards.glob("*.json"))
    for path in paths:
        card = json.loads(path.read_text())
        if card.get("algo") == "MADiff":  # d3rlpy has no multi-agent baselines
            continue
        ds = make_dataset(card["dataset"], size=card.get("dataset_size"))
        ref = reference_scores(ds)
        episodes = card["evaluation"]["episodes"]
        for algo in args.algos:
            done = None if args.retrain else same_run(card, algo, path)
            if done is not None:
                card.setdefault("baselines", {})[algo] = done
                write_card(path, card)
                print(f"{path.stem} {algo}: copied from {done['copied_from']}", flush=True)
                continue
            env = make_env_from_dataset(ds)
            r = run_d3rlpy(algo, ds, env, card["seed"], card["gradient_steps"], episodes)
            rets = np.asarray(r["returns"])
            entry = {"library": "d3rlpy 2.8", "steps": card["gradient_steps"], "seed": card["seed"],
                     "episodes": episodes, "return_mean": float(rets.mean()), "return_std": float(rets.std()),
                     "train_s": round(r["train_s"], 1), "hardware": hardware(), "date": time.strftime("%Y-%m-%d")}
            if ref:
                norm = 100 * (rets - ref[0]) / (ref[1] - ref[0])
                entry.update(normalized_mean=float(norm.mean()), normalized_std=float(norm.std()))
            card.setdefault("baselines", {})[algo] = entry
            write_card(path, card)
            print(f"{path.stem} {algo}: {entry}", flush=True)


def same_run(card: dict, algo: str, path: Path) -> dict | None:
    """The ``algo`` baseline of another card trained on the same data, steps and seed and evaluated alike."""
    key = ("dataset", "dataset_size", "env", "gradient_steps", "seed")
    for other_path in sorted(path.parent.glob("*.json")):
        if other_path == path:
            continue
        other = json.loads(other_path.read_text())
        done = other.get("baselines", {}).get(algo)
        if (done is not None and "copied_from" not in done and all(other.get(k) == card.get(k) for k in key)
                and done["episodes"] == card["evaluation"]["episodes"]
                and other["evaluation"].get("seed") == card["evaluation"].get("seed")):
            return {**done, "copied_from": other_path.stem}
    return None


if __name__ == "__main__":
    main()
