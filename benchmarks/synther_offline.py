"""SynthER offline: d3rlpy TD3+BC / IQL trained on SynthER-upsampled data vs on the original data.

Lu et al. 2023 (Sec. 4.1) upsample each D4RL dataset with a diffusion model of whole transitions and train
TD3+BC / IQL on the result. Here, for each ``--envs`` medium-replay dataset (the local recipes):

1. take the zoo's SynthER generator of the dataset, ``synther-<env>-<dataset>`` (its recipe in ``zoo/recipes``
   fixes width, blocks, steps and seed; fitted with ``diffagents zoo train`` when it has no weights yet);
2. ``SynthER.upsample(dataset, n)`` writes a new Minari dataset, real + ``--n`` synthetic transitions (timed);
3. dynamics fidelity of ``--fidelity-n`` generated transitions against the simulator, next to Gaussian-noise
   augmentation of real transitions (:mod:`benchmarks.synther_fidelity`);
4. train each ``--algos`` learner (d3rlpy, :func:`benchmarks.offline_benchmark.run_d3rlpy`) for ``--steps``
   gradient steps on the original and on the upsampled dataset, ``--seeds``, and evaluate ``--episodes``
   deterministic episodes on the real environment (same evaluation seeds for both datasets).

Runs are appended to ``results/<out>.jsonl`` and skipped when already there (resumable); the report goes to
``results/<out>.md`` / ``.json`` and the downstream scores into each generator's model card (``downstream``).
The recorded run::

    OMP_NUM_THREADS=1 python benchmarks/synther_offline.py --envs hopper halfcheetah --seeds 0 1 2 \\
        --steps 10000 --n 200000
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
from benchmarks.common import hardware, write  # noqa: E402
from benchmarks.offline_benchmark import run_d3rlpy  # noqa: E402
from benchmarks.synther_fidelity import ENVS, fidelity_rows  # noqa: E402
from diffagents.data.safe_env import make_env_from_dataset  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"


def zoo_generator(env: str, dataset: str) -> tuple[str, Any, dict[str, Any]]:
    """The zoo's SynthER entry ``synther-<env>-<dataset>`` (fitted with ``diffagents zoo train`` when missing)."""
    from diffagents import zoo

    zoo_id = f"synther-{env}-{dataset}"
    if not zoo.entries()[zoo_id].trained:
        zoo.train(zoo_id, device="cpu")
    return zoo_id, zoo.load(zoo_id, device="cpu"), zoo.card(zoo_id)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--envs", nargs="+", choices=["hopper", "halfcheetah", "walker2d"], default=["hopper"])
    p.add_argument("--dataset", default="medium-replay", help="recipe name under <env>/ (e.g. medium-replay)")
    p.add_argument("--algos", nargs="+", choices=["td3+bc", "iql", "bc"], default=["td3+bc"])
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--steps", type=int, default=10_000, help="learner gradient steps (same on both datasets)")
    p.add_argument("--episodes", type=int, default=10)
    p.add_argument("--seed", type=int, default=0, help="sampling seed of the synthetic transitions")
    p.add_argument("--n", type=int, default=200_000, help="synthetic transitions added")
    p.add_argument("--fidelity-n", type=int, default=2000)
    p.add_argument("--no-card", dest="card", action="store_false", help="do not write results into the zoo cards")
    p.add_argument("--out", default="synther_offline")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    import minari
    from minari.storage import get_dataset_path

    from diffagents.agents.synthesis.synther_upsample import config_summary
    from diffagents.data import make_dataset, reference_scores, to_transitions
    from diffagents.evaluation import normalized_scores

    jsonl = RESULTS / f"{args.out}.jsonl"
    runs = [json.loads(line) for line in jsonl.read_text().splitlines() if line.strip()] if jsonl.exists() else []
    gens: dict[str, Any] = {}
    for env in args.envs:
        ds = make_dataset(f"{env}/{args.dataset}-v0")
        env_id, ref = ENVS[env], reference_scores(ds)
        if ref is None:
            raise SystemExit(f"{ds.spec.dataset_id}: expected reference scores (random, expert) for normalized "
                             "scores, got none")
        zoo_id, gen, card = zoo_generator(env, args.dataset)
        fit_s = float(card["wall_time_s"])
        up_id = f"{ds.spec.dataset_id.rsplit('-v', 1)[0]}-synther{args.n}-s{args.seed}-v0"
        up = None
        if get_dataset_path(up_id).exists():  # reuse only a copy written by this very generator
            up = minari.load_dataset(up_id)
            if up.storage.metadata.get("diffagents_synther", {}).get("generator") != json.loads(config_summary(gen)):
                shutil.rmtree(get_dataset_path(up_id))
                up = None
        if up is None:
            up = gen.upsample(ds, args.n, new_id=up_id, seed=args.seed)
        upsample_s = up.storage.metadata["diffagents_synther"].get("seconds")  # None: written before it was recorded
        gens[env] = {"zoo_id": zoo_id, "generator": card["hyperparameters"], "fit_steps": card["gradient_steps"],
                     "dataset": ds.spec.dataset_id, "upsampled": up_id, "real_steps": int(ds.total_steps),
                     "synthetic": args.n, "fit_s": fit_s, "upsample_s": upsample_s,
                     "fidelity": fidelity_rows(to_transitions(ds), gen.sample(args.fidelity_n, seed=args.seed + 1),
                                              env_id, ds.action_space, args.fidelity_n, [0.1], args.seed)}
        print(f"[{env}] generator fit {fit_s:.0f} s, upsample {upsample_s} s: {gens[env]['fidelity']}", flush=True)
        for data, label in ((ds, "original"), (up, "synther")):
            for algo in args.algos:
                for seed in args.seeds:
                    if any(r["env"] == env and r["data"] == label and r["algo"] == algo and r["seed"] == seed
                           and r["steps"] == args.steps for r in runs):
                        continue
                    eval_env = make_env_from_dataset(ds)
                    r = run_d3rlpy(algo, data, eval_env, seed, args.steps, args.episodes)
                    rets = np.asarray(r["returns"])
                    row = {"env": env, "data": label, "dataset": data.spec.dataset_id, "algo": algo, "seed": seed,
                           "steps": args.steps, "episodes": args.episodes, "return_mean": float(rets.mean()),
                           "normalized": float(np.mean(normalized_scores(rets, ref))),
                           "train_s": r["train_s"], "date": time.strftime("%Y-%m-%d %H:%M")}
                    runs.append(row)
                    RESULTS.mkdir(parents=True, exist_ok=True)
                    with jsonl.open("a") as fh:
                        fh.write(json.dumps(row) + "\n")
                    print(f"[{env} {label}] {algo} seed {seed}: normalized {row['normalized']:.1f} "
                          f"({r['train_s']:.0f} s)", flush=True)
    report(args, runs, gens, argv)
    if args.card:
        write_cards(args, runs, gens)


