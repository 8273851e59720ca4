"""Throughput and latency on any device: eager, compiled and (on CUDA) graph-captured execution.

Issue list: gradient steps/s for DiffusionQL (batch 256), the Diffuser U-Net (batch 64, horizon 32 and 128),
SynthER's denoiser (width 1024, batch 1024) and MADiff (mpe2 simple_spread N=3, ``CPU_HYPERPARAMETERS``);
decision latency of DiffusionQL and Diffuser at batch 1 and 64 and of MADiff per joint step (one env).
The same script runs on CPU (``--device cpu``, the default when no GPU is present). ``--compile`` adds the
``torch.compile`` variant (slow to warm up on CPU). On CUDA the "graphed" mode times the decisions of agents
built with ``cuda_graph=True`` (act-time sampling replayed from a captured CUDA graph, see
:mod:`diffagents.cuda_graph`); its note column counts captures, replays and eager fallbacks (e.g. a capture
that failed). Training steps are not graphed.

    python benchmarks/gpu.py --device cuda --compile
    python benchmarks/gpu.py --quick
"""

from __future__ import annotations

import argparse
import functools
import tempfile
import time
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from common import hardware, synthetic_dataset, timeit, write


def steps_per_s(fn: Any, n: int, sync: bool) -> float:
    fn()
    if sync:
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    if sync:
        torch.cuda.synchronize()
    return n / (time.perf_counter() - t0)


def graph_note(agent: Any) -> str:
    """``captures/replays/eager`` of an agent's CUDA graphs ("" when it used none)."""
    calls = getattr(agent, "_graphed_calls", {})
    return "; ".join(f"{name}: {c.counts['captures']} captures, {c.counts['replays']} replays, "
                     f"{c.counts['eager']} eager" for name, c in calls.items())


def row(what: str, batch: int, mode: str, value: float, unit: str, note: str = "") -> dict[str, Any]:
    return {"what": what, "batch": batch, "mode": mode, "value": value, "unit": unit, "note": note}


def diffusion_ql_rows(env: Any, ds: Any, dev: torch.device, mode: str, n: int, sync: bool) -> list[dict[str, Any]]:
    from diffagents import DiffusionQL

    dql = DiffusionQL(env=env, dataset=ds, seed=0, device=dev, compile=mode == "compiled",
                      cuda_graph=mode == "graphed")
    rows = []
    if mode != "graphed":
        rows.append(row("DiffusionQL full update (3x256, T=5)", 256, mode,
                        steps_per_s(lambda: dql.learn(1, reset_num_timesteps=False), n, sync), "grad steps/s"))
    for b in (1, 64):
        obs = np.stack([env.observation_space.sample() for _ in range(b)]).astype(np.float32)
        lat = timeit(lambda: dql.predict(obs, deterministic=True), repeats=n, sync=sync)["wall_median"]
        rows.append(row("DiffusionQL decision (50 candidates)", b, mode, 1e3 * lat, "ms", graph_note(dql)))
    return rows


