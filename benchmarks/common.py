"""Shared helpers for the benchmark scripts: timing with wall and CPU time, hardware string, small datasets."""

from __future__ import annotations

import json
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from diffagents.sysinfo import hardware

RESULTS = Path(__file__).parent / "results"
__all__ = ["RESULTS", "hardware", "synthetic_dataset", "timeit", "write"]


def timeit(fn: Callable[[], Any], *, repeats: int = 20, warmup: int = 3, sync: bool = False) -> dict[str, float]:
    """Median / min wall and CPU seconds of ``fn`` over ``repeats`` calls."""
    for _ in range(warmup):
        fn()
    walls, cpus = [], []
    for _ in range(repeats):
        if sync:
            torch.cuda.synchronize()
        w0, c0 = time.perf_counter(), time.process_time()
        fn()
        if sync:
            torch.cuda.synchronize()
        walls.append(time.perf_counter() - w0)
        cpus.append(time.process_time() - c0)
    return {"wall_median": statistics.median(walls), "wall_min": min(walls), "cpu_median": statistics.median(cpus)}


def write(name: str, payload: dict[str, Any], markdown: str) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(payload, indent=1))
    (RESULTS / f"{name}.md").write_text(markdown)


def synthetic_dataset(env_id: str, steps: int, root: Path, seed: int = 0) -> Any:
    """A Minari dataset of ``steps`` uniform-random steps of ``env_id`` (for speed measurements only)."""
    import gymnasium as gym
    import minari
    from minari.data_collector import EpisodeBuffer

    os.environ["MINARI_DATASETS_PATH"] = str(root)
    dataset_id = f"bench/{env_id.lower().replace('-', '')}/random-v0"
    try:
        return minari.load_dataset(dataset_id)
    except FileNotFoundError:
        pass
    env = gym.make(env_id)
    env.action_space.seed(seed)
    buffers, total, ep = [], 0, 0
    while total < steps:
        obs, _ = env.reset(seed=seed + ep)
        o, a, r, te, tr = [obs], [], [], [], []
        while True:
            act = env.action_space.sample()
            obs, rew, term, trunc, _ = env.step(act)
            o.append(obs)
            a.append(act)
            r.append(rew)
            te.append(term)
            tr.append(trunc or total + len(a) >= steps)
            if te[-1] or tr[-1]:
                break
        buffers.append(EpisodeBuffer(id=ep, observations=np.asarray(o), actions=np.asarray(a),
                                     rewards=np.asarray(r), terminations=np.asarray(te), truncations=np.asarray(tr)))
        total += len(a)
        ep += 1
    return minari.create_dataset_from_buffers(dataset_id, buffers, env=env_id, algorithm_name="random")
