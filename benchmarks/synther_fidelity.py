"""SynthER dynamics fidelity on MuJoCo: are generated (s, a) -> (r, s') pairs consistent with the simulator?

For each synthetic transition ``(s, a, r, s')`` the simulator is put in the state ``s`` and stepped with ``a``;
the true ``(r*, s'*)`` are compared with the generated ones (Lu et al. 2023, Sec. 4 report the same kind of
"dynamics error"); the state rebuild is :mod:`diffagents.agents.synthesis.synther_fidelity`'s.

Rows of the table:

* ``real``: the real transitions themselves (a check of the reconstruction: errors should be ~0);
* ``noise sigma``: real transitions with i.i.d. Gaussian noise of ``sigma`` x the per-dimension data std added
  to s, a, r and s' (a simple augmentation baseline; actions clipped to the action space);
* ``synther``: generated transitions.

Errors: reward absolute error, next-state MSE over dimensions (raw and divided by the per-dimension data
variance, "standardised"), mean and median over transitions, and terminal-flag agreement.

Example (the smoke run recorded in results/synther_fidelity_smoke.md)::

    OMP_NUM_THREADS=1 PYTHONPATH=. python benchmarks/synther_fidelity.py --env halfcheetah --size 20000 \
        --steps 3000 --width 256 --blocks 3 --sample-steps 32 --n 2000 --out synther_fidelity_smoke
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import hardware, write  # noqa: E402
from diffagents.agents.synthesis.synther_fidelity import fidelity_errors as errors  # noqa: E402
from diffagents.agents.synthesis.synther_fidelity import simulator_step as true_step  # noqa: E402

ENVS = {"halfcheetah": "HalfCheetah-v5", "hopper": "Hopper-v5", "walker2d": "Walker2d-v5"}


def noisy(real: dict[str, np.ndarray], sigma: float, std: dict[str, np.ndarray], space: Any,
          rng: np.random.Generator) -> dict[str, np.ndarray]:
    out = {k: v.copy() for k, v in real.items()}
    for key in ("observations", "actions", "rewards", "next_observations"):
        out[key] = out[key] + sigma * std[key] * rng.standard_normal(out[key].shape)
    out["actions"] = np.clip(out["actions"], space.low, space.high)
    return out


def fidelity_rows(tr: Any, synthetic: dict[str, np.ndarray], env_id: str, action_space: Any, n: int,
                  noise: list[float], seed: int) -> dict[str, dict[str, float]]:
    """Errors against the simulator of ``n`` real transitions of ``tr`` (``real``), of the same with Gaussian noise
    of each ``noise`` x data std (``noise sigma``) and of the ``synthetic`` batch (``synther``)."""
    keys = ("observations", "actions", "rewards", "next_observations", "terminations")
    rng = np.random.default_rng(seed)
    pick = rng.choice(len(tr), size=min(n, len(tr)), replace=False)
    real = {k: np.asarray(getattr(tr, k))[pick] for k in keys}
    std = {k: np.asarray(getattr(tr, k), np.float64).std(axis=0) for k in keys[:4]}
    var = np.maximum(std["next_observations"] ** 2, 1e-12)
    batches = {"real": real, **{f"noise {s:g}": noisy(real, s, std, action_space, rng) for s in noise},
               "synther": synthetic}
    return {name: errors(b, true_step(env_id, b["observations"], b["actions"]), var) for name, b in batches.items()}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--env", choices=sorted(ENVS), default="halfcheetah")
    p.add_argument("--dataset", default=None, help="Minari dataset id (default: the local random recipe)")
    p.add_argument("--size", type=int, default=20_000, help="steps of the generated random dataset")
    p.add_argument("--steps", type=int, default=3000, help="generator gradient steps")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--width", type=int, default=256)
    p.add_argument("--blocks", type=int, default=3)
    p.add_argument("--process", choices=["edm", "discrete"], default="edm")
    p.add_argument("--sample-steps", type=int, default=32)
    p.add_argument("--n", type=int, default=2000, help="transitions evaluated per method")
    p.add_argument("--noise", type=float, nargs="+", default=[0.01, 0.1])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--note", default="", help="a label printed at the top of the report (e.g. SMOKE RUN)")
    p.add_argument("--out", default="synther_fidelity")
    args = p.parse_args(argv)

    from diffagents import SynthER
    from diffagents.data import load_dataset, make_dataset, to_transitions

    env_id = ENVS[args.env]
    t0 = time.perf_counter()
    if args.dataset:
        ds, label = load_dataset(args.dataset), args.dataset
    else:
        ds = make_dataset(f"{args.env}/random-v0", size=args.size, seed=args.seed)
        label = f"{ds.spec.dataset_id} (generated here: {args.size} uniform-random steps of {env_id})"
    data_s = time.perf_counter() - t0
    tr = to_transitions(ds)
    gen = SynthER.from_dataset(ds, seed=args.seed, width=args.width, n_blocks=args.blocks, process=args.process,
                               sampler_steps=args.sample_steps, batch_size=args.batch_size, device=args.device)
    gen.fit(steps=args.steps)
    fit_s = gen.fit_log[-1]["seconds"]
    t1 = time.perf_counter()
    syn = gen.sample(args.n, seed=args.seed + 1)
    sample_s = time.perf_counter() - t1

    rows = fidelity_rows(tr, syn, env_id, ds.action_space, args.n, args.noise, args.seed)
    payload = {"env": env_id, "dataset": label, "dataset_steps": int(ds.total_steps), "args": vars(args),
               "generator": gen.config.to_dict(), "fit_seconds": fit_s, "sample_seconds": sample_s,
               "data_seconds": data_s, "fit_log": gen.fit_log, "hardware": hardware(), "results": rows}
    cols = ["reward_abs_mean", "reward_abs_median", "next_mse_mean", "next_mse_median", "next_std_mse_mean",
            "next_std_mse_median", "terminal_agreement"]
    lines = [f"# SynthER dynamics fidelity: {env_id}", "", *([f"**{args.note}**", ""] if args.note else []),
             f"Dataset: {label}, {ds.total_steps} steps. Generator: width {args.width} x {args.blocks} blocks, "
             f"{args.process}, {args.steps} steps (batch {args.batch_size}, {fit_s:.0f} s), {args.sample_steps} "
             f"sampling steps ({args.n} samples in {sample_s:.1f} s). {args.n} transitions per row; root x = 0.",
             f"Hardware: {hardware()}.", "", "| method | " + " | ".join(cols) + " |",
             "|---|" + "---:|" * len(cols)]
    lines += [f"| {name} | " + " | ".join(f"{r[c]:.4g}" for c in cols) + " |" for name, r in rows.items()]
    lines += ["", "Command: `OMP_NUM_THREADS=1 PYTHONPATH=. python benchmarks/synther_fidelity.py "
              + " ".join(argv if argv is not None else sys.argv[1:]) + "`"]
    write(args.out, payload, "\n".join(lines) + "\n")
    print("\n".join(lines))
    return payload


if __name__ == "__main__":
    main()
