"""Re-evaluate shipped zoo entries on their cards' own seeds and episode counts and compare with the cards.

A behaviour-preserving refactor must reproduce every card: the same weights, acting settings and seeds give the
same episodes. Entries are re-checked cheapest first (episode length x decision cost of the algorithm, from the
card's wall time when known), one process, one thread; each result is appended to ``results/zoo_recheck.jsonl``
(resumable: entries already there are skipped) and the report ``results/zoo_recheck.md`` lists every entry, the
re-checked ones with card vs fresh score and the others with the date of their last evaluation (the card's).

    python benchmarks/zoo_recheck.py --budget-s 3000
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent


def _key(card: dict[str, Any]) -> str:
    ev = card["evaluation"]
    return "normalized_mean" if "normalized_mean" in ev else ("return_mean" if "return_mean" in ev
                                                                else "next_std_mse_mean")


def recheck(zoo_id: str) -> dict[str, Any]:
    from diffagents import zoo

    card = zoo.card(zoo_id)
    ev = card["evaluation"]
    t0 = time.perf_counter()
    if "samples" in ev:
        fresh = zoo.evaluate(zoo_id, n_episodes=ev["samples"], seed=ev["seed"])
    else:
        fresh = zoo.evaluate(zoo_id, n_episodes=ev["episodes"], seed=ev["seed"])
    key = _key(card)
    return {"id": zoo_id, "key": key, "card": ev[key], "fresh": fresh[key], "equal": fresh[key] == ev[key],
            "abs_diff": abs(fresh[key] - ev[key]), "seconds": round(time.perf_counter() - t0, 1),
            "card_date": card.get("date"), "date": time.strftime("%Y-%m-%d")}


def _rows(path: Path) -> dict[str, dict[str, Any]]:
    if not path.is_file():
        return {}
    return {r["id"]: r for r in (json.loads(line) for line in path.read_text().splitlines())}


def report(rows: dict[str, dict[str, Any]]) -> str:
    """The results fragment: card, this revision and the older one (``zoo_recheck_old.jsonl``) per entry."""
    from diffagents import zoo
    from diffagents.sysinfo import hardware

    old = _rows(HERE / "results" / "zoo_recheck_old.jsonl")
    same = sum(1 for k, r in rows.items() if k in old and old[k]["fresh"] == r["fresh"])
    both = sum(1 for k in rows if k in old)
    lines = ["`python benchmarks/zoo_recheck.py --budget-s 3000` (this revision, then `--ids` for the entries it had "
             "not reached) and the same script run with `PYTHONPATH` on b3d7d6a, the last revision before the agent "
             "kernel (`--stem zoo_recheck_old`, its zoo/ linked as diffagents/zoo): each shipped entry re-evaluated "
             f"with its card's seed and episode count (generators: its sample count). {hardware()}, one process "
             "each, 1 thread. The refactor must give exactly the older revision's figure on the same machine: "
             f"**{same} of {both} entries run with both revisions are identical to the last digit**. The cards were "
             "evaluated on other machines of the same kind; MuJoCo and Pendulum episodes carry those machines' "
             "floating-point differences, hence |card - fresh|. Entries not re-run (over 10 minutes each on one "
             "thread) are listed with the date of their card's evaluation.\n",
             "| zoo id | metric | card | this revision | before the kernel | identical to before | "
             "abs(card - fresh) | seconds | checked |", "|---|---|---:|---:|---:|---|---:|---:|---|"]
    final = _rows(HERE / "results" / "zoo_recheck_final.jsonl")
    if final:
        agree = sum(1 for k, f in final.items() if k in old and old[k]["fresh"] == f["fresh"])
        lines.insert(1, f"After the last changes of the session (`--stem zoo_recheck_final --ids ...`, the {len(final)} "
                        f"fastest entries): **{agree} of {len(final)} identical to the pre-kernel revision** again.\n")
    for zoo_id in [r["id"] for r in zoo.list_agents()]:
        r, o = rows.get(zoo_id), old.get(zoo_id)
        if r is None:
            date = zoo.card(zoo_id).get("date", "?")
            lines.append(f"| {zoo_id} | | | | | not re-run (over the time budget) | | | card of {date} |")
            continue
        before = f"{o['fresh']:.10g}" if o else "not run"
        ident = ("yes" if o["fresh"] == r["fresh"] else "NO") if o else "-"
        lines.append(f"| {zoo_id} | {r['key']} | {r['card']:.10g} | {r['fresh']:.10g} | {before} | {ident} | "
                     f"{r['abs_diff']:.2g} | {r['seconds']} | {r['date']} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    import torch

    torch.set_num_threads(1)
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--budget-s", type=float, default=3000.0, help="stop starting new entries after this long")
    p.add_argument("--report", action="store_true", help="only rewrite the report")
    p.add_argument("--ids", nargs="*", default=None, help="re-check only these entries")
    p.add_argument("--stem", default="zoo_recheck", help="results/<stem>.jsonl; run with PYTHONPATH set to an older "
                   "checkout (its zoo/ linked as diffagents/zoo) and --stem zoo_recheck_old to compare revisions")
    args = p.parse_args()
    out = HERE / "results" / f"{args.stem}.jsonl"
    from diffagents import zoo

    done = {}
    if args.stem == "zoo_recheck_final":  # the report is always of the main run
        out_main = HERE / "results" / "zoo_recheck.jsonl"
        done_main = _rows(out_main)
    if out.is_file():
        for line in out.read_text().splitlines():
            row = json.loads(line)
            done[row["id"]] = row
    if not args.report:
        ids = [r["id"] for r in zoo.list_agents() if r["id"] not in done and (not args.ids or r["id"] in args.ids)]
        ids.sort(key=lambda i: (zoo.card(i)["evaluation"].get("episodes", 1) * _steps(zoo, i), i))
        t0 = time.perf_counter()
        for zoo_id in ids:
            if time.perf_counter() - t0 > args.budget_s:
                break
            row = recheck(zoo_id)
            done[zoo_id] = row
            with out.open("a") as fh:
                fh.write(json.dumps(row) + "\n")
            print(json.dumps(row), flush=True)
    if args.stem in ("zoo_recheck", "zoo_recheck_final"):
        (HERE / "results" / "zoo_recheck.md").write_text(report(done_main if args.stem == "zoo_recheck_final"
                                                                 else done))


def _steps(zoo: Any, zoo_id: str) -> int:
    import gymnasium as gym

    from diffagents.data.envs import ensure_registered

    env = zoo.card(zoo_id)["env"]
    if not isinstance(env, str):
        return 25
    ensure_registered(env)
    limit = gym.spec(env).max_episode_steps or 1000
    from diffagents.agents import get_agent_class

    try:
        cls = get_agent_class(zoo.entries()[zoo_id].algo)
    except ValueError:  # revisions before the registry did not list MADiff / SynthER there
        cls = None
    planner = getattr(cls, "batch_spec", getattr(cls, "uses_windows", False) and "windows") in ("windows", "chunks")
    return limit * (20 if planner else 1)


if __name__ == "__main__":
    main()
