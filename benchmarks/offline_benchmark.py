"""Offline RL quality: our diffusion agents vs d3rlpy BC / TD3+BC / IQL on the same data and gradient steps.

Each (dataset, algorithm, seed) run trains for ``--steps`` gradient steps, evaluates ``--episodes``
deterministic episodes on the dataset's eval env and appends one JSON line to ``--out`` (runs already there are
skipped, so the benchmark can be resumed or split across processes). ``--table`` aggregates a results file into
a markdown table of normalized scores (mean +- std over seeds).

    python benchmarks/offline_benchmark.py --datasets diffagents/pendulum/expert-v0 --algos diffusionql bc \\
        --seeds 0 1 2 --steps 5000 --out benchmarks/results/offline_pendulum.jsonl
    python benchmarks/offline_benchmark.py --table benchmarks/results/offline_pendulum*.jsonl
"""

from __future__ import annotations

import argparse
import json
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from diffagents.data.safe_env import make_env_from_dataset

OURS = {"diffusionql", "idql", "diffusionpolicy", "cpql", "diffuser", "decisiondiffuser"}
D3RLPY = {"bc", "td3+bc", "iql"}


def run_ours(algo: str, ds: Any, env: Any, seed: int, steps: int, episodes: int, ref: Any,
             hyper: dict[str, Any], save_dir: Path | None = None, eval_envs: int = 1) -> dict[str, Any]:
    from diffagents.agents import get_agent_class
    from diffagents.evaluation import evaluate_agent

    agent = get_agent_class(algo)(env=env, dataset=ds, seed=seed, **hyper)
    t0 = time.perf_counter()
    agent.learn(steps)
    train_s = time.perf_counter() - t0
    if save_dir is not None:
        save_dir.mkdir(parents=True, exist_ok=True)
        agent.save(save_dir / f"{algo}-{ds.spec.dataset_id.replace('/', '-')}-s{seed}-{steps}.zip")
    if eval_envs > 1:  # episodes in parallel: the planners sample all envs' plans in one batched call
        env = lambda: make_env_from_dataset(ds)  # noqa: E731
    t0 = time.perf_counter()
    res = evaluate_agent(agent, env, n_episodes=episodes, seed=10_000 + seed, ref_scores=ref, n_envs=eval_envs)
    return {"train_s": train_s, "eval_s": time.perf_counter() - t0, "returns": res.returns.tolist()}


def d3rlpy_dataset(ds: Any) -> Any:
    """A d3rlpy ``MDPDataset`` holding every transition of ``ds``.

    d3rlpy builds ``s'`` from the next row of an episode and gives a truncated episode ``len - 1`` transitions
    (``Episode.transition_count``), so the last step of every truncated episode would be lost: negligible for
    long episodes, but all of a SynthER-upsampled dataset's one-step synthetic episodes. After each truncated
    episode end we therefore append a bootstrap row holding its final observation (zero action and reward, the
    timeout flag), which d3rlpy never uses as a transition of its own.
    """
    import d3rlpy

    from diffagents.data import to_transitions

    tr = to_transitions(ds)
    ends = np.zeros(len(tr.rewards), dtype=bool)
    ends[np.r_[np.flatnonzero(np.diff(tr.episode_ids)), len(ends) - 1]] = True
    cut = np.flatnonzero(ends & ~tr.terminations) + 1  # insert a bootstrap row after each truncated end
    timeouts = np.zeros(len(tr.rewards) + len(cut), dtype=np.float32)
    timeouts[cut + np.arange(len(cut))] = 1.0
    return d3rlpy.dataset.MDPDataset(
        observations=np.insert(tr.observations, cut, tr.next_observations[cut - 1], axis=0),
        actions=np.insert(tr.actions, cut, np.zeros_like(tr.actions[:1]), axis=0),
        rewards=np.insert(tr.rewards, cut, 0.0), terminals=np.insert(tr.terminations, cut, False).astype(np.float32),
        timeouts=timeouts)


