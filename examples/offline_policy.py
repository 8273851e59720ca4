"""Offline training of a diffusion policy (Diffusion-QL or IDQL) with SB3 callbacks.

    python examples/offline_policy.py --algo diffusionql --steps 20000
    python examples/offline_policy.py --smoke        # tiny budget, used by the test suite
"""

from __future__ import annotations

import argparse
import tempfile

import gymnasium as gym
import torch
from stable_baselines3.common.callbacks import CheckpointCallback, EvalCallback, StopTrainingOnRewardThreshold
from stable_baselines3.common.monitor import Monitor

from diffagents.agents import get_agent_class
from diffagents.data import make_dataset, reference_scores
from diffagents.data.safe_env import make_env_from_dataset
from diffagents.evaluation import evaluate_agent


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--algo", default="diffusionql", choices=["diffusionql", "idql"])
    p.add_argument("--dataset", default="diffagents/pendulum/expert-v0")
    p.add_argument("--steps", type=int, default=20_000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--smoke", action="store_true", help="tiny networks and budget")
    args = p.parse_args()
    torch.set_num_threads(1)

    size = 2_000 if args.smoke else None
    ds = make_dataset(args.dataset, size=size)
    env = make_env_from_dataset(ds)
    small = dict(batch_size=32, n_candidates=4) if args.smoke else {}
    if args.smoke:
        small |= dict(hidden=(32, 32), critic_hidden=(32, 32)) if args.algo == "diffusionql" else \
            dict(actor_width=32, actor_blocks=1, critic_hidden=(32, 32))
    agent = get_agent_class(args.algo)(env=env, dataset=ds, seed=args.seed, verbose=0, **small)
    steps = 40 if args.smoke else args.steps
    out = tempfile.mkdtemp(prefix="diffagents_")
    eval_env = Monitor(gym.make(env.spec.id if env.spec else "Pendulum-v1"))
    callbacks = [
        EvalCallback(eval_env, n_eval_episodes=2 if args.smoke else 5, eval_freq=max(steps // 4, 1),
                     best_model_save_path=out, callback_on_new_best=StopTrainingOnRewardThreshold(-150.0)),
        CheckpointCallback(save_freq=max(steps // 2, 1), save_path=out, name_prefix=args.algo),
    ]
    agent.learn(steps, callback=callbacks, progress_bar=not args.smoke)
    res = evaluate_agent(agent, env, n_episodes=2 if args.smoke else 20, seed=123, ref_scores=reference_scores(ds))
    print(f"{type(agent).__name__} after {agent.num_timesteps} gradient steps: {res.summary()} (checkpoints in {out})")


if __name__ == "__main__":
    main()