def scores(runs: list[dict[str, Any]], args: argparse.Namespace, env: str, label: str, algo: str) -> list[float]:
    return [r["normalized"] for r in runs if r["env"] == env and r["data"] == label and r["algo"] == algo
            and r["steps"] == args.steps and r["seed"] in args.seeds]


def write_cards(args: argparse.Namespace, runs: list[dict[str, Any]], gens: dict[str, Any]) -> None:
    """Record the downstream scores in each generator's zoo card (``downstream``), like zoo_baselines.py."""
    from diffagents.zoo.registry import CARDS, write_card

    for env, g in gens.items():
        path = CARDS / f"{g['zoo_id']}.json"
        card = json.loads(path.read_text())
        card["downstream"] = {
            "library": "d3rlpy 2.8", "steps": args.steps, "seeds": args.seeds, "episodes": args.episodes,
            "synthetic": args.n, "upsampled": g["upsampled"], "command": "python benchmarks/synther_offline.py "
            f"--envs {env} --seeds {' '.join(map(str, args.seeds))} --steps {args.steps} --n {args.n}",
            **{algo: {label: {"normalized_mean": float(np.mean(s)), "normalized_std": float(np.std(s))}
                      for label in ("original", "synther") if (s := scores(runs, args, env, label, algo))}
               for algo in args.algos}}
        write_card(path, card)


def report(args: argparse.Namespace, runs: list[dict[str, Any]], gens: dict[str, Any], argv: list[str] | None) -> None:
    command = "OMP_NUM_THREADS=1 python benchmarks/synther_offline.py " + " ".join(
        argv if argv is not None else sys.argv[1:])
    lines = ["# SynthER offline: d3rlpy learners on upsampled vs original data", "",
             f"Command: `{command}`  ", f"Hardware: {hardware()}; shared with other jobs.  ",
             "Generators: the zoo's `synther-<env>-<dataset>` entries (settings below; paper: width 2048 x 6, batch "
             f"1024, 100k steps, 128 sampling steps, 5M samples); {args.n} synthetic transitions sampled with seed "
             f"{args.seed}. Learners: d3rlpy 2.8 defaults, batch 256, "
             f"{args.steps} gradient steps on either dataset, {args.episodes} deterministic evaluation episodes "
             "(seeds 10000+seed..), normalized with the dataset's reference scores.", "",
             "| dataset | algo | original | SynthER-upsampled | seeds |", "|---|---|---:|---:|---:|"]
    for env, g in gens.items():
        for algo in args.algos:
            cells, n = [], 0
            for label in ("original", "synther"):
                s = scores(runs, args, env, label, algo)
                cells.append(f"{np.mean(s):.1f} +- {np.std(s):.1f}" if s else "")
                n = max(n, len(s))
            lines.append(f"| {g['dataset']} | {algo} | " + " | ".join(cells) + f" | {n} |")
    lines += [""] + [f"- `{g['zoo_id']}`: {g['fit_steps']} steps, `{g['generator']}`" for g in gens.values()]
    lines += ["", "## Generator cost and dynamics fidelity", "",
              "Fidelity: the simulator is set to each transition's s and stepped with its a; error of r and s' "
              f"against the true step ({args.fidelity_n} transitions; standardised = per-dimension MSE / data "
              "variance). `noise 0.1` = real transitions + Gaussian noise of 0.1 x the data std (augmentation "
              "baseline); `real` checks the state reconstruction.", "",
              "| dataset | real + synthetic steps | fit s | upsample s | row | reward abs err (mean / median) | "
              "s' standardised MSE (mean / median) | terminal agreement |", "|---|---|---:|---:|---|---|---|---:|"]
    for g in gens.values():
        for name, e in g["fidelity"].items():
            lines.append(f"| {g['dataset']} | {g['real_steps']} + {g['synthetic']} | {g['fit_s']:.0f} | "
                         f"{'not recorded' if g['upsample_s'] is None else round(g['upsample_s'])} | {name} | {e['reward_abs_mean']:.3g} / {e['reward_abs_median']:.3g}"
                         f" | {e['next_std_mse_mean']:.3g} / {e['next_std_mse_median']:.3g} | "
                         f"{e['terminal_agreement']:.3f} |")
    write(args.out, {"args": {k: str(v) for k, v in vars(args).items()}, "generators": gens, "runs": runs,
                     "hardware": hardware(), "command": command}, "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