def d3rlpy_model(algo: str, env: Any, seed: int) -> Any:
    """d3rlpy's default BC / TD3+BC / IQL at batch 256, MinMax action and standard observation scalers, seeded."""
    import d3rlpy

    low, high = env.action_space.low, env.action_space.high
    common = dict(action_scaler=d3rlpy.preprocessing.MinMaxActionScaler(minimum=low, maximum=high),
                  observation_scaler=d3rlpy.preprocessing.StandardObservationScaler())
    d3rlpy.seed(seed)
    if algo == "bc":
        return d3rlpy.algos.BCConfig(batch_size=256, **common).create(device="cpu:0")
    if algo == "td3+bc":
        return d3rlpy.algos.TD3PlusBCConfig(batch_size=256, **common).create(device="cpu:0")
    return d3rlpy.algos.IQLConfig(batch_size=256, **common).create(device="cpu:0")


def d3rlpy_returns(model: Any, ds: Any, env: Any, seed: int, episodes: int) -> list[float]:
    """Returns of ``episodes`` deterministic episodes of a d3rlpy model, env seeded ``10000 + seed + episode``."""
    flat = ds_flattener(ds)
    returns = []
    for ep in range(episodes):
        obs, _ = env.reset(seed=10_000 + seed + ep)
        total, done = 0.0, False
        while not done:
            act = model.predict(flat(obs)[None])[0]
            obs, r, term, trunc, _ = env.step(act)
            total += float(r)
            done = term or trunc
        returns.append(total)
    return returns


def run_d3rlpy(algo: str, ds: Any, env: Any, seed: int, steps: int, episodes: int) -> dict[str, Any]:
    import d3rlpy

    dataset = d3rlpy_dataset(ds)
    model = d3rlpy_model(algo, env, seed)
    t0 = time.perf_counter()
    model.fit(dataset, n_steps=steps, n_steps_per_epoch=steps, show_progress=False, save_interval=10**9,
              logger_adapter=d3rlpy.logging.NoopAdapterFactory())
    train_s = time.perf_counter() - t0
    return {"train_s": train_s, "returns": d3rlpy_returns(model, ds, env, seed, episodes)}


def ds_flattener(ds: Any) -> Any:
    from diffagents.data import ObsFlattener

    return ObsFlattener.from_space(ds.observation_space)


