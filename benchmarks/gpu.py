"""Throughput and latency on any device: eager vs compiled (and, on CUDA, graph-captured) execution.

Issue list: gradient steps/s for DiffusionQL (batch 256), the Diffuser U-Net (batch 64, horizon 32 and 128),
SynthER's denoiser (width 1024, batch 1024) and MADiff; decision latency of each agent at batch 1 and 64.
The same script runs on CPU (``--device cpu``, the default when no GPU is present). ``--compile`` adds the
``torch.compile`` variant (slow to warm up on CPU). CUDA-graph capture of the sampling loop is not implemented
yet, so that column is absent.

    python benchmarks/gpu.py --device cuda --compile
    python benchmarks/gpu.py --quick
"""

from __future__ import annotations

import argparse
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


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--compile", action="store_true")
    p.add_argument("--quick", action="store_true")
    args = p.parse_args()
    torch.set_num_threads(1)
    from diffagents import Diffuser, DiffusionQL
    from diffagents.diffusion import GaussianDiffusion, NoiseSchedule
    from diffagents.nn import ResidualMLPDenoiser, TemporalUNet

    dev, sync = torch.device(args.device), args.device.startswith("cuda")
    n = 3 if args.quick else 30
    root = Path(tempfile.mkdtemp())
    ds = synthetic_dataset("HalfCheetah-v5", 3000, root)
    env = gym.make("HalfCheetah-v5")
    modes = ["eager"] + (["compiled"] if args.compile else [])
    rows: list[dict[str, Any]] = []
    for mode in modes:
        comp = mode == "compiled"
        dql = DiffusionQL(env=env, dataset=ds, seed=0, device=dev, compile=comp)
        rows.append({"what": "DiffusionQL full update (3x256, T=5)", "batch": 256, "mode": mode,
                     "value": steps_per_s(lambda: dql.learn(1, reset_num_timesteps=False), n, sync),
                     "unit": "grad steps/s"})
        for b in (1, 64):
            obs = np.stack([env.observation_space.sample() for _ in range(b)]).astype(np.float32)
            lat = timeit(lambda: dql.predict(obs, deterministic=True), repeats=n, sync=sync)["wall_median"]
            rows.append({"what": "DiffusionQL decision (50 candidates)", "batch": b, "mode": mode,
                         "value": 1e3 * lat, "unit": "ms"})
        for horizon in (32, 128):
            unet = TemporalUNet(23, dim=32, dim_mults=(1, 2, 4, 8)).to(dev)
            if comp:
                unet.compile()
            diff = GaussianDiffusion(NoiseSchedule(num_train_steps=20)).to(dev)
            opt = torch.optim.Adam(unet.parameters(), lr=2e-4)
            x = torch.randn(64, horizon, 23, device=dev)

            def unet_step(unet: Any = unet, diff: Any = diff, opt: Any = opt, x: torch.Tensor = x) -> None:
                loss, _ = diff.loss(unet, x)
                opt.zero_grad()
                loss.backward()
                opt.step()

            rows.append({"what": f"Diffuser U-Net train step (dim 32, (1,2,4,8), H {horizon})", "batch": 64,
                         "mode": mode, "value": steps_per_s(unet_step, max(n // 3, 2), sync),
                         "unit": "grad steps/s"})
        den = ResidualMLPDenoiser(x_dim=40, width=1024, n_blocks=6).to(dev)
        if comp:
            den.compile()
        diff = GaussianDiffusion(NoiseSchedule(num_train_steps=128)).to(dev)
        opt = torch.optim.Adam(den.parameters(), lr=3e-4)
        x = torch.randn(1024, 40, device=dev)

        def synther_step() -> None:
            loss, _ = diff.loss(den, x)
            opt.zero_grad()
            loss.backward()
            opt.step()

        rows.append({"what": "SynthER denoiser train step (width 1024 x 6, transition dim 40)", "batch": 1024,
                     "mode": mode, "value": steps_per_s(synther_step, max(n // 3, 2), sync), "unit": "grad steps/s"})
        diffuser = Diffuser(env=env, dataset=ds, seed=0, device=dev, compile=comp, horizon=32, dim=32,
                            dim_mults=(1, 2, 4, 8), sampler="ddim", sampler_steps=10, n_samples=1)
        for b in (1, 64):
            obs = np.stack([env.observation_space.sample() for _ in range(b)]).astype(np.float32)
            lat = timeit(lambda: diffuser.predict(obs, deterministic=True), repeats=max(n // 3, 2), sync=sync)
            rows.append({"what": "Diffuser plan (H 32, DDIM 10, value-guided, 1 plan)", "batch": b, "mode": mode,
                         "value": 1e3 * lat["wall_median"], "unit": "ms"})
    for r in rows:
        print(r, flush=True)
    md = ["# Device benchmark (eager / compiled)\n",
          f"Command: `python benchmarks/gpu.py --device {args.device}{' --compile' if args.compile else ''}"
          f"{' --quick' if args.quick else ''}`; {hardware()}; {time.strftime('%Y-%m-%d')}.\n",
          "| measurement | batch | mode | value | unit |", "|---|---:|---|---:|---|"]
    md += [f"| {r['what']} | {r['batch']} | {r['mode']} | {r['value']:.2f} | {r['unit']} |" for r in rows]
    write(f"gpu_{dev.type}" + ("_quick" if args.quick else ""), {"rows": rows, "hardware": hardware()},
          "\n".join(md) + "\n")


if __name__ == "__main__":
    main()
