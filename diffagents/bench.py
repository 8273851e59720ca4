"""Training throughput and decision latency of the installed agents, measured in-process.

Used by ``diffagents bench`` (the ``benchmarks/`` folder is not installed with the package) and by
``benchmarks/agent_speed.py``. For each agent: gradient steps/s of its full ``learn`` update (critic, actor, EMA,
...) at its batch size, and the median wall time of ``predict(obs, deterministic=True)`` at batch 1 (candidate
selection and planning included). The data is a small Minari dataset of uniform-random steps of a Gymnasium env
(:func:`synthetic_dataset`), used only for shapes and normalisers.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np


@dataclass
class SpeedResult:
    """One agent's measurements (``train_steps_per_s`` is None when only acting was timed)."""

    agent: str
    batch: int | None
    train_steps_per_s: float | None
    latency_ms: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


BENCH_KINDS = ("offline", "online", "distilled", "multiagent", "generator")  # every concrete kind


def default_agents() -> list[str]:
    """Every registered concrete agent (kinds :data:`BENCH_KINDS`), from the registry."""
    from diffagents.core.registry import agent_infos

    return [i.name for i in agent_infos(lambda i: i.kind in BENCH_KINDS)]


def timeit(fn: Callable[[], Any], *, repeats: int = 20, warmup: int = 3, sync: bool = False) -> dict[str, float]:
    """Median / min wall and median CPU seconds of ``fn`` over ``repeats`` calls (CUDA-synchronised if ``sync``)."""
    import torch

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


def synthetic_dataset(env_id: str, steps: int, root: str | Path, seed: int = 0) -> Any:
    """A Minari dataset of ``steps`` uniform-random steps of ``env_id`` under ``root`` (for speed measurements only).

    Sets ``MINARI_DATASETS_PATH`` to ``root``; a dataset already there is reused.
    """
    import gymnasium as gym
    import minari

    from diffagents.data.recipes.base import EpisodeRecorder, rollout_gym
    from diffagents.data.recipes.pendulum import uniform_policy

    os.environ["MINARI_DATASETS_PATH"] = str(root)
    dataset_id = f"bench/{env_id.lower().replace('-', '')}/random-v0"
    try:
        return minari.load_dataset(dataset_id)
    except FileNotFoundError:
        pass
    env = gym.make(env_id)
    rec = EpisodeRecorder(steps)
    rollout_gym(env, uniform_policy(env.action_space, np.random.default_rng(seed)), rec, seed)
    buffers, total = rec.buffers, rec.steps
    with warnings.catch_warnings():  # minari asks for author / code permalink metadata
        warnings.simplefilter("ignore", UserWarning)
        return minari.create_dataset_from_buffers(dataset_id, buffers, env=env_id, algorithm_name="random",
                                                  description=f"{total} uniform-random steps of {env_id}")


def sizes(cls: Any, quick: bool) -> dict[str, Any]:
    """The hyperparameters an agent is benchmarked at: ``cls.tiny_config()`` with ``quick``, else
    ``cls.bench_config()`` (paper defaults for the policies, CPU budgets of docs/compute-budget.md Sec. 6-7 for the
    U-Net agents, whose paper sizes take seconds per step on one CPU thread)."""
    return dict(cls.tiny_config() if quick else cls.bench_config())


def build_agent(name: str, env: Any, dataset: Any, *, device: str = "cpu", seed: int = 0, quick: bool = False,
                **overrides: Any) -> Any:
    """Agent ``name`` (case-insensitive registry name) at :func:`sizes` updated with ``overrides``.

    A distilled agent is distilled (one step) from its config's default teacher; an online agent gets its replay
    buffer filled with ``batch_size`` random env steps so that its ``train`` can be timed; a generator is fitted on
    ``dataset``; a multi-agent agent trains on a small seeded MPE simple_spread dataset (its own kind of data).
    """
    from diffagents.core.registry import get_agent_class, get_agent_info

    info = get_agent_info(name)
    cls: Any = info.cls
    kw = {**sizes(cls, quick), **overrides}
    if info.kind == "distilled":
        from diffagents.agents.policies.distill import distill

        teacher_cls = get_agent_class(cls.config_class().teacher)
        teacher = teacher_cls(env=env, dataset=dataset, seed=seed, device=device, **sizes(teacher_cls, quick))
        return distill(teacher, steps=1, seed=seed, **kw)
    if info.kind == "generator":
        return cls.from_dataset(dataset, seed=seed, device=device, **kw)
    if info.kind == "multiagent":
        from diffagents.data import make_dataset
        from diffagents.wrappers.pettingzoo import env_fn_from_dataset

        team = make_dataset("diffagents/mpe-spread/expert-v0", size=500, seed=seed)
        return cls(env_fn_from_dataset(team), team, seed=seed, device=device, **kw)
    if info.kind == "online":
        kw.setdefault("batch_size", 256)
        agent = cls(env=env, seed=seed, device=device, **{"learning_starts": kw["batch_size"], **kw})
        agent.learn(kw["batch_size"] + 1)
        return agent
    return cls(env=env, dataset=dataset, seed=seed, device=device, **kw)


