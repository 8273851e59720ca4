"""Sampler overhead and training throughput of the two reference denoisers.

For each network, batch size, sampler and step count, the *overhead ratio* is

    ratio = latency(sample_loop with n steps) / (n * latency(one bare denoiser forward))

where the bare forwards run on the same inputs (the same ``x``, condition and the sampler's own level tensors)
in the same process. Sampler runs and bare-forward runs are interleaved (alternating order) and the reported
ratio is the median over repeats of the paired ratios, which cancels slow drifts in machine load; the
process-time (CPU) ratio and the ratio of 10th percentiles (the least disturbed runs, a load-robust estimate on
a shared, oversubscribed VM) are reported next to it. A ratio of 1 means the sampler adds nothing; the target
on CPU at batch 1 is <= 1.15.

Also measured: training gradient steps/s (``GaussianDiffusion.loss`` + Adam) for the same networks.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/sampler_overhead.py            # full run, writes results/
    python benchmarks/sampler_overhead.py --quick                       # smoke test (fewer repeats)
    python benchmarks/sampler_overhead.py --device cuda                 # adds a CUDA-graph sampling loop

Networks: the Diffusion-QL MLP policy ``MLPDenoiser(x_dim=6, cond_dim=17, hidden=(256, 256, 256))`` and
Diffuser's ``TemporalUNet(transition_dim=23, dim=32, dim_mults=(1, 2, 4, 8))`` over a horizon of 32.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from diffagents.diffusion import (
    DDIMSampler,
    DDPMSampler,
    DiscreteSampler,
    DPMSolverPPSampler,
    GaussianDiffusion,
    NoiseSchedule,
    sample_loop,
)

RESULTS = Path(__file__).resolve().parent / "results"
SAMPLERS: dict[str, Callable[[NoiseSchedule, int], DiscreteSampler]] = {
    "ddpm": lambda s, n: DDPMSampler(s, n),
    "ddim": lambda s, n: DDIMSampler(s, n),
    "dpm++2m": lambda s, n: DPMSolverPPSampler(s, n, order=2),
}


@dataclass
class Net:
    name: str
    module: nn.Module
    x_shape: tuple[int, ...]  # per-sample shape
    cond_dim: int
    train_batch: int


@dataclass
class Row:
    net: str
    batch: int
    sampler: str
    steps: int
    repeats: int
    forward_ms: float  # median bare forward
    loop_ms: float  # median sampling loop
    ratio_wall: float  # median of the paired wall-clock ratios
    ratio_cpu: float  # median of the paired process-time ratios
    ratio_p10: float  # 10th-percentile loop time / 10th-percentile bare time (load-robust)
    cuda_graph_ms: float | None = None


def build_nets() -> list[Net]:
    from diffagents.nn import MLPDenoiser, TemporalUNet

    torch.manual_seed(0)
    return [
        Net("mlp", MLPDenoiser(x_dim=6, cond_dim=17, hidden=(256, 256, 256)), (6,), 17, 256),
        Net("unet", TemporalUNet(transition_dim=23, dim=32, dim_mults=(1, 2, 4, 8)), (32, 23), 0, 64),
    ]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _clock(fn: Callable[[], Any], device: torch.device) -> tuple[float, float]:
    """(wall, cpu) seconds of one call."""
    _sync(device)
    w0, c0 = time.perf_counter(), time.process_time()
    fn()
    _sync(device)
    return time.perf_counter() - w0, time.process_time() - c0


def _p10(values: list[float]) -> float:
    return sorted(values)[len(values) // 10]


def measure_overhead(net: Net, batch: int, sampler_name: str, steps: int, budget_s: float, device: torch.device,
                     warmup: int = 3, min_repeats: int = 5, max_repeats: int = 400) -> Row:
    """Paired timings of one sampling loop and of ``steps`` bare forwards on the same inputs, interleaved.

    The pair's order alternates between repeats; the number of repeats fits ``budget_s`` seconds. One call
    per timing sample keeps samples short, so many of them run undisturbed by other jobs (``ratio_p10``).
    """
    schedule = NoiseSchedule(num_train_steps=100, kind="cosine")
    sampler = SAMPLERS[sampler_name](schedule, steps)
    shape = (batch, *net.x_shape)
    gen = torch.Generator(device=device).manual_seed(0)
    cond = torch.randn(batch, net.cond_dim, device=device) if net.cond_dim else None
    x = torch.randn(shape, device=device)
    model = net.module

    with torch.inference_mode():
        levels = sampler.timestep_tensors(batch, device, x.dtype)  # the tensors the loop itself passes

        def loop() -> None:
            sample_loop(model, sampler, shape, cond=cond, generator=gen, device=device)

        def bare() -> None:
            for level in levels:
                model(x, level, cond)

        for _ in range(warmup):  # warm-up (allocator, caches, lazy init)
            loop()
            bare()
        one = _clock(loop, device)[0] + _clock(bare, device)[0]
        repeats = max(min_repeats, min(max_repeats, int(budget_s / max(one, 1e-9))))
        loop_w: list[float] = []
        loop_c: list[float] = []
        bare_w: list[float] = []
        bare_c: list[float] = []
        for r in range(repeats):
            pair = [(loop, loop_w, loop_c), (bare, bare_w, bare_c)]
            for fn, wall, cpu in (pair if r % 2 == 0 else pair[::-1]):
                w, c = _clock(fn, device)
                wall.append(w)
                cpu.append(c)
    graph_ms = cuda_graph_loop(model, sampler, shape, cond, device) if device.type == "cuda" else None
    ratios_w = [lw / bw for lw, bw in zip(loop_w, bare_w)]
    ratios_c = [lc / bc for lc, bc in zip(loop_c, bare_c) if bc > 0]
    return Row(net.name, batch, sampler_name, steps, repeats, 1e3 * statistics.median(bare_w) / steps,
               1e3 * statistics.median(loop_w), statistics.median(ratios_w),
               statistics.median(ratios_c) if ratios_c else float("nan"), _p10(loop_w) / _p10(bare_w), graph_ms)


def cuda_graph_loop(model: nn.Module, sampler: DiscreteSampler, shape: tuple[int, ...], cond: torch.Tensor | None,
                    device: torch.device, replays: int = 20) -> float:
    """Capture the whole sampling loop (fixed batch, static input noise) in one CUDA graph; ms per replay.

    Uses the default CUDA generator (capture-safe) for the per-step noise.
    """
    static_x = torch.randn(shape, device=device)
    with torch.inference_mode():
        stream = torch.cuda.Stream(device)
        stream.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(stream):
            for _ in range(3):
                sample_loop(model, sampler, shape, cond=cond, x_init=static_x, device=device)
        torch.cuda.current_stream(device).wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            sample_loop(model, sampler, shape, cond=cond, x_init=static_x, device=device)
        graph.replay()
        times = [_clock(graph.replay, device)[0] for _ in range(replays)]
    return 1e3 * statistics.median(times)


def training_throughput(net: Net, n_steps: int, device: torch.device) -> dict[str, float]:
    """Gradient steps per second of ``GaussianDiffusion.loss`` + Adam at the network's training batch."""
    diffusion = GaussianDiffusion(NoiseSchedule(num_train_steps=100, kind="cosine")).to(device)
    model = net.module
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    x0 = torch.randn(net.train_batch, *net.x_shape, device=device)
    cond = torch.randn(net.train_batch, net.cond_dim, device=device) if net.cond_dim else None

    def one_step() -> None:
        loss, _ = diffusion.loss(model, x0, cond)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def chunk_of_steps() -> None:
        for _ in range(chunk):
            one_step()

    for _ in range(3):
        one_step()
    chunk = max(1, n_steps // 5)
    rates_w, rates_c = [], []
    for _ in range(5):
        w, c = _clock(chunk_of_steps, device)
        rates_w.append(chunk / w)
        rates_c.append(chunk / c if c > 0 else float("nan"))
    model.eval()
    return {"batch": net.train_batch, "steps_per_s_wall": statistics.median(rates_w),
            "steps_per_s_cpu": statistics.median(rates_c)}


def _load() -> float | None:
    """1-minute load average (other jobs on a shared machine inflate the spread of the ratios)."""
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def hardware(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)}, torch {torch.__version__}"
    model = platform.processor() or "CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()}-core {model} VM (shared), torch {torch.__version__}, {torch.get_num_threads()} thread(s)"


