"""The ``diffagents`` command line (rl-zoo3 style): data, train, eval, zoo, quickstart, bench.

Every command runs torch with one thread unless ``--threads`` says otherwise (two threads on a busy 2-core
machine can be 100x slower, see docs). Bad arguments exit with status 2 and a one-line error.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any


class CLIError(Exception):
    """A user error reported as one line with exit status 2."""


def _set_threads(n: int) -> None:
    import torch

    torch.set_num_threads(n)


def _parse_overrides(items: Sequence[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise CLIError(f"--set: expected KEY=VALUE, got {item!r}")
        try:
            out[key] = json.loads(raw)
        except json.JSONDecodeError:
            out[key] = raw
    return out


def _env_for(dataset: Any, env_id: str | None) -> Any:
    import gymnasium as gym

    if env_id:
        from diffagents.data.envs import ensure_registered

        ensure_registered(env_id)
        try:
            return gym.make(env_id)
        except gym.error.Error as exc:
            raise CLIError(f"--env: cannot make {env_id!r}: {exc}") from exc
    from diffagents.data import DataError
    from diffagents.data.safe_env import make_env_from_dataset

    try:
        return make_env_from_dataset(dataset)
    except DataError as exc:  # an unknown or tampered env spec: nothing was imported
        raise CLIError(f"--dataset: {exc}") from exc
    except gym.error.Error as exc:
        raise CLIError(f"--env: cannot make the dataset's env ({exc}); pass --env") from exc


def _ref_scores(dataset: Any) -> tuple[float, float] | None:
    from diffagents.data import reference_scores

    return reference_scores(dataset) if dataset is not None else None


def cmd_data(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from diffagents.data import list_recipes, make_dataset

    console = Console()
    if args.action == "list":
        table = Table(title="diffagents dataset recipes")
        table.add_column("id")
        table.add_column("description")
        for rid, desc in list_recipes().items():
            table.add_row(rid, desc)
        console.print(table)
        return 0
    if not args.id:
        raise CLIError("data make: missing dataset ID (see `diffagents data list`)")
    t0 = time.perf_counter()
    ds = make_dataset(args.id, size=args.size, seed=args.seed, force=args.force)
    console.print(f"{ds.spec.dataset_id}: {ds.total_episodes} episodes, {ds.total_steps} steps "
                  f"({time.perf_counter() - t0:.1f} s)")
    return 0


def _train(algo: str, dataset_id: str, env_id: str | None, steps: int, seed: int, out: str | None,
           device: str, precision: str | None, overrides: dict[str, Any], episodes: int, progress: bool,
           size: int | None = None) -> dict[str, Any]:
    from rich.console import Console

    from diffagents.core.registry import get_agent_info
    from diffagents.data import load_dataset as load_ds
    from diffagents.data import make_dataset
    from diffagents.evaluation import evaluate_agent

    console = Console()
    try:
        info = get_agent_info(algo)
    except ValueError as exc:
        raise CLIError(str(exc)) from exc
    if info.kind not in ("offline", "multiagent"):
        raise CLIError(f"{algo}: `diffagents train` trains dataset agents (offline or multi-agent), got a "
                       f"{info.kind} agent")
    cls = info.cls
    from diffagents.data import DataError

    try:
        ds = make_dataset(dataset_id, size=size, seed=0)
    except (KeyError, DataError):
        try:
            ds = load_ds(dataset_id)
        except Exception as exc:  # noqa: BLE001
            raise CLIError(f"--dataset: {dataset_id!r} is neither a recipe nor a local Minari dataset: {exc}"
                           ) from exc
    if info.kind == "multiagent":
        return _train_multiagent(cls, ds, steps, seed, out, device, precision, overrides, episodes, progress)
    env = _env_for(ds, env_id)
    if precision:
        overrides["precision"] = precision
    try:
        agent = cls(env=env, dataset=ds, seed=seed, device=device, **overrides)
    except (TypeError, ValueError) as exc:
        raise CLIError(f"{algo}: {exc}") from exc
    from diffagents.distributed import is_main_process

    t0 = time.perf_counter()
    ckpt_dir = f"{out}.checkpoints" if out else None
    previous = sorted(Path(ckpt_dir).glob("step_*.zip")) if ckpt_dir else []
    if previous and is_main_process():
        console.print(f"resuming from {previous[-1]}")
    agent.learn(steps, progress_bar=progress and is_main_process(), checkpoint_dir=ckpt_dir,
                checkpoint_every=max(1, min(1000, steps // 10 or 1)))
    train_s = time.perf_counter() - t0
    if not is_main_process():  # under torchrun only rank 0 saves and evaluates
        return {}
    if out:
        agent.save(out)
        console.print(f"saved {out}")
    res = evaluate_agent(agent, env, n_episodes=episodes, seed=seed + 1000, ref_scores=_ref_scores(ds))
    console.print(f"[bold]{cls.__name__}[/bold] on {ds.spec.dataset_id}: {steps} gradient steps in {train_s:.0f} s "
                  f"(seed {seed}); {res.summary()}")
    return {"algo": cls.__name__, "dataset": ds.spec.dataset_id, "steps": steps, "seed": seed,
            "train_seconds": train_s, "return_mean": res.mean, "return_std": res.std,
            "normalized_mean": None if res.normalized is None else float(res.normalized.mean())}


def _train_multiagent(cls: Any, ds: Any, steps: int, seed: int, out: str | None, device: str,
                      precision: str | None, overrides: dict[str, Any], episodes: int, progress: bool
                      ) -> dict[str, Any]:
    """``train`` of a multi-agent agent on a multi-agent dataset (its ``cpu_preset`` under the overrides),
    resumable from ``OUT.checkpoints``, evaluated on the PettingZoo env the dataset's metadata names."""
    import numpy as np
    from rich.console import Console

    from diffagents.wrappers.pettingzoo import env_fn_from_dataset, evaluate

    try:
        env_fn = env_fn_from_dataset(ds)
    except ValueError as exc:
        raise CLIError(f"--dataset: {exc}") from exc
    if precision:
        overrides["precision"] = precision
    try:
        agent = cls(env_fn, ds, seed=seed, device=device, **{**getattr(cls, "cpu_preset", {}), **overrides})
    except (TypeError, ValueError) as exc:
        raise CLIError(f"{cls.agent_name}: {exc}") from exc
    t0 = time.perf_counter()
    agent.learn(steps, progress_bar=progress, log_interval=0, checkpoint_dir=f"{out}.checkpoints" if out else None,
                checkpoint_every=max(1, min(1000, steps // 10 or 1)))
    train_s = time.perf_counter() - t0
    if out:
        agent.save(out)
        Console().print(f"saved {out}")
    res = evaluate(agent, env_fn, n_episodes=episodes, seed=seed + 1000, reference_scores=ds)
    norm = float(np.mean(res["normalized"])) if "normalized" in res else None
    Console().print(f"[bold]{cls.agent_name}[/bold] on {ds.spec.dataset_id}: {steps} gradient steps in {train_s:.0f} s (seed "
                    f"{seed}); team return {res['mean']:.1f} +- {res['std']:.1f}"
                    + (f", normalized {norm:.1f}" if norm is not None else "") + f" over {episodes} episodes")
    return {"algo": cls.agent_name, "dataset": ds.spec.dataset_id, "steps": steps, "seed": seed, "train_seconds": train_s,
            "return_mean": res["mean"], "return_std": res["std"], "normalized_mean": norm}


def cmd_train(args: argparse.Namespace) -> int:
    _train(args.algo, args.dataset, args.env, args.steps, args.seed, args.out, args.device, args.precision,
           _parse_overrides(args.set or []), args.eval_episodes, not args.no_progress)
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from rich.console import Console

    from diffagents.core.offline import OfflineAgent
    from diffagents.data import load_dataset as load_ds
    from diffagents.evaluation import evaluate_agent

    path = Path(args.path)
    if not path.exists():
        raise CLIError(f"eval: no such checkpoint {str(path)!r}")
    ds = load_ds(args.dataset) if args.dataset else None
    if _checkpoint_algo(path) == "MADiff":
        return _eval_madiff(path, ds, args)
    if ds is None and not args.env:
        raise CLIError("eval: pass --env (or --dataset to use its evaluation env)")
    env = _env_for(ds, args.env)
    agent = OfflineAgent.load(path, env=env, device=args.device)
    res = evaluate_agent(agent, env, n_episodes=args.episodes, seed=args.seed, ref_scores=_ref_scores(ds))
    Console().print(f"{type(agent).__name__} from {path}: {res.summary()}")
    return 0


def _checkpoint_algo(path: Path) -> str | None:
    """The ``algo`` a checkpoint holds (read from its JSON header; nothing is executed)."""
    from diffagents.persistence import CheckpointError, read_checkpoint

    try:
        return read_checkpoint(path, load_optimizers=False).meta.get("algo")
    except CheckpointError:
        return None  # let the agent loader raise its own, more specific error


def _eval_madiff(path: Path, ds: Any, args: argparse.Namespace) -> int:
    import numpy as np
    from rich.console import Console

    from diffagents import MADiff
    from diffagents.wrappers.pettingzoo import env_fn_from_dataset, evaluate

    if ds is None:
        raise CLIError("eval: a MADiff checkpoint needs --dataset (its PettingZoo env and reference scores)")
    try:
        env_fn = env_fn_from_dataset(ds)
    except ValueError as exc:
        raise CLIError(f"--dataset: {exc}") from exc
    agent = MADiff.load(path, env=env_fn, device=args.device)
    res = evaluate(agent, env_fn, n_episodes=args.episodes, seed=args.seed, reference_scores=ds)
    norm = f", normalized {np.mean(res['normalized']):.1f}" if "normalized" in res else ""
    Console().print(f"MADiff from {path}: team return {res['mean']:.1f} +- {res['std']:.1f}{norm} over "
                    f"{args.episodes} episodes")
    return 0


def cmd_zoo(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from diffagents import zoo

    console = Console()
    if args.action == "list":
        table = Table(title="diffagents zoo")
        for col in ("id", "algorithm", "dataset", "normalized score", "trained"):  # generators: no score
            table.add_column(col)
        for row in zoo.list_agents(trained_only=False):
            score = "" if row["score"] is None else f"{row['score']:.1f}"
            table.add_row(row["id"], row["algo"], row["dataset"], score, "yes" if row["trained"] else "no")
        console.print(table)
        return 0
    if not args.id:
        raise CLIError(f"zoo {args.action}: missing ZOO_ID (see `diffagents zoo list`)")
    if args.checkpoint_dir and args.action != "train":
        raise CLIError(f"--checkpoint-dir: only for `zoo train`, not `zoo {args.action}`")
    try:
        if args.action == "train":
            info = zoo.train(args.id, device=args.device, progress_bar=not args.no_progress,
                             checkpoint_dir=Path(args.checkpoint_dir) if args.checkpoint_dir else None)
            console.print_json(json.dumps(info))
        elif args.action == "rescore":
            console.print_json(json.dumps(zoo.rescore(args.id, device=args.device)))
        elif args.action == "eval":
            console.print_json(json.dumps(zoo.evaluate(args.id, n_episodes=args.episodes, seed=args.seed,
                                                       device=args.device, n_envs=args.n_envs)))
        else:  # enjoy
            from diffagents.zoo.enjoy import record_episode

            path = record_episode(args.id, args.output or f"{args.id}.gif", seed=args.seed)
            console.print(f"wrote {path}")
    except (KeyError, FileNotFoundError, ValueError) as exc:
        raise CLIError(str(exc).strip("'\"")) from exc
    return 0


QUICKSTART_ZOO_ID = "diffusionql-pendulum-expert"


def cmd_quickstart(args: argparse.Namespace) -> int:
    """Evaluate the pretrained zoo agent, then generate the local Pendulum dataset, train briefly and evaluate."""
    from rich.console import Console

    from diffagents import zoo

    console = Console()
    if any(row["id"] == QUICKSTART_ZOO_ID for row in zoo.list_agents()):
        ev = zoo.evaluate(QUICKSTART_ZOO_ID, n_episodes=args.episodes, seed=args.seed, device=args.device)
        card = zoo.card(QUICKSTART_ZOO_ID)["evaluation"]
        console.print(f"[bold]zoo {QUICKSTART_ZOO_ID}[/bold]: return {ev['return_mean']:.1f} +- "
                      f"{ev['return_std']:.1f}, normalized {ev.get('normalized_mean', float('nan')):.1f} over "
                      f"{args.episodes} episodes (model card: {card.get('normalized_mean', float('nan')):.1f})")
    result = _train("diffusionql", "diffagents/pendulum/expert-v0", None, args.steps, args.seed, args.out,
                    args.device, None, {"n_candidates": 10}, args.episodes, not args.no_progress)
    print(json.dumps(result))
    return 0


def _fmt(value: float | None, digits: int) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def cmd_bench(args: argparse.Namespace) -> int:
    """Gradient steps/s and batch-1 decision latency of each agent on a temporary random dataset."""
    import gymnasium as gym
    import torch
    from rich.console import Console
    from rich.table import Table

    from diffagents import bench
    from diffagents.core.registry import get_agent_class

    if args.bench_threads is not None:
        if args.bench_threads < 1:
            raise CLIError(f"bench --threads: expected >= 1, got {args.bench_threads}")
        _set_threads(args.bench_threads)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise CLIError("bench --device cuda: no CUDA device is available (torch.cuda.is_available() is False)")
    for name, value in (("--steps", args.steps), ("--repeats", args.repeats)):
        if value is not None and value < 1:
            raise CLIError(f"bench {name}: expected >= 1, got {value}")
    names = args.algos or bench.default_agents()
    for name in names:
        try:
            get_agent_class(name)
        except ValueError as exc:
            raise CLIError(str(exc)) from exc
    try:
        gym.make(args.env).close()
    except gym.error.Error as exc:
        raise CLIError(f"bench --env: cannot make {args.env!r}: {exc}") from exc
    console = Console()
    info = bench.run(names, env_id=args.env, device=args.device, steps=args.steps or (5 if args.quick else 50),
                     repeats=args.repeats or (3 if args.quick else 15), dataset_steps=1000 if args.quick else 5000, quick=args.quick,
                     on_result=lambda r: console.print(f"{r.agent}: {_fmt(r.train_steps_per_s, 1)} steps/s, "
                                                       f"{r.latency_ms:.2f} ms", style="dim"))
    table = Table(title=f"diffagents bench: {args.env}, {args.device}, {info['threads']} thread(s)",
                  caption=info["hardware"])
    for col in ("agent", "batch", "train grad steps/s", "latency, batch 1 (ms)"):
        table.add_column(col, justify="left" if col == "agent" else "right")
    for r in info["rows"]:
        table.add_row(r["agent"], str(r["batch"] or ""), _fmt(r["train_steps_per_s"], 1), _fmt(r["latency_ms"], 2))
    console.print(table)
    if args.json:
        Path(args.json).write_text(json.dumps(info, indent=1))
        console.print(f"wrote {args.json}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="diffagents", description="Diffusion agents for offline and online RL.")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    sub = p.add_subparsers(dest="command", required=True)

    d = sub.add_parser("data", help="make or list local benchmark datasets")
    d.add_argument("action", choices=["make", "list"])
    d.add_argument("id", nargs="?", help="dataset id, e.g. diffagents/pendulum/expert-v0")
    d.add_argument("--size", type=int, default=None, help="number of steps (default: the recipe's)")
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--force", action="store_true", help="regenerate even if cached")
    d.set_defaults(func=cmd_data)

    t = sub.add_parser("train", help="train an agent offline on a dataset, save and evaluate it")
    t.add_argument("algo", help="agent class name, case-insensitive (diffusionql, idql, diffuser, ...)")
    t.add_argument("--dataset", required=True, help="recipe id or local Minari dataset id/path")
    t.add_argument("--env", default=None, help="evaluation env id (default: the dataset's eval env)")
    t.add_argument("--steps", type=int, default=10_000, help="gradient steps")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--out", default=None, help="checkpoint path (.zip)")
    t.add_argument("--device", default="auto")
    t.add_argument("--precision", choices=["fp32", "bf16"], default=None)
    t.add_argument("--eval-episodes", type=int, default=10)
    t.add_argument("--set", nargs="*", metavar="KEY=VALUE", help="hyperparameter overrides (JSON values)")
    t.add_argument("--no-progress", action="store_true")
    t.set_defaults(func=cmd_train)

    e = sub.add_parser("eval", help="evaluate a saved checkpoint")
    e.add_argument("path")
    e.add_argument("--env", default=None)
    e.add_argument("--dataset", default=None, help="dataset id for reference scores / eval env")
    e.add_argument("--episodes", type=int, default=10)
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--device", default="auto")
    e.set_defaults(func=cmd_eval)

    z = sub.add_parser("zoo", help="pretrained agents shipped with the package")
    z.add_argument("action", choices=["list", "eval", "enjoy", "train", "rescore"],
                   help="rescore: apply a recipe's changed acting settings to the shipped weights and re-evaluate")
    z.add_argument("id", nargs="?", help="zoo id, e.g. diffusionql-pendulum-expert")
    z.add_argument("--episodes", type=int, default=20,
                   help="eval: episodes (for SynthER generators: sampled transitions checked against the simulator)")
    z.add_argument("--seed", type=int, default=0)
    z.add_argument("--n-envs", type=int, default=1,
                   help="eval: env copies stepped together (the agent acts on a batch; single-agent entries)")
    z.add_argument("--device", default="auto")
    z.add_argument("--output", default=None, help="enjoy: GIF/MP4 path")
    z.add_argument("--checkpoint-dir", default=None,
                   help="train: keep training checkpoints in this folder and resume from the newest one there")
    z.add_argument("--no-progress", action="store_true")
    z.set_defaults(func=cmd_zoo)

    q = sub.add_parser("quickstart", help="local dataset -> short DiffusionQL training -> evaluation")
    q.add_argument("--steps", type=int, default=3000)
    q.add_argument("--episodes", type=int, default=10)
    q.add_argument("--seed", type=int, default=0)
    q.add_argument("--out", default=None)
    q.add_argument("--device", default="auto")
    q.add_argument("--no-progress", action="store_true")
    q.set_defaults(func=cmd_quickstart)

    b = sub.add_parser("bench", help="training speed and decision latency of the installed agents",
                       description="Gradient steps/s of each agent's full update and the median latency of "
                                   "predict(obs, deterministic=True) at batch 1, on a small random dataset built "
                                   "in a temporary folder. Sizes: each agent's bench_config() (tiny_config() with --quick).")
    b.add_argument("algos", nargs="*", metavar="ALGO", help="agent names (default: every registered agent)")
    b.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    b.add_argument("--quick", action="store_true", help="smaller dataset, fewer steps and repeats")
    b.add_argument("--json", default=None, metavar="PATH", help="also write the results as JSON")
    b.add_argument("--env", default="HalfCheetah-v5", help="env giving the shapes (default HalfCheetah-v5)")
    b.add_argument("--steps", type=int, default=None, help="timed gradient steps (default 50, quick 5)")
    b.add_argument("--repeats", type=int, default=None, help="timed decisions (default 15, quick 3)")
    b.add_argument("--threads", dest="bench_threads", type=int, default=None,
                   help="torch CPU threads (default: the global --threads, 1)")
    b.set_defaults(func=cmd_bench)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.threads < 1:
        parser.error(f"--threads: expected >= 1, got {args.threads}")
    _set_threads(args.threads)
    from diffagents.data.errors import DataError
    from diffagents.persistence import CheckpointError

    try:
        return int(args.func(args))
    except (CLIError, DataError, CheckpointError) as exc:
        message = " ".join(str(exc).split())
        print(f"diffagents: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