def train_rate(agent: Any, steps: int, warmup: int = 3, sync: bool = False) -> float:
    """Gradient steps per second of ``agent``'s full update over ``steps`` steps (after ``warmup`` steps)."""
    import torch

    kind = agent.agent_kind

    def run(n: int) -> None:
        if kind == "online":  # an SB3 OffPolicyAlgorithm: its train() on the filled buffer
            agent.train(gradient_steps=n, batch_size=agent.batch_size)
        elif kind == "generator":  # a fresh fit of n steps (the online buffers' refit)
            agent.fit(steps=n)
        else:
            agent.learn(n, reset_num_timesteps=False)

    run(warmup)
    if sync:
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    run(steps)
    if sync:
        torch.cuda.synchronize()
    return steps / (time.perf_counter() - t0)


def decision_latency(agent: Any, obs: Any, repeats: int = 15, sync: bool = False) -> float:
    """Median seconds of ``agent.predict(obs, deterministic=True)`` for one observation (a generator: of drawing one
    transition; a multi-agent agent: of one joint step of the team, from its env's first observation)."""
    if agent.agent_kind == "generator":
        return timeit(lambda: agent.sample(1, seed=0), repeats=repeats, warmup=2, sync=sync)["wall_median"]
    if agent.agent_kind == "multiagent":
        team_obs, _ = agent.env.reset(seed=0)
        obs = team_obs
    return timeit(lambda: agent.predict(obs, deterministic=True), repeats=repeats, warmup=2, sync=sync)["wall_median"]


def measure(name: str, env: Any, dataset: Any, *, device: str = "cpu", steps: int = 50, repeats: int = 15,
            seed: int = 0, quick: bool = False, **overrides: Any) -> SpeedResult:
    """Build agent ``name`` (:func:`build_agent`) and time ``steps`` gradient steps and ``repeats`` decisions."""
    agent = build_agent(name, env, dataset, device=device, seed=seed, quick=quick, **overrides)
    sync = str(device).startswith("cuda")
    obs = env.observation_space.sample()
    rate = train_rate(agent, steps, sync=sync) if steps > 0 else None
    lat = decision_latency(agent, obs, repeats, sync=sync)
    batch = getattr(getattr(agent, "config", None), "batch_size", None)
    return SpeedResult(agent=agent.agent_name, batch=batch, train_steps_per_s=rate, latency_ms=1e3 * lat)


def run(names: Sequence[str], *, env_id: str = "HalfCheetah-v5", device: str = "cpu", steps: int = 50,
        repeats: int = 15, dataset_steps: int = 5000, quick: bool = False,
        on_result: Callable[[SpeedResult], None] | None = None) -> dict[str, Any]:
    """:func:`measure` every agent in ``names`` on a random ``env_id`` dataset built in a temporary folder.

    ``MINARI_DATASETS_PATH`` is restored afterwards. ``on_result`` is called after each agent.

    Returns:
        ``hardware``, ``device``, ``threads``, ``env``, ``train_steps``, ``latency_repeats`` and ``rows`` (one
        :meth:`SpeedResult.to_dict` per agent).
    """
    import gymnasium as gym
    import torch

    from diffagents.sysinfo import hardware

    env = gym.make(env_id)
    rows = []
    old = os.environ.get("MINARI_DATASETS_PATH")
    try:
        with tempfile.TemporaryDirectory(prefix="diffagents_bench_") as root:
            ds = synthetic_dataset(env_id, dataset_steps, root)
            for name in names:
                res = measure(name, env, ds, device=device, steps=steps, repeats=repeats, quick=quick)
                rows.append(res.to_dict())
                if on_result is not None:
                    on_result(res)
    finally:
        if old is None:
            os.environ.pop("MINARI_DATASETS_PATH", None)
        else:
            os.environ["MINARI_DATASETS_PATH"] = old
    return {"hardware": hardware(), "device": device, "threads": torch.get_num_threads(), "env": env_id,
            "sizes": "tiny_config" if quick else "bench_config", "train_steps": steps, "latency_repeats": repeats, "rows": rows}
