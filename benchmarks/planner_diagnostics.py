"""Where a trained Decision Diffuser falls short: denoising error per noise level and plan error vs the data.

On ``--windows`` training windows of the agent's dataset (its own normaliser, true return-to-go as the
condition): the eps-prediction error at several noise levels, and the error of the planned next state when the
sampler starts from pure noise vs from the true window re-noised to an intermediate level (the current state is
inpainted in both). A planner whose error from noise is far above its error from a low level has not learned the
high-noise levels that lay out the plan. Also the inverse dynamics' error on real (s, s') pairs.

    python benchmarks/planner_diagnostics.py --dataset diffagents/hopper/medium-v0 \\
        --agent /tmp/agents/decisiondiffuser-diffagents-hopper-medium-v0-s0-3000.zip --out results/dd_diag_hopper
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from diffagents.data.safe_env import make_env_from_dataset


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", required=True)
    p.add_argument("--agent", type=Path, required=True, help="a DecisionDiffuser checkpoint")
    p.add_argument("--windows", type=int, default=256)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, required=True, help="writes OUT.json")
    args = p.parse_args()
    torch.set_num_threads(1)
    from diffagents import DecisionDiffuser
    from diffagents.data import make_dataset
    from diffagents.guidance import ClassifierFreeGuidance

    ds = make_dataset(args.dataset)
    agent = DecisionDiffuser.load(args.agent, env=make_env_from_dataset(ds), dataset=ds)
    c = agent.config
    gen = torch.Generator().manual_seed(args.seed)
    batch = agent._sampler.sample(args.windows, generator=gen)
    obs = batch["observations"]  # (B, H, O), normalised
    cond = batch["returns_to_go"][:, :1] / c.returns_scale
    planner = agent.ema.model  # type: ignore[union-attr]
    n_levels = planner.diffusion.schedule.num_train_steps
    out: dict = {"dataset": args.dataset, "agent": str(args.agent), "windows": args.windows,
                 "true_step": float((obs[:, 1] - obs[:, 0]).norm(dim=-1).mean())}
    with torch.no_grad():
        eps_err = {}
        for t in sorted({0, 2, 5, n_levels // 2, n_levels - 1}):
            level = torch.full((obs.shape[0],), t, dtype=torch.long)
            noise = torch.randn(obs.shape, generator=gen)
            xt = planner.diffusion.q_sample(obs, level, noise)
            xt[:, 0] = obs[:, 0]
            eps_err[t] = float(((planner.denoiser(xt, level, cond) - noise)[:, 1:] ** 2).mean())
        out["eps_mse_by_level"] = eps_err
        plan_err = {}
        steps = len(planner.sampler.timesteps)
        for start in sorted({0, steps // 2, steps - 2}):
            inpaint = planner.condition(obs.shape, obs[:, :1])
            x_init = planner.renoise(obs, start, gen) if start else None
            plans = planner.plan(obs.shape[0], inpaint, cond=cond, denoiser=ClassifierFreeGuidance(planner.denoiser, 1.0),
                                 generator=gen, x_init=x_init, start_index=start)
            plan_err[int(planner.sampler.timesteps[start])] = float((plans[:, 1] - obs[:, 1]).norm(dim=-1).mean())
        out["next_state_error_by_start_level"] = plan_err
        out["inverse_dynamics_mse"] = float(agent.inverse_dynamics_loss(batch))
        acts = batch["actions"][:, :-1].reshape(-1, agent.act_dim)
        out["action_variance"] = float(acts.var(0).mean())
    args.out.with_suffix(".json").write_text(json.dumps(out, indent=1))
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
