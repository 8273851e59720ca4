"""Benchmark MADiff-C / MADiff-D against independent per-agent BC and Diffusion-QL on mpe2 simple_spread.

For each dataset (``diffagents/mpe-spread/{expert,medium,random}-v0``, N=3, continuous actions), each seed and
each method (MADiff-C, MADiff-D, independent BC, independent DiffusionQL), train for a fixed number of gradient steps and evaluate on
``n_episodes`` seeded episodes (the same episodes for every method). Scores are normalised team returns
(0 = uniform random, 100 = the scripted expert; the recipe's reference scores), reported as mean +- std over
seeds of the per-seed mean. Then:

* **N = 4** without code changes: the same classes train and evaluate on an N=4 expert dataset generated here
  with the recipe's scripted expert (``assigned_landmark`` / ``drive_action`` generalise to any N), with
  reference scores measured here (uniform random and expert team returns over ``--ref-episodes`` episodes).
* **Decision latency** per joint step (one ``predict`` call, batch of one env, ``deterministic=True``) for N=3
  and N=6, for the trained configuration and for :data:`diffagents.agents.multiagent.madiff.CPU_HYPERPARAMETERS`.

Writes ``benchmarks/results/madiff.md`` and ``.json`` (``--out`` changes the stem).

Usage (1 thread, one job at a time; datasets land in ``MINARI_DATASETS_PATH``)::

    # the recorded CPU run: 3 seeds x 3000 gradient steps for every method, 50 episodes, 2 worker processes;
    # EMA updated every step (the preset's every-10 EMA lags ~2000 steps behind, made for 10k+ step budgets)
    OMP_NUM_THREADS=1 python benchmarks/madiff.py --steps 3000 --ema-every 1 --seeds 0 1 2 --episodes 50 --jobs 2 \\
        --n4-seeds 0 --n4-methods MADiff-C BC
    # smoke run
    OMP_NUM_THREADS=1 python benchmarks/madiff.py --smoke
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "benchmarks" / "results"

try:
    from diffagents.wrappers import pettingzoo as pz
except ModuleNotFoundError:  # source checkout without the package-dir mapping installed
    from wrappers import pettingzoo as pz  # type: ignore[no-redef]


def spread(n: int) -> Any:
    from mpe2 import simple_spread_v3

    return functools.partial(simple_spread_v3.parallel_env, N=n, local_ratio=0.5, max_cycles=25,
                             continuous_actions=True)


# ---------------------------------------------------------------------------------------------- data
def expert_policy(n: int) -> Any:
    """The recipe's decentralised scripted expert for any N (Hungarian assignment + dead-beat control)."""
    from diffagents.data.recipes.mpe_spread import assigned_landmark, drive_action

    return lambda obs: {a: drive_action(o, assigned_landmark(o, n)) for a, o in obs.items()}


def random_policy(n: int, seed: int) -> Any:
    rng = np.random.default_rng(seed)
    return lambda obs: {a: rng.uniform(0.0, 1.0, 5).astype(np.float32) for a in obs}


def reference_scores(n: int, episodes: int) -> tuple[float, float]:
    """Mean team return of uniform random and of the scripted expert (seeds 10000+)."""
    out = []
    for policy in (random_policy(n, 10_000), expert_policy(n)):
        _, returns = pz.collect_episodes(spread(n), policy, 25 * episodes, seed=10_000)
        out.append(float(np.mean(returns)))
    return out[0], out[1]