def markdown(rows: list[Row], train: dict[str, dict[str, float]], meta: dict[str, Any]) -> str:
    graph = any(r.cuda_graph_ms is not None for r in rows)
    lines = [
        "# Sampler overhead",
        "",
        f"- command: `{meta['command']}`",
        f"- hardware: {meta['hardware']}",
        f"- date: {meta['date']}",
        f"- networks: MLP = `{meta['networks']['mlp']}`, U-Net = `{meta['networks']['unet']}`",
        f"- schedule: `{meta['schedule']}`; DPM-Solver++ is order 2; timing under `torch.inference_mode`",
        f"- 1-minute load average before / after: {meta['load_average_1m_before_after']} (2 cores shared with "
        "other jobs)",
        "",
        "ratio = sample_loop latency / (steps x bare denoiser forward latency on the same inputs), median over "
        "interleaved pairs (wall clock, and process time); p10 = 10th-percentile loop / 10th-percentile bare "
        "time, the least disturbed runs. Target <= 1.15 at batch 1 on CPU.",
        "",
        "| net | batch | sampler | steps | pairs | forward ms | loop ms | ratio (wall) | ratio (cpu) | ratio (p10) |"
        + (" CUDA graph loop ms |" if graph else ""),
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|" + ("---:|" if graph else ""),
    ]
    for r in rows:
        line = (f"| {r.net} | {r.batch} | {r.sampler} | {r.steps} | {r.repeats} | {r.forward_ms:.3f} | "
                f"{r.loop_ms:.3f} | {r.ratio_wall:.3f} | {r.ratio_cpu:.3f} | {r.ratio_p10:.3f} |")
        if graph:
            line += f" {r.cuda_graph_ms:.3f} |" if r.cuda_graph_ms is not None else " |"
        lines.append(line)
    lines += ["", "Training (GaussianDiffusion.loss + Adam, median over 5 chunks):", "",
              "| net | batch | steps/s (wall) | steps/s (cpu) |", "|---|---:|---:|---:|"]
    for name, t in train.items():
        lines.append(f"| {name} | {t['batch']} | {t['steps_per_s_wall']:.1f} | {t['steps_per_s_cpu']:.1f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="short time budget and 5/10 steps (smoke test)")
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    parser.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (default 1)")
    parser.add_argument("--budget", type=float, default=None,
                        help="seconds of paired timings per configuration (default 1.5; --quick 0.1)")
    parser.add_argument("--out", type=Path, default=None,
                        help=f"folder for the JSON / markdown results (default {RESULTS}; --quick writes nothing "
                             "unless --out is given)")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: CUDA is not available")
    budget = args.budget if args.budget is not None else (0.1 if args.quick else 1.5)
    warmup = 1 if args.quick else 3
    steps_grid = (5, 10) if args.quick else (5, 10, 20)
    out_dir = args.out if args.out is not None else (None if args.quick else RESULTS)
    nets = build_nets()
    for net in nets:
        net.module.to(device).eval()

    load_before = _load()
    rows: list[Row] = []
    print(f"{'net':5} {'batch':>5} {'sampler':8} {'steps':>5} {'pairs':>5} {'fwd ms':>8} {'loop ms':>9} "
          f"{'wall':>6} {'cpu':>6} {'p10':>6}")
    for net in nets:
        for batch in (1,) if (args.quick and net.name == "unet") else (1, 64):
            for sampler_name in SAMPLERS:
                for steps in steps_grid:
                    row = measure_overhead(net, batch, sampler_name, steps, budget, device, warmup,
                                           min_repeats=2 if args.quick else 5)
                    rows.append(row)
                    extra = f" graph {row.cuda_graph_ms:.3f} ms" if row.cuda_graph_ms is not None else ""
                    print(f"{row.net:5} {row.batch:5d} {row.sampler:8} {row.steps:5d} {row.repeats:5d} "
                          f"{row.forward_ms:8.3f} {row.loop_ms:9.3f} {row.ratio_wall:6.3f} {row.ratio_cpu:6.3f} "
                          f"{row.ratio_p10:6.3f}{extra}", flush=True)
    train = {net.name: training_throughput(net, 20 if args.quick else 100, device) for net in nets}
    for name, t in train.items():
        print(f"train {name}: batch {t['batch']}, {t['steps_per_s_wall']:.1f} steps/s (wall), "
              f"{t['steps_per_s_cpu']:.1f} steps/s (cpu)")

    meta = {
        "command": " ".join(["OMP_NUM_THREADS=1 python benchmarks/sampler_overhead.py", *(argv or sys.argv[1:])]),
        "hardware": hardware(device),
        "date": datetime.date.today().isoformat(),
        "budget_s_per_config": budget,
        "load_average_1m_before_after": [load_before, _load()],
        "device": str(device),
        "threads": torch.get_num_threads(),
        "networks": {"mlp": "diffagents.nn.MLPDenoiser(x_dim=6, cond_dim=17, hidden=(256, 256, 256))",
                     "unet": "diffagents.nn.TemporalUNet(transition_dim=23, dim=32, dim_mults=(1, 2, 4, 8)), "
                             "horizon 32"},
        "schedule": "NoiseSchedule(num_train_steps=100, kind='cosine')",
    }
    result = {"meta": meta, "overhead": [asdict(r) for r in rows], "training": train}
    if out_dir is not None and not args.no_write:
        out_dir.mkdir(parents=True, exist_ok=True)
        suffix = "" if device.type == "cpu" else f"_{device.type}"
        (out_dir / f"sampler_overhead{suffix}.json").write_text(json.dumps(result, indent=2) + "\n")
        (out_dir / f"sampler_overhead{suffix}.md").write_text(markdown(rows, train, meta))
    return result


if __name__ == "__main__":
    main()