def table(paths: list[Path], only: list[str] | None = None, split: list[str] | None = None) -> str:
    """Markdown table of normalized scores (mean +- std over seeds) per dataset and algorithm, with the average
    over the datasets for every algorithm run on all of them; ``only`` keeps those algorithms; ``split`` names
    hyperparameters whose value (where a run's ``--hyper`` set it) gives the run its own column."""
    runs = [json.loads(line) for path in paths for line in path.read_text().splitlines() if line.strip()]
    runs = [r for r in runs if only is None or r["algo"] in only]
    scores: dict[tuple[str, str], list[float]] = defaultdict(list)
    meta: dict[tuple[str, str], dict[str, Any]] = {}
    for r in runs:
        label = r["algo"] + "".join(f" {k}={r['hyper'][k]}" for k in split or () if k in r.get("hyper", {}))
        key = (r["dataset"], label)
        scores[key].append(float(np.mean(r["normalized"])))
        meta[key] = r
    datasets = sorted({k[0] for k in scores})
    algos = sorted({k[1] for k in scores}, key=lambda a: (a in D3RLPY, a))  # d3rlpy columns last
    lines = ["| dataset | " + " | ".join(algos) + " |", "|---|" + "---:|" * len(algos)]
    for d in datasets:
        cells = []
        for a in algos:
            s = scores.get((d, a))
            cells.append(f"{np.mean(s):.1f} ± {np.std(s):.1f} (n={len(s)})" if s else "")
        lines.append(f"| {d} | " + " | ".join(cells) + " |")
    if len(datasets) > 1:
        avg = [f"**{np.mean([np.mean(scores[(d, a)]) for d in datasets]):.1f}**"
               if all((d, a) in scores for d in datasets) else "" for a in algos]
        lines.append(f"| average over the {len(datasets)} datasets | " + " | ".join(avg) + " |")
    any_run = next(iter(meta.values()))
    lines.append(f"\nGradient steps per run: {sorted({r['steps'] for r in runs})}; evaluation: "
                 f"{any_run['episodes']} deterministic episodes per seed (seeds 10000+seed..); hardware: "
                 f"{any_run['hardware']}.")
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--datasets", nargs="*", default=["diffagents/pendulum/expert-v0"])
    p.add_argument("--algos", nargs="*", default=["diffusionql", "bc"])
    p.add_argument("--seeds", nargs="*", type=int, default=[0])
    p.add_argument("--steps", type=int, default=5000)
    p.add_argument("--episodes", type=int, default=10)
    p.add_argument("--eval-envs", type=int, default=1, help="evaluate our agents on this many envs at once "
                   "(batched predict; env i seeded 10000 + seed + i); 1 keeps the single-env protocol")
    p.add_argument("--hyper", default="{}", help="JSON dict of per-algo hyperparameters, e.g. "
                   '\'{"diffusionql": {"n_candidates": 10}}\'')
    p.add_argument("--out", default="benchmarks/results/offline.jsonl")
    p.add_argument("--save-dir", type=Path, default=None, help="save each trained agent of ours here")
    p.add_argument("--table", nargs="*", default=None, help="print the markdown table of results files and exit")
    p.add_argument("--only", nargs="*", default=None, help="with --table: the algorithms to show")
    p.add_argument("--split", nargs="*", default=None, help="with --table: hyperparameters whose value (where "
                   "--hyper set it) gives a run its own column, e.g. --split bc_loss")
    args = p.parse_args()
    if args.table:
        print(table([Path(t) for t in args.table], args.only, args.split))
        return
    torch.set_num_threads(1)
    from common import hardware

    from diffagents.data import make_dataset, reference_scores
    from diffagents.evaluation import normalized_scores

    out = Path(args.out)
    done = set()
    if out.exists():
        done = {(r["dataset"], r["algo"], r["seed"], r["steps"]) for r in map(json.loads, out.read_text().splitlines())
                if r}
    hyper = json.loads(args.hyper)
    for ds_id in args.datasets:
        ds = make_dataset(ds_id)
        ref = reference_scores(ds)
        for algo in args.algos:
            for seed in args.seeds:
                key = (ds.spec.dataset_id, algo, seed, args.steps)
                if key in done:
                    continue
                env = make_env_from_dataset(ds)
                if algo in OURS:
                    r = run_ours(algo, ds, env, seed, args.steps, args.episodes, ref, hyper.get(algo, {}),
                                 args.save_dir, args.eval_envs)
                elif algo in D3RLPY:
                    r = run_d3rlpy(algo, ds, env, seed, args.steps, args.episodes)
                else:
                    raise SystemExit(f"--algos: unknown {algo!r}; choose from {sorted(OURS | D3RLPY)}")
                rets = np.asarray(r["returns"])
                scores = normalized_scores(rets, ref)
                norm = None if scores is None else scores.tolist()
                row = {"dataset": ds.spec.dataset_id, "algo": algo, "seed": seed, "steps": args.steps,
                       "episodes": args.episodes, "return_mean": float(rets.mean()), "normalized": norm,
                       "train_s": r["train_s"], "hyper": hyper.get(algo, {}),
                       "eval_envs": args.eval_envs if algo in OURS else 1, "eval_s": r.get("eval_s"), "hardware": hardware(),
                       "date": time.strftime("%Y-%m-%d %H:%M")}
                with out.open("a") as fh:
                    fh.write(json.dumps(row) + "\n")
                print(f"{ds.spec.dataset_id} {algo} seed {seed}: return {rets.mean():.1f}, normalized "
                      f"{np.mean(norm) if norm else float('nan'):.1f}, {r['train_s']:.0f} s", flush=True)


if __name__ == "__main__":
    main()
