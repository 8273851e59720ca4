"""Benchmark the dataset recipes and the batching path of ``diffagents.data``.

For each recipe (default size, seed 0): generation time, size on disk, behaviour return and its normalized
score (100 * (R - ref_min) / (ref_max - ref_min)); then ``TensorSampler`` transition batches and
``WindowSampler`` window batches per second; then, in a fresh subprocess, the time and peak RSS of loading the
largest dataset into transitions + windows. Writes ``benchmarks/results/datasets.md`` (+ ``.json``).

Usage (1 thread, one job at a time; datasets land in ``MINARI_DATASETS_PATH``)::

    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/datasets.py                     # default suite
    OMP_NUM_THREADS=1 python benchmarks/datasets.py --recipes toy/multimodal-v0 --size 2000   # quick check
    OMP_NUM_THREADS=1 python benchmarks/datasets.py --load-only diffagents/pointmaze/large-v0
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from diffagents.sysinfo import hardware

DEFAULT_SUITE = [
    "toy/multimodal-v0", "pendulum/random-v0", "pendulum/medium-v0", "pendulum/expert-v0", "pendulum/replay-v0",
    "mpe-spread/expert-v0", "mpe-spread/medium-v0", "mpe-spread/random-v0",
    "pointmaze/umaze-v0", "pointmaze/medium-v0", "pointmaze/large-v0",
]
RESULTS = Path(__file__).resolve().parent / "results"


def _dir_size_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 1e6


def _rate(fn: Any, seconds: float = 2.0) -> float:
    """Calls per second of ``fn`` (after a warm-up call)."""
    fn()
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        fn()
        n += 1
    return n / (time.perf_counter() - t0)


def bench_recipe(rid: str, size: int | None, batch: int, horizon: int) -> dict[str, Any]:
    from minari.storage import get_dataset_path

    import diffagents.data as data

    t0 = time.perf_counter()
    ds = data.make_dataset(rid, size=size)
    wall = time.perf_counter() - t0
    meta = ds.storage.metadata
    lo, hi = data.reference_scores(ds) or (np.nan, np.nan)
    ret = float(meta.get("behaviour_return_mean", np.nan))
    row: dict[str, Any] = {
        "id": ds.spec.dataset_id, "episodes": ds.total_episodes, "steps": ds.total_steps,
        "generation_s": float(meta.get("diffagents_generation_s", np.nan)), "make_dataset_s": round(wall, 1),
        "disk_mb": round(_dir_size_mb(get_dataset_path(ds.spec.dataset_id)), 1),
        "behaviour_return": round(ret, 2), "behaviour_return_std": round(float(meta.get("behaviour_return_std", np.nan)), 2),
        "normalized_score": round(100 * (ret - lo) / (hi - lo), 1), "ref_min": lo, "ref_max": hi,
    }
    gen = torch.Generator().manual_seed(0)
    multi = rid.startswith("mpe-spread")
    t0 = time.perf_counter()
    arrays = data.to_joint_arrays(ds) if multi else data.to_transitions(ds).as_arrays()
    windows = data.to_joint_windows(ds, horizon) if multi else data.to_windows(ds, horizon)
    row["load_s"] = round(time.perf_counter() - t0, 2)
    sampler = data.TensorSampler({k: v for k, v in arrays.items() if isinstance(v, np.ndarray) and len(v) == ds.total_steps})
    wsampler = windows.sampler()
    row["transition_samples_per_s"] = round(batch * _rate(lambda: sampler.sample(batch, gen)))
    row["window_samples_per_s"] = round(batch * _rate(lambda: wsampler.sample(batch, gen)))
    return row


def load_only(dataset_id: str, horizon: int) -> dict[str, Any]:
    """Load time and peak RSS of transitions + windows for one dataset (run in a fresh process)."""
    import diffagents.data as data

    t0 = time.perf_counter()
    table = data.read_episodes(dataset_id, use_cache=False)
    t1 = time.perf_counter()
    del table
    data.read_episodes(dataset_id)  # writes the cache if missing
    t2 = time.perf_counter()
    tr = data.to_transitions(dataset_id)
    t3 = time.perf_counter()
    w = data.to_windows(dataset_id, horizon)
    t4 = time.perf_counter()
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"id": dataset_id, "steps": len(tr), "windows": len(w), "hdf5_read_s": round(t1 - t0, 1),
            "read_and_cache_s": round(t2 - t1, 1), "transitions_cached_s": round(t3 - t2, 1),
            "windows_cached_s": round(t4 - t3, 1), "peak_rss_mb": round(rss_mb)}


def synthetic_maze_dataset(steps: int, episode_len: int = 300) -> str:
    """Write (once) a PointMaze-shaped dataset of ``steps`` random steps for the load test; returns its id."""
    import warnings

    import minari
    from gymnasium import spaces
    from minari.data_collector import EpisodeBuffer
    from minari.storage import get_dataset_path

    dataset_id = f"bench/synthetic-pointmaze-n{steps}-v0"
    if (get_dataset_path(dataset_id) / "data" / "metadata.json").is_file():
        return dataset_id
    rng = np.random.default_rng(0)
    box = lambda n: spaces.Box(-np.inf, np.inf, (n,), np.float64)  # noqa: E731
    obs_space = spaces.Dict({"achieved_goal": box(2), "desired_goal": box(2), "observation": box(4)})
    buffers = []
    for i in range(steps // episode_len):  # one iteration per episode
        t = episode_len
        obs = {"achieved_goal": rng.normal(size=(t + 1, 2)), "desired_goal": rng.normal(size=(t + 1, 2)),
               "observation": rng.normal(size=(t + 1, 4))}
        buffers.append(EpisodeBuffer(id=i, observations=obs, actions=rng.uniform(-1, 1, (t, 2)).astype(np.float32),
                                     rewards=rng.random(t), terminations=np.zeros(t, bool),
                                     truncations=np.arange(t) == t - 1))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        minari.create_dataset_from_buffers(dataset_id, buffers, observation_space=obs_space,
                                           action_space=spaces.Box(-1, 1, (2,), np.float32))
    return dataset_id


def write_markdown(rows: list[dict[str, Any]], load: dict[str, Any] | None, args: argparse.Namespace) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    lines = [
        "# Dataset recipes: generation cost and batching throughput", "",
        f"Command: `OMP_NUM_THREADS=1 nice -n 10 python benchmarks/datasets.py {' '.join(sys.argv[1:])}`  ",
        f"Seed 0, default sizes unless stated; batch {args.batch}, window horizon {args.horizon}.  ",
        f"Hardware: {hardware()}, shared with other jobs (timings swing up to ~3x).  ",
        f"Date: {time.strftime('%Y-%m-%d %H:%M')}", "",
        "| dataset | episodes | steps | generation s | disk MB | behaviour return | normalized | load s "
        "| transitions/s | windows/s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['id']} | {r['episodes']:,} | {r['steps']:,} | {r['generation_s']:.1f} | {r['disk_mb']} "
            f"| {r['behaviour_return']} ± {r['behaviour_return_std']} | {r['normalized_score']} | {r['load_s']} "
            f"| {r['transition_samples_per_s']:,} | {r['window_samples_per_s']:,} |"
        )
    lines += ["", "Normalized = 100 * (behaviour return - ref_min) / (ref_max - ref_min) with the dataset's reference "
              "scores (0 = uniform random, 100 = reference expert; see each recipe module). Samples/s count rows "
              "(transitions) or windows drawn per second on CPU.", ""]
    if load:
        lines += ["## Load test (fresh process)", "",
                  f"`{load['id']}`: {load['steps']:,} steps. Reading + validating from HDF5 (no cache): "
                  f"{load['hdf5_read_s']} s; with the table cache: transitions in {load['transitions_cached_s']} s, "
                  f"{load['windows']:,} windows (H={args.horizon}) in {load['windows_cached_s']} s; peak RSS "
                  f"{load['peak_rss_mb']} MB.", ""]
    (RESULTS / f"{args.out}.md").write_text("\n".join(lines))
    (RESULTS / f"{args.out}.json").write_text(json.dumps({"rows": rows, "load": load}, indent=1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipes", nargs="*", default=DEFAULT_SUITE)
    parser.add_argument("--size", type=int, default=None, help="override every recipe's size (quick checks)")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--horizon", type=int, default=64)
    parser.add_argument("--out", default="datasets", help="results fragment stem (benchmarks/results/OUT.md)")
    parser.add_argument("--no-load-test", action="store_true", help="skip the fresh-process load test")
    parser.add_argument("--load-only", default=None, help="only run the load test on this dataset id")
    parser.add_argument("--load-test", default=None, help="dataset id for the load test (default: largest)")
    parser.add_argument("--synthetic-load-test", type=int, default=None, metavar="STEPS",
                        help="only run the load test on a PointMaze-shaped synthetic dataset of STEPS steps")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.load_only:
        print(json.dumps(load_only(args.load_only, args.horizon)))
        return
    if args.synthetic_load_test:
        t0 = time.perf_counter()
        target = synthetic_maze_dataset(args.synthetic_load_test)
        print(f"wrote {target} in {time.perf_counter() - t0:.0f} s", flush=True)
        out = subprocess.run([sys.executable, __file__, "--load-only", target, "--horizon", str(args.horizon)],
                             capture_output=True, text=True, env=os.environ.copy(), check=True)
        print(out.stdout.strip().splitlines()[-1])
        return
    rows = []
    for rid in args.recipes:
        row = bench_recipe(rid, args.size, args.batch, args.horizon)
        print(json.dumps(row), flush=True)
        rows.append(row)
        write_markdown(rows, None, args)
    if args.no_load_test:
        return
    target = args.load_test or max(rows, key=lambda r: r["steps"])["id"]
    out = subprocess.run([sys.executable, __file__, "--load-only", target, "--horizon", str(args.horizon)],
                         capture_output=True, text=True, env=os.environ.copy(), check=True)
    load = json.loads(out.stdout.strip().splitlines()[-1])
    print(json.dumps(load), flush=True)
    write_markdown(rows, load, args)


if __name__ == "__main__":
    main()
