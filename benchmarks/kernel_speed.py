"""Speed before and after a refactor: ``diffagents bench`` of an older revision beside this one, in one run.

Both revisions are checked out with ``git worktree`` into a temporary folder and imported from there
(``PYTHONPATH``; ``--new`` defaults to ``HEAD``, so edits in the working tree do not leak into the run); the two are run alternately (``--rounds`` pairs, one thread
each, one process at a time) so drifts of the machine hit both. Reports gradient steps/s and batch-1 decision
latency per agent (median over rounds) and the ratio new / old.

    python benchmarks/kernel_speed.py --old b3d7d6a --rounds 2 --steps 30 --repeats 9 \
        --out results/kernel_speed.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def bench(tree: Path, args: argparse.Namespace, out: Path) -> dict[str, Any]:
    code = ("import sys; sys.argv = ['diffagents'] + sys.argv[1:]; from diffagents.cli import main; "
            "raise SystemExit(main())")
    cmd = [sys.executable, "-c", code, "bench", "--env", args.env, "--steps", str(args.steps), "--repeats",
           str(args.repeats), "--json", str(out)]
    env = {**os.environ, "PYTHONPATH": str(tree), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    subprocess.run(cmd, check=True, env=env, cwd=tree, stdout=subprocess.DEVNULL)
    return json.loads(out.read_text())  # type: ignore[no-any-return]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--old", required=True, help="git revision to compare against")
    p.add_argument("--new", default="HEAD", help="git revision measured against --old")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--repeats", type=int, default=9)
    p.add_argument("--env", default="HalfCheetah-v5")
    p.add_argument("--out", default="results/kernel_speed.json")
    p.add_argument("--report", action="store_true", help="only rewrite the .md fragment from the --out JSON")
    args = p.parse_args()
    out = Path(__file__).parent / args.out
    if args.report:
        write_fragment(json.loads(out.read_text()), out.with_suffix(".md"))
        return
    runs: dict[str, list[dict[str, Any]]] = {"old": [], "new": []}
    with tempfile.TemporaryDirectory(prefix="diffagents_old_") as tmp:
        trees = {label: Path(tmp) / label for label in ("old", "new")}
        for label, rev in (("old", args.old), ("new", args.new)):
            subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(trees[label]), rev],
                           check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            for r in range(args.rounds):
                for label, tree in trees.items():
                    info = bench(tree, args, Path(tmp) / f"{label}{r}.json")
                    runs[label].append(info)
                    print(f"round {r} {label}: " + ", ".join(
                        f"{row['agent']} {row['train_steps_per_s'] or 0:.1f}/s {row['latency_ms']:.1f} ms"
                        for row in info["rows"]), flush=True)
        finally:
            for tree in trees.values():
                subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)], check=False)
    table = summarize(runs)
    result = {"old": args.old, "new": subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", args.new],
                                                     capture_output=True, text=True).stdout.strip(), "env": args.env, "steps": args.steps, "repeats": args.repeats,
              "rounds": args.rounds, "hardware": runs["new"][0]["hardware"], "threads": 1, "agents": table}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    write_fragment(result, out.with_suffix(".md"))
    print(render(result))


def write_fragment(result: dict[str, Any], path: Path) -> None:
    """The RESULTS.md section: command, hardware and the table."""
    text = (f"`python benchmarks/kernel_speed.py --old {result['old']} --new {result.get('new', 'HEAD')} --rounds "
            f"{result['rounds']} --steps {result['steps']} --repeats {result['repeats']}` on {result['env']} "
            f"(`diffagents bench` sizes: each agent's `bench_config()`), {result['hardware']}, torch with 1 thread, "
            f"one process at a time, old and new alternating. Medians over {result['rounds']} rounds; between "
            "rounds of the same revision the figures moved by up to about 10 %, so ratios within 0.9-1.1 are "
            "noise. Old: the last revision before the agent kernel; new: the kernel (registry, one loop, one "
            "checkpoint format, family packages).\n\n" + render(result) + "\n")
    path.write_text(text)


def _name(agent: str) -> str:
    return {"CPQL": "OfflineCPQL"}.get(agent, agent)  # the old bench row of offline CPQL was named CPQL


def summarize(runs: dict[str, list[dict[str, Any]]]) -> dict[str, dict[str, float]]:
    by: dict[str, dict[str, list[float]]] = {}
    for label, infos in runs.items():
        for info in infos:
            for row in info["rows"]:
                d = by.setdefault(_name(row["agent"]), {})
                if row["train_steps_per_s"] is not None:
                    d.setdefault(f"{label}_steps_per_s", []).append(row["train_steps_per_s"])
                d.setdefault(f"{label}_latency_ms", []).append(row["latency_ms"])
    table = {}
    for agent, d in by.items():
        med = {k: statistics.median(v) for k, v in d.items()}
        if "old_steps_per_s" in med and "new_steps_per_s" in med:
            med["steps_ratio"] = med["new_steps_per_s"] / med["old_steps_per_s"]
        if "old_latency_ms" in med and "new_latency_ms" in med:
            med["latency_ratio"] = med["new_latency_ms"] / med["old_latency_ms"]
        med["spread_steps_new"] = (max(d.get("new_steps_per_s", [0])) - min(d.get("new_steps_per_s", [0])))
        table[agent] = med
    return table


def render(result: dict[str, Any]) -> str:
    lines = ["| agent | steps/s old | steps/s new | new/old | latency ms old | latency ms new | new/old |",
             "|---|---|---|---|---|---|---|"]
    for agent, m in sorted(result["agents"].items()):
        lines.append(f"| {agent} | {m.get('old_steps_per_s', float('nan')):.1f} | "
                     f"{m.get('new_steps_per_s', float('nan')):.1f} | {m.get('steps_ratio', float('nan')):.2f} | "
                     f"{m.get('old_latency_ms', float('nan')):.2f} | {m.get('new_latency_ms', float('nan')):.2f} | "
                     f"{m.get('latency_ratio', float('nan')):.2f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
