"""``diffagents data ...`` commands (also ``python -m diffagents.data``).

* ``diffagents data list``: recipes and their descriptions.
* ``diffagents data make ID [--size N] [--seed S] [--force]``: build (or reuse) a local dataset.
* ``diffagents data info ID|PATH``: episodes, steps, spaces and reference scores of a dataset.
"""

from __future__ import annotations

import argparse
import time


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``data`` sub-commands to ``parser`` (for the top-level ``diffagents`` CLI)."""
    sub = parser.add_subparsers(dest="data_command", required=True)
    sub.add_parser("list", help="list dataset recipes")
    make = sub.add_parser("make", help="build a local dataset from a recipe")
    make.add_argument("id", help="recipe id, e.g. pendulum/expert-v0")
    make.add_argument("--size", type=int, default=None, help="number of steps (default: the recipe's)")
    make.add_argument("--seed", type=int, default=0)
    make.add_argument("--force", action="store_true", help="rebuild even if cached")
    info = sub.add_parser("info", help="describe a dataset")
    info.add_argument("dataset", help="Minari id or dataset folder")


def run(args: argparse.Namespace) -> int:
    """Execute a parsed ``data`` command; returns the exit status."""
    import diffagents.data as data

    if args.data_command == "list":
        for rid, desc in data.list_recipes().items():
            print(f"{rid:42s} {desc}")
        return 0
    if args.data_command == "make":
        t0 = time.perf_counter()
        ds = data.make_dataset(args.id, size=args.size, seed=args.seed, force=args.force)
        print(f"{ds.spec.dataset_id}: {ds.total_episodes} episodes, {ds.total_steps} steps "
              f"({time.perf_counter() - t0:.1f} s), reference scores {data.reference_scores(ds)}")
        return 0
    ds = data.load_dataset(args.dataset)
    print(f"{ds.spec.dataset_id}: {ds.total_episodes} episodes, {ds.total_steps} steps")
    print(f"observation_space: {ds.observation_space}\naction_space: {ds.action_space}")
    print(f"reference scores: {data.reference_scores(ds)}")
    print(ds.storage.metadata.get("description", ""))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="diffagents data", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    return run(parser.parse_args(argv))