def network_rows(dev: torch.device, mode: str, n: int, sync: bool) -> list[dict[str, Any]]:
    """Train steps of the Diffuser U-Net and of SynthER's residual MLP denoiser."""
    from diffagents.diffusion import GaussianDiffusion, NoiseSchedule
    from diffagents.nn import ResidualMLPDenoiser, TemporalUNet

    def train_step(net: Any, diff: Any, opt: Any, x: torch.Tensor) -> None:
        loss, _ = diff.loss(net, x)
        opt.zero_grad()
        loss.backward()
        opt.step()

    rows = []
    nets = [(f"Diffuser U-Net train step (dim 32, (1,2,4,8), H {h})", TemporalUNet(23, dim=32, dim_mults=(1, 2, 4, 8)),
             20, (64, h, 23)) for h in (32, 128)]
    nets.append(("SynthER denoiser train step (width 1024 x 6, transition dim 40)",
                 ResidualMLPDenoiser(x_dim=40, width=1024, n_blocks=6), 128, (1024, 40)))
    for what, net, levels, shape in nets:
        net = net.to(dev)
        if mode == "compiled":
            net.compile()
        diff = GaussianDiffusion(NoiseSchedule(num_train_steps=levels)).to(dev)
        step = functools.partial(train_step, net, diff, torch.optim.Adam(net.parameters(), lr=2e-4),
                                 torch.randn(*shape, device=dev))
        rows.append(row(what, shape[0], mode, steps_per_s(step, max(n // 3, 2), sync), "grad steps/s"))
    return rows


def diffuser_rows(env: Any, ds: Any, dev: torch.device, mode: str, n: int, sync: bool) -> list[dict[str, Any]]:
    from diffagents import Diffuser

    diffuser = Diffuser(env=env, dataset=ds, seed=0, device=dev, compile=mode == "compiled",
                        cuda_graph=mode == "graphed", horizon=32, dim=32, dim_mults=(1, 2, 4, 8), sampler="ddim",
                        sampler_steps=10, n_samples=1)
    rows = []
    for b in (1, 64):
        obs = np.stack([env.observation_space.sample() for _ in range(b)]).astype(np.float32)
        lat = timeit(lambda: diffuser.predict(obs, deterministic=True), repeats=max(n // 3, 2), sync=sync)
        rows.append(row("Diffuser plan (H 32, DDIM 10, value-guided, 1 plan)", b, mode, 1e3 * lat["wall_median"],
                        "ms", graph_note(diffuser)))
    return rows


def madiff_rows(dev: torch.device, mode: str, n: int, sync: bool) -> list[dict[str, Any]]:
    """MADiff-C on mpe2 simple_spread (N=3) with a 250-step expert dataset and ``CPU_HYPERPARAMETERS``."""
    from mpe2 import simple_spread_v3

    from diffagents.agents.multiagent.madiff import CPU_HYPERPARAMETERS, MADiff
    from diffagents.data import make_dataset

    env = functools.partial(simple_spread_v3.parallel_env, N=3, max_cycles=25, continuous_actions=True)
    ds = make_dataset("diffagents/mpe-spread/expert-v0", size=250)
    agent = MADiff(env, ds, seed=0, device=dev, cuda_graph=mode == "graphed", **CPU_HYPERPARAMETERS)
    if mode == "compiled":
        for module in (agent.planner, agent.inv_dyn, agent.ema.model):
            module.compile()
    c = agent.config
    rows = []
    if mode != "graphed":
        rows.append(row(f"MADiff train step (N 3, dim {c.dim}, {c.dim_mults}, window {c.window})", c.batch_size,
                        mode, steps_per_s(lambda: agent.learn(1, log_interval=0, reset_num_timesteps=False),
                                          max(n // 3, 2), sync), "grad steps/s"))
    obs, _ = env().reset(seed=0)
    lat = timeit(lambda: agent.predict(obs, deterministic=True), repeats=max(n // 3, 2), sync=sync)["wall_median"]
    rows.append(row(f"MADiff decision per joint step (N 3, DDIM {c.sampler_steps}, CFG)", 1, mode, 1e3 * lat, "ms",
                    graph_note(agent)))
    return rows


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--compile", action="store_true")
    p.add_argument("--quick", action="store_true")
    args = p.parse_args()
    torch.set_num_threads(1)
    dev, sync = torch.device(args.device), args.device.startswith("cuda")
    n = 3 if args.quick else 30
    ds = synthetic_dataset("HalfCheetah-v5", 3000, Path(tempfile.mkdtemp()))  # also points Minari at that folder
    env = gym.make("HalfCheetah-v5")
    modes = ["eager"] + (["compiled"] if args.compile else []) + (["graphed"] if dev.type == "cuda" else [])
    rows: list[dict[str, Any]] = []
    for mode in modes:
        rows += diffusion_ql_rows(env, ds, dev, mode, n, sync)
        if mode != "graphed":
            rows += network_rows(dev, mode, n, sync)
        rows += diffuser_rows(env, ds, dev, mode, n, sync)
        rows += madiff_rows(dev, mode, n, sync)
        for r in rows:
            if r["mode"] == mode:
                print(r, flush=True)
    md = [f"# Device benchmark ({' / '.join(modes)})\n",
          f"Command: `python benchmarks/gpu.py --device {args.device}{' --compile' if args.compile else ''}"
          f"{' --quick' if args.quick else ''}`; {hardware()}; {time.strftime('%Y-%m-%d')}.\n",
          "| measurement | batch | mode | value | unit | note |", "|---|---:|---|---:|---|---|"]
    md += [f"| {r['what']} | {r['batch']} | {r['mode']} | {r['value']:.2f} | {r['unit']} | {r['note']} |"
           for r in rows]
    write(f"gpu_{dev.type}" + ("_quick" if args.quick else ""), {"rows": rows, "hardware": hardware()},
          "\n".join(md) + "\n")


if __name__ == "__main__":
    main()
