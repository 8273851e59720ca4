"""Retrain the SB3 SAC behaviour policies used by the dataset recipes.

Usage (1 thread; the Pendulum run takes a few minutes, the MuJoCo runs 35-45 CPU-minutes each)::

    OMP_NUM_THREADS=1 python -m diffagents.data.recipes.train_behaviour pendulum
    OMP_NUM_THREADS=1 python -m diffagents.data.recipes.train_behaviour hopper [--steps 150000] [--out DIR]

Outputs in ``--out`` (default: the package's ``recipes/weights`` for pendulum, else
``$DIFFAGENTS_BEHAVIOUR_DIR`` / ``~/.cache/diffagents/behaviour``):

* ``<env>_medium.safetensors/.json``: the medium policy (pendulum: the snapshot whose 10-episode deterministic
  return lies in ``MEDIUM_BAND`` closest to its middle; MuJoCo: the best-evaluated snapshot);
* ``<env>_expert.safetensors/.json`` (pendulum only): the final policy;
* ``<env>_replay.npz``: the replay buffer up to the medium snapshot (MuJoCo; D4RL 'medium-replay') or the whole
  run (pendulum 'replay'), actions in env units, float32, compressed.
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from diffagents.core.agent_io import from_unit
from diffagents.data.recipes.base import evaluate_gym
from diffagents.data.recipes.behaviour import PACKAGE_WEIGHTS, MLPActor, save_actor, user_weights_dir


@dataclass(frozen=True)
class TrainConfig:
    """One behaviour-training setup."""

    env_id: str
    steps: int
    snapshot_every: int
    eval_episodes: int
    medium_band: tuple[float, float] | None  # pendulum: pick a snapshot in this return band; None: best snapshot
    save_expert: bool


CONFIGS: dict[str, TrainConfig] = {
    "pendulum": TrainConfig("Pendulum-v1", 12_000, 250, 10, (-800.0, -400.0), True),
    "hopper": TrainConfig("Hopper-v5", 150_000, 10_000, 5, None, False),
    "halfcheetah": TrainConfig("HalfCheetah-v5", 150_000, 10_000, 5, None, False),
    "walker2d": TrainConfig("Walker2d-v5", 150_000, 10_000, 5, None, False),
}
EVAL_SEED = 1_000


def _actor_from_state(model: Any, state: dict[str, torch.Tensor]) -> MLPActor:
    space = model.action_space
    hidden = [int(v.shape[0]) for k, v in state.items() if k.startswith("latent_pi.") and k.endswith(".weight")]
    actor = MLPActor(int(state["latent_pi.0.weight"].shape[1]), int(state["mu.weight"].shape[0]), hidden,
                     space.low, space.high)
    actor.load_state_dict(state, strict=False)
    return actor.eval()


def _replay_arrays(model: Any, upto: int) -> dict[str, np.ndarray]:
    """First ``upto`` transitions of the SB3 buffer, actions mapped back from [-1, 1] to env units.

    Stored compactly: ``next_observations`` only where an episode ends (or the buffer stops), since elsewhere
    it equals the next row's observation (:func:`~diffagents.data.recipes.behaviour.expand_replay` restores the full array).
    """
    rb = model.replay_buffer
    n = min(upto, rb.buffer_size if rb.full else rb.pos)
    low, high = model.action_space.low, model.action_space.high
    act = from_unit(rb.actions[:n, 0], low, high)
    dones = rb.dones[:n, 0].astype(bool)
    timeouts = rb.timeouts[:n, 0].astype(bool)
    ends = np.flatnonzero(dones | (np.arange(n) == n - 1))
    return {
        "observations": rb.observations[:n, 0].astype(np.float32),
        "final_next_observations": rb.next_observations[ends, 0].astype(np.float32),
        "actions": act.astype(np.float32), "rewards": rb.rewards[:n, 0].astype(np.float32),
        "terminations": dones & ~timeouts, "truncations": dones & timeouts,
    }


def train(name: str, steps: int | None = None, out: Path | None = None, seed: int = 0) -> dict[str, Any]:
    """Train SAC for ``name`` and write the behaviour files (see the module docstring).

    Returns:
        The JSON summary that is also written next to the weights.
    """
    from stable_baselines3 import SAC
    from stable_baselines3.common.callbacks import BaseCallback

    torch.set_num_threads(1)
    cfg = CONFIGS[name]
    total = steps or cfg.steps
    target = out or (PACKAGE_WEIGHTS if name == "pendulum" else user_weights_dir())
    snapshots: list[tuple[int, dict[str, torch.Tensor]]] = []

    class Snapshot(BaseCallback):
        def _on_step(self) -> bool:
            if self.num_timesteps % cfg.snapshot_every == 0:
                actor = self.model.actor  # type: ignore[attr-defined]
                state = {k: v.detach().clone() for k, v in actor.state_dict().items()
                         if k.startswith(("latent_pi.", "mu."))}
                snapshots.append((self.num_timesteps, state))
            return True

    model = SAC("MlpPolicy", cfg.env_id, seed=seed, device="cpu", verbose=0)
    t0 = time.perf_counter()
    model.learn(total_timesteps=total, callback=Snapshot())
    train_s = time.perf_counter() - t0
    if not snapshots or snapshots[-1][0] != model.num_timesteps:  # always keep the final policy
        snapshots.append((model.num_timesteps, {k: v.detach().clone() for k, v in model.actor.state_dict().items()
                                                if k.startswith(("latent_pi.", "mu."))}))
    env = gym.make(cfg.env_id)
    evals = []
    for step, state in snapshots:
        actor = _actor_from_state(model, state)
        mean, std = evaluate_gym(env, actor.act, cfg.eval_episodes, EVAL_SEED)
        evals.append({"step": step, "return_mean": mean, "return_std": std})
    if cfg.medium_band is not None:
        lo, hi = cfg.medium_band
        inside = [e for e in evals if lo <= e["return_mean"] <= hi] or evals
        medium = min(inside, key=lambda e: abs(e["return_mean"] - (lo + hi) / 2))
    else:
        medium = max(evals, key=lambda e: e["return_mean"])
    command = f"OMP_NUM_THREADS=1 python -m diffagents.data.recipes.train_behaviour {name} --steps {total} --seed {seed}"
    info = {"env_id": cfg.env_id, "algorithm": "stable_baselines3.SAC (MlpPolicy, defaults)", "seed": seed,
            "train_steps": total, "train_seconds": round(train_s, 1), "command": command,
            "snapshot_evals": evals, "eval_episodes": cfg.eval_episodes, "eval_seed": EVAL_SEED}
    medium_state = dict(snapshots[[e["step"] for e in evals].index(medium["step"])][1])
    model.actor.load_state_dict(medium_state, strict=False)
    save_actor(model.actor, target / f"{name}_medium.safetensors", {**info, "snapshot": medium})
    if cfg.save_expert:
        final = copy.deepcopy(snapshots[-1])
        model.actor.load_state_dict(final[1], strict=False)
        save_actor(model.actor, target / f"{name}_expert.safetensors", {**info, "snapshot": evals[-1]})
    upto = total if cfg.save_expert else int(medium["step"])
    arrays: dict[str, Any] = _replay_arrays(model, upto)
    np.savez_compressed(target / f"{name}_replay.npz", **arrays)
    summary = {**info, "medium": medium, "replay_steps": upto}
    with open(target / f"{name}_training.json", "w") as f:
        json.dump(summary, f, indent=1)
    return summary


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("env", choices=sorted(CONFIGS))
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    summary = train(args.env, steps=args.steps, out=args.out, seed=args.seed)
    print(json.dumps({k: v for k, v in summary.items() if k != "snapshot_evals"}, indent=1))


if __name__ == "__main__":
    main()
