"""Distill a trained Diffusion-QL actor into a one-step consistency actor and compare speed and return.

The student (``diffagents.distill``) keeps the teacher's API, normalisers and critic-ranked candidates but needs
one network evaluation per candidate instead of the T-step denoising chain.

    python examples/distill_for_speed.py --steps 20000 --distill-steps 2000
    python examples/distill_for_speed.py --smoke
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from diffagents import DiffusionQL, distill
from diffagents.data import make_dataset, reference_scores
from diffagents.data.safe_env import make_env_from_dataset
from diffagents.evaluation import evaluate_agent


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--dataset", default="diffagents/pendulum/expert-v0")
    p.add_argument("--steps", type=int, default=20_000, help="teacher gradient steps")
    p.add_argument("--distill-steps", type=int, default=2_000)
    p.add_argument("--episodes", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--smoke", action="store_true")
    args = p.parse_args()
    torch.set_num_threads(1)

    ds = make_dataset(args.dataset, size=2_000 if args.smoke else None)
    env = make_env_from_dataset(ds)
    small = dict(hidden=(32, 32), critic_hidden=(32, 32), batch_size=32, n_candidates=4) if args.smoke else \
        dict(n_candidates=10)
    teacher = DiffusionQL(env=env, dataset=ds, seed=args.seed, **small)
    teacher.learn(40 if args.smoke else args.steps, progress_bar=not args.smoke)
    t0 = time.perf_counter()
    student = distill(teacher, steps=20 if args.smoke else args.distill_steps, seed=args.seed)
    print(f"distilled in {time.perf_counter() - t0:.1f} s")

    obs = np.random.default_rng(0).normal(size=(20 if args.smoke else 200, 3)).astype(np.float32)
    lat: dict[str, list[float]] = {"teacher": [], "student": []}
    for o in obs:  # interleaved, batch 1
        for name, agent in (("teacher", teacher), ("student", student)):
            t = time.perf_counter()
            agent.predict(o, deterministic=True)
            lat[name].append(time.perf_counter() - t)
    ref = reference_scores(ds)
    for name, agent, evals in (("teacher", teacher, teacher.config.n_diffusion_steps), ("student", student, 1)):
        res = evaluate_agent(agent, env, n_episodes=1 if args.smoke else args.episodes, seed=123, ref_scores=ref)
        print(f"{name}: {evals} network evaluation(s) per candidate, {1e3 * statistics.median(lat[name]):.2f} ms "
              f"per decision; {res.summary()}")


if __name__ == "__main__":
    main()
