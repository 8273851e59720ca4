"""SynthER as a world model: one-step error of ``SynthER.as_env`` and a short SB3 SAC run inside it.

``SynthER.as_env(dataset)`` (:class:`diffagents.agents.synthesis.synther_env.SynthEREnv`) steps by sampling ``(r, s', d)``
given ``(s, a)`` with the ``(s, a)`` entries inpainted. This script takes the zoo's generator of a MuJoCo
dataset (``synther-<env>-<dataset>``) and reports:

1. **one-step error**: for ``--n`` real transitions of the dataset, ``sample_given(s, a)`` vs the real ``(r, s')``
   (reward absolute error, standardised next-state MSE = per-dimension MSE / data variance, terminal agreement),
   next to a persistence baseline (``s' = s``, ``r`` = the data's mean reward);
2. **SAC in imagination**: SB3 SAC (defaults) trained ``--sac-steps`` env steps inside the generator env, then
   evaluated for ``--episodes`` deterministic episodes in the imagined env and in the real simulator (normalized
   with the dataset's reference scores), next to a uniform-random policy in the real simulator.

    OMP_NUM_THREADS=1 python benchmarks/synther_world_model.py --env hopper --sac-steps 5000
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchmarks.common import hardware, write  # noqa: E402
from diffagents.agents.synthesis.synther_fidelity import fidelity_errors  # noqa: E402
from diffagents.data.safe_env import make_env_from_dataset  # noqa: E402


class UniformRandom:
    """The uniform-random reference policy with the ``predict`` signature ``evaluate_agent`` calls."""

    def __init__(self, space: Any, seed: int) -> None:
        self.space = space
        self.space.seed(seed)

    def predict(self, obs: Any, state: Any = None, episode_start: Any = None, deterministic: bool = True
                ) -> tuple[np.ndarray, Any]:
        return np.stack([self.space.sample() for _ in range(len(obs))]), state


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--env", choices=["hopper", "halfcheetah"], default="hopper")
    p.add_argument("--dataset", default="medium-replay")
    p.add_argument("--n", type=int, default=2000, help="real transitions for the one-step error")
    p.add_argument("--sac-steps", type=int, default=5000)
    p.add_argument("--max-episode-steps", type=int, default=1000, help="truncation of imagined episodes")
    p.add_argument("--episodes", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="results stem (default synther_world_model_<env>)")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    from stable_baselines3 import SAC

    from diffagents import zoo
    from diffagents.data import make_dataset, reference_scores, to_transitions
    from diffagents.evaluation import evaluate_agent

    zoo_id = f"synther-{args.env}-{args.dataset}"
    gen = zoo.load(zoo_id, device="cpu")
    ds = make_dataset(f"{args.env}/{args.dataset}-v0")
    ref = reference_scores(ds)
    tr = to_transitions(ds)
    rng = np.random.default_rng(args.seed)
    pick = rng.choice(len(tr), size=min(args.n, len(tr)), replace=False)
    real = {k: np.asarray(getattr(tr, k))[pick] for k in ("observations", "actions", "rewards", "next_observations",
                                                           "terminations")}
    truth = {"rewards": real["rewards"].astype(np.float64), "next_observations": real["next_observations"],
             "terminations": real["terminations"].astype(bool)}
    var = np.asarray(tr.next_observations, np.float64).var(axis=0)
    t0 = time.perf_counter()
    pred = gen.sample_given(real["observations"], real["actions"], seed=args.seed)
    one_step_s = time.perf_counter() - t0
    persistence = {"rewards": np.full(len(pick), float(np.mean(tr.rewards))),
                   "next_observations": real["observations"], "terminations": np.zeros(len(pick), bool)}
    rows = {"SynthER sample_given(s, a)": fidelity_errors(pred, truth, var),
            "persistence (s' = s, r = mean)": fidelity_errors(persistence, truth, var)}

    img = gen.as_env(ds, max_episode_steps=args.max_episode_steps)
    real_env = make_env_from_dataset(ds)
    model = SAC("MlpPolicy", img, seed=args.seed, device="cpu", learning_starts=min(1000, args.sac_steps // 2))
    t0 = time.perf_counter()
    model.learn(args.sac_steps)
    sac_s = time.perf_counter() - t0
    imagined = evaluate_agent(model, img, args.episodes, seed=10_000).returns
    sac_real = evaluate_agent(model, real_env, args.episodes, seed=10_000, ref_scores=ref)
    rand = evaluate_agent(UniformRandom(real_env.action_space, args.seed), real_env, args.episodes, seed=10_000,
                          ref_scores=ref)
    in_real, random = sac_real.returns, rand.returns
    norm_real, norm_random = (np.mean(r.normalized) if r.normalized is not None else np.nan for r in (sac_real, rand))

    cols = ["reward_abs_mean", "reward_abs_median", "next_std_mse_mean", "next_std_mse_median", "terminal_agreement"]
    command = "OMP_NUM_THREADS=1 python benchmarks/synther_world_model.py " + " ".join(
        argv if argv is not None else sys.argv[1:])
    card = zoo.card(zoo_id)
    lines = [f"# SynthER world model (`as_env`): {ds.spec.dataset_id}", "", f"Command: `{command}`  ",
             f"Hardware: {hardware()}; shared with other jobs.  ",
             f"Generator: zoo `{zoo_id}` ({card['gradient_steps']} steps, `{card['hyperparameters']}`).", "",
             f"## One-step error on {len(pick)} real transitions ({one_step_s:.1f} s for the batch)", "",
             "| model | " + " | ".join(cols) + " |", "|---|" + "---:|" * len(cols)]
    lines += [f"| {name} | " + " | ".join(f"{r[c]:.4g}" for c in cols) + " |" for name, r in rows.items()]
    lines += ["", f"## SB3 SAC trained {args.sac_steps} steps inside the generator env ({sac_s:.0f} s)", "",
              "| policy | env | return (mean ± std) | normalized |", "|---|---|---:|---:|",
              f"| SAC (imagined) | SynthEREnv | {imagined.mean():.1f} ± {imagined.std():.1f} | |",
              f"| SAC (imagined) | {real_env.spec.id if real_env.spec else 'real'} | {in_real.mean():.1f} ± "
              f"{in_real.std():.1f} | {norm_real:.1f} |",
              f"| uniform random | {real_env.spec.id if real_env.spec else 'real'} | {random.mean():.1f} ± "
              f"{random.std():.1f} | {norm_random:.1f} |", "",
              f"{args.episodes} deterministic episodes each (seeds 10000..); imagined episodes truncated at "
              f"{args.max_episode_steps} steps or ended by the generated terminal flag."]
    payload = {"args": vars(args), "zoo_id": zoo_id, "one_step": rows, "one_step_s": one_step_s, "sac_s": sac_s,
               "imagined": imagined.tolist(), "real": in_real.tolist(), "random": random.tolist(),
               "hardware": hardware(), "command": command}
    write(args.out or f"synther_world_model_{args.env}", payload, "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
