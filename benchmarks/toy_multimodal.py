"""Mode coverage on ``diffagents/toy/multimodal-v0``: diffusion policies keep both routes, a Gaussian collapses.

Trains, on the same data and number of gradient steps: Diffusion-QL with eta = 0 (pure diffusion behaviour
cloning, one candidate), IDQL, and a unimodal Gaussian BC policy (MLP mean + state-independent log-std,
maximum likelihood). Reports (1) the modes of 1000 actions sampled at the start state (``mode_of``: left /
right / none) and (2) over 100 stochastic episodes the success rate and the route split (``route_of``), and
plots the sampled start-state actions (benchmarks/results/toy_multimodal.png).

    python benchmarks/toy_multimodal.py --steps 3000 --seed 0
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np
import torch
from common import RESULTS, hardware, write
from torch import nn


class GaussianBC(nn.Module):
    """Unimodal Gaussian policy ``N(mu(s), diag(sigma^2))`` fitted by maximum likelihood."""

    def __init__(self, obs_dim: int, act_dim: int) -> None:
        super().__init__()
        self.mu = nn.Sequential(nn.Linear(obs_dim, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(),
                                nn.Linear(256, act_dim))
        self.log_std = nn.Parameter(torch.zeros(act_dim))

    def nll(self, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        return -torch.distributions.Normal(self.mu(obs), self.log_std.exp()).log_prob(act).sum(-1).mean()

    def sample(self, obs: torch.Tensor) -> torch.Tensor:
        return torch.distributions.Normal(self.mu(obs), self.log_std.exp()).sample().clamp(-1, 1)


def rollouts(act_fn: Any, episodes: int, seed: int) -> dict[str, float]:
    import gymnasium as gym

    from diffagents.data.envs.toy_multimodal import route_of

    env = gym.make("diffagents/ToyMultimodal-v0")
    routes, successes = [], 0
    for ep in range(episodes):
        obs, _ = env.reset(seed=seed + ep)
        positions, done, info = [obs], False, {}
        while not done:
            obs, _, term, trunc, info = env.step(act_fn(obs))
            positions.append(obs)
            done = term or trunc
        successes += int(info.get("success", False))
        routes.append(route_of(np.asarray(positions)))
    r = np.asarray(routes)
    return {"success": successes / episodes, "left": float(np.mean(r == -1)), "right": float(np.mean(r == 1)),
            "none": float(np.mean(r == 0))}


def modes(actions: np.ndarray) -> dict[str, float]:
    from diffagents.data.envs.toy_multimodal import mode_of

    m = mode_of(actions)
    return {"left": float(np.mean(m == -1)), "right": float(np.mean(m == 1)), "none": float(np.mean(m == 0))}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--episodes", type=int, default=100)
    args = p.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    import gymnasium as gym

    from diffagents import IDQL, DiffusionQL
    from diffagents.data import make_dataset, to_transitions
    from diffagents.data.envs.toy_multimodal import START

    ds = make_dataset("diffagents/toy/multimodal-v0")
    env = gym.make("diffagents/ToyMultimodal-v0")
    tr = to_transitions(ds)
    start = np.tile(START.astype(np.float32), (1000, 1))
    near = np.linalg.norm(tr.observations - START, axis=1) < 0.1
    results: dict[str, Any] = {"data": {"start_modes": modes(tr.actions[near])}}
    samples = {"data": tr.actions[near][:1000]}

    agents = {
        "Diffusion BC (DiffusionQL, eta=0)": DiffusionQL(env=env, dataset=ds, seed=args.seed, eta=0.0, n_candidates=1),
        "IDQL": IDQL(env=env, dataset=ds, seed=args.seed),
    }
    for name, agent in agents.items():
        t0 = time.perf_counter()
        agent.learn(args.steps)
        acts, _ = agent.predict(start, deterministic=False)
        samples[name] = acts
        results[name] = {"start_modes": modes(acts), "train_s": time.perf_counter() - t0,
                         "rollouts": rollouts(lambda o, a=agent: a.predict(o, deterministic=False)[0],
                                              args.episodes, 1000 + args.seed),
                         "deterministic": rollouts(lambda o, a=agent: a.predict(o, deterministic=True)[0],
                                                   args.episodes, 1000 + args.seed)}
        print(name, results[name], flush=True)

    gauss = GaussianBC(2, 2)
    opt = torch.optim.Adam(gauss.parameters(), lr=3e-4)
    obs_t, act_t = torch.as_tensor(tr.observations), torch.as_tensor(tr.actions)
    t0 = time.perf_counter()
    for _ in range(args.steps):
        idx = torch.randint(0, len(obs_t), (256,))
        loss = gauss.nll(obs_t[idx], act_t[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        acts = gauss.sample(torch.as_tensor(start)).numpy()
    samples["Gaussian BC"] = acts
    with torch.no_grad():
        results["Gaussian BC"] = {
            "start_modes": modes(acts), "train_s": time.perf_counter() - t0,
            "rollouts": rollouts(lambda o: gauss.sample(torch.as_tensor(o)[None])[0].numpy(), args.episodes,
                                 1000 + args.seed),
            "deterministic": rollouts(lambda o: gauss.mu(torch.as_tensor(o)[None])[0].clamp(-1, 1).numpy(),
                                      args.episodes, 1000 + args.seed)}
    print("Gaussian BC", results["Gaussian BC"], flush=True)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(samples), figsize=(4 * len(samples), 4), sharex=True, sharey=True)
    for ax, (name, a) in zip(axes, samples.items()):
        ax.scatter(a[:, 0], a[:, 1], s=4, alpha=0.4)
        ax.set_title(name, fontsize=9)
        ax.set_xlim(-1.1, 1.1)
        ax.set_ylim(-1.1, 1.1)
        ax.axvline(0, color="grey", lw=0.5)
        ax.set_xlabel("action dx")
    axes[0].set_ylabel("action dy")
    fig.suptitle(f"Actions sampled at the start state (toy/multimodal-v0, {args.steps} gradient steps)")
    fig.tight_layout()
    fig.savefig(RESULTS / "toy_multimodal.png", dpi=90)

    md = ["# Mode coverage on the multimodal toy task\n",
          f"Command: `python benchmarks/toy_multimodal.py --steps {args.steps} --seed {args.seed}`; {hardware()}; "
          f"{time.strftime('%Y-%m-%d')}. Start-state modes: 1000 sampled actions labelled by `mode_of`; rollouts: "
          f"{args.episodes} episodes labelled by `route_of` (stochastic sampling, and deterministic: fixed "
          "initial noise for diffusion policies, the mean action for the Gaussian).\n",
          "| policy | start actions left / right / none | stochastic episodes: success | routes left / right / "
          "none | deterministic episodes: success | routes left / right / none |",
          "|---|---|---:|---|---:|---|"]
    for name, r in results.items():
        m = r["start_modes"]
        ro = r.get("rollouts")
        roll = (f"{ro['success']:.2f} | {ro['left']:.2f} / {ro['right']:.2f} / {ro['none']:.2f}" if ro
                else "– | –")
        de = r.get("deterministic")
        roll += (f" | {de['success']:.2f} | {de['left']:.2f} / {de['right']:.2f} / {de['none']:.2f}" if de
                 else " | – | –")
        md.append(f"| {name} | {m['left']:.2f} / {m['right']:.2f} / {m['none']:.2f} | {roll} |")
    md.append("\n![sampled actions](results/toy_multimodal.png)\n")
    write("toy_multimodal", {"results": results, "hardware": hardware(), "steps": args.steps}, "\n".join(md) + "\n")


if __name__ == "__main__":
    main()