def expert_dataset(n: int, size: int, ref: tuple[float, float]) -> Any:
    """An N-agent expert dataset in the recipes' layout (built once per (N, size))."""
    import minari
    from gymnasium import spaces

    from diffagents.data import make_dataset

    if n == 3:
        return make_dataset("diffagents/mpe-spread/expert-v0", size=size)
    dataset_id = f"bench/mpe-spread-n{n}/expert-n{size}-v0"
    try:
        return minari.load_dataset(dataset_id)
    except (FileNotFoundError, ValueError):
        pass
    env = spread(n)()
    buffers, _ = pz.collect_episodes(env, expert_policy(n), size, seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = minari.create_dataset_from_buffers(
            dataset_id, buffers, algorithm_name="scripted-expert", description=f"simple_spread N={n} expert",
            observation_space=spaces.Dict({a: env.observation_space(a) for a in env.possible_agents}),
            action_space=spaces.Dict({a: env.action_space(a) for a in env.possible_agents}))
    ds.storage.update_metadata({"ref_min_score": ref[0], "ref_max_score": ref[1]})
    return minari.load_dataset(dataset_id)


# ---------------------------------------------------------------------------------------------- baseline
class IndependentBC:
    """Behaviour cloning, one MLP per agent on its own observation (decentralised), MSE on [-1, 1] actions."""

    def __init__(self, dataset: Any, hidden: int = 256, seed: int = 0) -> None:
        from diffagents.data import to_joint_arrays

        torch.manual_seed(seed)
        data = to_joint_arrays(dataset)
        self.agents = list(data["agent_ids"])
        obs, act = data["observations"], data["actions"]  # (T, N, D), (T, N, A) in [0, 1]
        self.mean, self.std = obs.mean(0), obs.std(0) + 1e-6  # (N, D)
        self.obs = torch.as_tensor((obs - self.mean) / self.std, dtype=torch.float32)
        self.act = torch.as_tensor(act * 2.0 - 1.0, dtype=torch.float32)
        d, a = obs.shape[-1], act.shape[-1]
        self.nets = torch.nn.ModuleList(
            torch.nn.Sequential(torch.nn.Linear(d, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, hidden),
                                torch.nn.ReLU(), torch.nn.Linear(hidden, a), torch.nn.Tanh())
            for _ in self.agents)
        self.opt = torch.optim.Adam(self.nets.parameters(), lr=3e-4)

    def learn(self, steps: int, batch: int = 256) -> IndependentBC:
        for _ in range(steps):
            idx = torch.randint(0, len(self.obs), (batch,))
            pred = torch.stack([net(self.obs[idx, i]) for i, net in enumerate(self.nets)], dim=1)
            loss = torch.nn.functional.mse_loss(pred, self.act[idx])
            self.opt.zero_grad()
            loss.backward()
            self.opt.step()
        return self

    @torch.no_grad()
    def predict(self, obs: dict[str, Any], state: Any = None, episode_start: Any = None,
                deterministic: bool = True) -> tuple[dict[str, Any], Any]:
        out = {}
        for i, (agent, net) in enumerate(zip(self.agents, self.nets)):
            x = torch.as_tensor((np.asarray(obs[agent]) - self.mean[i]) / self.std[i], dtype=torch.float32)
            out[agent] = ((net(x).numpy() + 1.0) / 2.0).astype(np.float32)
        return out, state


class IndependentDQL:
    """Independent Diffusion-QL learners: one :class:`~diffagents.DiffusionQL` per agent, each trained on its own
    view of the data (own observations and actions, team reward; :func:`diffagents.data.agent_dataset`)."""

    def __init__(self, dataset: Any, seed: int = 0) -> None:
        from diffagents import DiffusionQL
        from diffagents.data import agent_dataset, agent_ids_of

        self.agents = agent_ids_of(dataset.observation_space)
        self.nets = {a: DiffusionQL(dataset=agent_dataset(dataset, a), seed=seed + 1000 * i)
                     for i, a in enumerate(self.agents)}

    def learn(self, steps: int) -> IndependentDQL:
        for net in self.nets.values():
            net.learn(steps, log_interval=0)
        return self

    def predict(self, obs: dict[str, Any], state: Any = None, episode_start: Any = None,
                deterministic: bool = True) -> tuple[dict[str, Any], Any]:
        return {a: net.predict(obs[a], deterministic=deterministic)[0] for a, net in self.nets.items()}, state


# ---------------------------------------------------------------------------------------------- runs
def madiff_hparams(args: argparse.Namespace) -> dict[str, Any]:
    from diffagents.agents.multiagent.madiff import CPU_HYPERPARAMETERS

    hp = dict(CPU_HYPERPARAMETERS)
    given = {"dim": args.dim, "dim_mults": tuple(args.dim_mults) if args.dim_mults else None,
             "n_diffusion_steps": args.diffusion_steps, "sampler_steps": args.sampler_steps, "horizon": args.horizon,
             "batch_size": args.batch_size, "prediction_type": args.prediction_type, "learning_rate": args.lr,
             "ema_every": args.ema_every, "ema_start": args.ema_start}
    hp.update({k: v for k, v in given.items() if v is not None})
    return hp


def train_eval(method: str, dataset_id: str, n: int, args: argparse.Namespace, seed: int) -> dict[str, Any]:
    """Train one method on one dataset with one seed and evaluate it (runs in a worker process with ``--jobs``)."""
    import minari

    from diffagents.agents.multiagent.madiff import MADiff

    torch.set_num_threads(1)
    dataset = minari.load_dataset(dataset_id)
    t0 = time.perf_counter()
    if method == "BC":
        agent: Any = IndependentBC(dataset, seed=seed).learn(args.bc_steps or args.steps)
    elif method == "DQL":
        agent = IndependentDQL(dataset, seed=seed).learn(args.steps)
    else:
        agent = MADiff(spread(n), dataset, seed=seed, decentralized=method == "MADiff-D", **madiff_hparams(args))
        agent.learn(args.steps, log_interval=0, progress_bar=args.progress)
    train_s = time.perf_counter() - t0
    out = pz.evaluate(agent, spread(n), n_episodes=args.episodes, seed=args.eval_seed, reference_scores=dataset,
                      n_envs=args.eval_envs)
    return {"method": method, "seed": seed, "train_s": round(train_s, 1), "return": out["mean"],
            "normalized": float(np.mean(out["normalized"])), "step_latency_ms": 1e3 * out["step_latency_s"]}


def latency(n: int, hp: dict[str, Any], decentralized: bool, dataset: Any, steps: int) -> float:
    """Median ms per joint ``predict`` on real observations (weights untrained: latency does not depend on them)."""
    from diffagents.agents.multiagent.madiff import MADiff

    agent = MADiff(spread(n), dataset, seed=0, decentralized=decentralized, **hp).learn(1, log_interval=0)
    env = spread(n)()
    obs, _ = env.reset(seed=0)
    times, state = [], None
    for t in range(steps + 3):
        t0 = time.perf_counter()
        act, state = agent.predict(obs, state=state, episode_start=np.array([t == 0]), deterministic=True)
        times.append(time.perf_counter() - t0)
        obs = env.step(act)[0] if env.agents else env.reset(seed=t)[0]
    return 1e3 * float(np.median(times[3:]))


def summarise(rows: list[dict[str, Any]]) -> dict[str, float]:
    scores = np.array([r["normalized"] for r in rows])
    return {"mean": float(scores.mean()), "std": float(scores.std()), "n_seeds": len(rows),
            "return": float(np.mean([r["return"] for r in rows])),
            "train_s": float(np.mean([r["train_s"] for r in rows]))}


COST = {"MADiff-D": 4, "MADiff-C": 3, "DQL": 2, "BC": 1}  # dispatch the longest jobs first


def run(args: argparse.Namespace) -> dict[str, Any]:
    from concurrent.futures import ProcessPoolExecutor

    from diffagents.data import agent_dataset, agent_ids_of, make_dataset
    from diffagents.data import reference_scores as dataset_ref

    results: dict[str, Any] = {"scores": {}, "n4": {}, "latency_ms": {}, "runs": []}
    datasets = {kind: make_dataset(f"diffagents/mpe-spread/{kind}-v0", size=args.dataset_size)
                for kind in args.datasets}
    jobs = [(kind, ds.spec.dataset_id, 3, method, seed)
            for kind, ds in datasets.items() for method in args.methods for seed in args.seeds]
    if args.n4:
        ref4 = reference_scores(4, args.ref_episodes)
        ds4 = expert_dataset(4, args.dataset_size, ref4)
        datasets["n4-expert"] = ds4
        results["n4_reference"] = {"random": ref4[0], "expert": ref4[1], "stored": dataset_ref(ds4)}
        jobs += [("n4-expert", ds4.spec.dataset_id, 4, method, seed)
                 for method in (args.n4_methods or args.methods) for seed in (args.n4_seeds or args.seeds)]
    if "DQL" in args.methods:  # build the per-agent views once, before workers could race on them
        for ds in datasets.values():
            for agent in agent_ids_of(ds.observation_space):
                agent_dataset(ds, agent)
    settings = {"steps": args.steps, "bc_steps": args.bc_steps or args.steps, "episodes": args.episodes,
                "eval_seed": args.eval_seed, "dataset_size": args.dataset_size,
                "madiff": json.loads(json.dumps(madiff_hparams(args)))}
    log = RESULTS / f"{args.out}_runs.jsonl"  # finished runs; a rerun with the same settings skips them
    done = [r for r in (json.loads(line) for line in log.read_text().splitlines() if line.strip())
            if r["settings"] == settings] if log.exists() else []
    results["runs"] = [r for r in done if (r["dataset"], r["method"], r["seed"]) in {(j[0], j[3], j[4]) for j in jobs}]
    jobs = [j for j in jobs if not any((r["dataset"], r["method"], r["seed"]) == (j[0], j[3], j[4]) for r in done)]
    jobs.sort(key=lambda j: -COST.get(j[3], 0))
    RESULTS.mkdir(parents=True, exist_ok=True)
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        futures = [(job, pool.submit(train_eval, job[3], job[1], job[2], args, job[4])) for job in jobs]
        for (label, _, n, method, seed), fut in futures:
            row = {"dataset": label, **fut.result()}
            results["runs"].append(row)
            with log.open("a") as fh:
                fh.write(json.dumps({**row, "settings": settings}) + "\n")
            print(f"[{label} N={n}] {method} seed {seed}: {row}", flush=True)
    for label in datasets:
        for method in (args.n4_methods or args.methods) if label == "n4-expert" else args.methods:
            rows = [r for r in results["runs"] if r["dataset"] == label and r["method"] == method]
            if label == "n4-expert":
                results["n4"][method] = summarise(rows)
            else:
                results["scores"][f"{label}/{method}"] = summarise(rows)
    from diffagents.agents.multiagent.madiff import CPU_HYPERPARAMETERS

    configs = {"trained": madiff_hparams(args), "cpu-default": dict(CPU_HYPERPARAMETERS)}
    for n in args.latency_agents:
        ds = expert_dataset(n, 500, (0.0, 1.0)) if n != 3 else expert_dataset(3, args.dataset_size, (0.0, 1.0))
        bc = IndependentBC(ds)
        obs, _ = spread(n)().reset(seed=0)
        t0 = time.perf_counter()
        for _ in range(200):
            bc.predict(obs)
        results["latency_ms"][f"N={n}/BC"] = 1e3 * (time.perf_counter() - t0) / 200
        for name, hp in configs.items():
            for dec in (False, True):
                key = f"N={n}/{'MADiff-D' if dec else 'MADiff-C'}/{name}"
                results["latency_ms"][key] = latency(n, hp, dec, ds, args.latency_steps)
                print(f"[latency] {key}: {results['latency_ms'][key]:.1f} ms", flush=True)
    results["configs"] = {k: {kk: list(vv) if isinstance(vv, tuple) else vv for kk, vv in v.items()}
                          for k, v in configs.items()}
    return results


# ---------------------------------------------------------------------------------------------- report
def hardware() -> str:
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in subprocess.run(
            ["lscpu"], capture_output=True, text=True, check=True).stdout.splitlines() if line.startswith("Model name"))
    except (OSError, StopIteration, subprocess.CalledProcessError):
        cpu = platform.processor() or "unknown CPU"
    return f"{os.cpu_count()}-core shared VM ({cpu}), torch {torch.__version__}, {torch.get_num_threads()} thread"


def markdown(res: dict[str, Any], args: argparse.Namespace, command: str, wall_s: float) -> str:
    label = "SMOKE RUN (not a result: tiny budget, 1 seed)" if args.smoke else "benchmark run"
    lines = [f"# MADiff on mpe2 simple_spread: {label}", "",
             f"Command: `{command}`  ", f"Hardware: {hardware()}; shared with other jobs.  ",
             f"Date: {time.strftime('%Y-%m-%d %H:%M')}; wall time {wall_s / 60:.1f} min; load average "
             f"{res['meta']['load_start']:.1f} at start, {res['meta']['load_end']:.1f} at end (2 cores).  ",
             f"MADiff config: `{res['configs']['trained']}`; {args.steps} gradient steps.  ",
             f"Independent baselines (one learner per agent on its own observations, team reward): BC = MLP 2x256, "
             f"MSE, {args.bc_steps or args.steps} steps, batch 256; DQL = `DiffusionQL` defaults (Wang et al. 2023), "
             f"{args.steps} steps per agent.  ",
             f"N=4 seeds: {', '.join(map(str, args.n4_seeds or args.seeds))}; {args.jobs} worker process(es).  ",
             f"Datasets: {args.dataset_size} joint steps each; evaluation: {args.episodes} episodes (seeds "
             f"{args.eval_seed}..{args.eval_seed + args.episodes - 1}), deterministic, team return = sum over "
             "agents; seeds " + ", ".join(map(str, args.seeds)) + ".", "",
             "## Normalised team score (0 = uniform random, 100 = scripted expert), mean +- std over seeds", "",
             "| dataset | " + " | ".join(args.methods) + " |", "|---|" + "---:|" * len(args.methods)]
    for kind in args.datasets:
        cells = [f"{res['scores'][f'{kind}/{m}']['mean']:.1f} +- {res['scores'][f'{kind}/{m}']['std']:.1f}"
                 for m in args.methods]
        lines.append(f"| mpe-spread/{kind} (N=3) | " + " | ".join(cells) + " |")
    if res["n4"]:
        cells = [f"{res['n4'][m]['mean']:.1f} +- {res['n4'][m]['std']:.1f}" if m in res["n4"] else "not run"
                 for m in args.methods]
        lines.append("| N=4 expert (generated here) | " + " | ".join(cells) + " |")
        ref = res["n4_reference"]
        lines += ["", f"N=4 reference scores (team return over {args.ref_episodes} episodes): uniform random "
                      f"{ref['random']:.1f}, expert {ref['expert']:.1f}. Same classes, no code changes."]
    lines += ["", "Paper anchors (MADiff-D, NeurIPS 2024 README, OMAR's MPE data, not comparable in scale): "
                  "Spread expert 95.0, medium 64.9, random 6.9; BC 35.0 / 31.6 / -0.5.", "",
              "## Decision latency per joint step (ms, median, batch of one env, deterministic)", "",
              "| agents | BC | MADiff-C (trained cfg) | MADiff-D (trained cfg) | MADiff-C (CPU_HYPERPARAMETERS) | "
              "MADiff-D (CPU_HYPERPARAMETERS) |", "|---|---:|---:|---:|---:|---:|"]
    lat = res["latency_ms"]
    for n in args.latency_agents:
        keys = [f"N={n}/BC"] + [f"N={n}/{v}/{c}" for c in ("trained", "cpu-default") for v in ("MADiff-C", "MADiff-D")]
        lines.append(f"| N={n} | " + " | ".join(f"{lat[k]:.1f}" for k in keys) + " |")
    lines += ["", "MADiff-D runs N plans per step (one per agent, batched); MADiff-C runs one joint plan. "
                  "Timings on a shared machine can swing ~2-3x."]
    return "\n".join(lines) + "\n"


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=15_000, help="MADiff gradient steps")
    p.add_argument("--bc-steps", type=int, default=None, help="BC gradient steps (default: --steps, equal budgets)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--episodes", type=int, default=50, help="evaluation episodes per run (>= 50 for results)")
    p.add_argument("--eval-seed", type=int, default=1_000)
    p.add_argument("--eval-envs", type=int, default=10, help="envs evaluated in lockstep with batched predict "
                   "(same episodes and seeds as sequential evaluation; only faster)")
    p.add_argument("--datasets", nargs="+", default=["expert", "medium", "random"])
    p.add_argument("--dataset-size", type=int, default=100_000)
    p.add_argument("--methods", nargs="+", default=["MADiff-C", "MADiff-D", "BC", "DQL"],
                   choices=["MADiff-C", "MADiff-D", "BC", "DQL"])
    p.add_argument("--jobs", type=int, default=1, help="worker processes (1 torch thread each; 2 on a 2-core VM)")
    p.add_argument("--n4-seeds", type=int, nargs="+", help="seeds of the N=4 run (default: --seeds)")
    p.add_argument("--n4-methods", nargs="+", help="methods of the N=4 run (default: --methods)")
    hp = p.add_argument_group("MADiff overrides of CPU_HYPERPARAMETERS (default: keep its value)")
    hp.add_argument("--dim", type=int)
    hp.add_argument("--dim-mults", type=int, nargs="+")
    hp.add_argument("--diffusion-steps", type=int)
    hp.add_argument("--sampler-steps", type=int)
    hp.add_argument("--horizon", type=int)
    hp.add_argument("--batch-size", type=int)
    hp.add_argument("--prediction-type", choices=["eps", "x0", "v"])
    hp.add_argument("--lr", type=float)
    hp.add_argument("--ema-every", type=int, help="EMA update period (preset 10: a 2000-step EMA horizon, for 10k+ steps)")
    hp.add_argument("--ema-start", type=int)
    p.add_argument("--no-n4", dest="n4", action="store_false", help="skip the N=4 run")
    p.add_argument("--ref-episodes", type=int, default=100)
    p.add_argument("--latency-agents", type=int, nargs="+", default=[3, 6])
    p.add_argument("--latency-steps", type=int, default=50)
    p.add_argument("--progress", action="store_true")
    p.add_argument("--out", default="madiff", help="results file stem in benchmarks/results")
    p.add_argument("--smoke", action="store_true", help="1 seed, 300 steps, dim 32, small data, 10 episodes")
    args = p.parse_args(argv)
    if args.smoke:
        args.steps, args.bc_steps, args.seeds, args.episodes = 300, 1000, [0], 10
        args.dim, args.sampler_steps, args.dataset_size = 32, 5, 5_000
        args.ref_episodes, args.latency_steps = 20, 30
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    command = "OMP_NUM_THREADS=1 python benchmarks/madiff.py " + " ".join(sys.argv[1:] if argv is None else argv)
    t0 = time.perf_counter()
    load_start = os.getloadavg()[0]
    res = run(args)
    wall = time.perf_counter() - t0
    res["meta"] = {"command": command, "hardware": hardware(), "smoke": args.smoke, "wall_s": wall,
                   "args": vars(args), "load_start": load_start, "load_end": os.getloadavg()[0]}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{args.out}.json").write_text(json.dumps(res, indent=1, default=float))
    (RESULTS / f"{args.out}.md").write_text(markdown(res, args, command, wall))
    print((RESULTS / f"{args.out}.md").read_text())


if __name__ == "__main__":
    main()
