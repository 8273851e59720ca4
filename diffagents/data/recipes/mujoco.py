"""``diffagents/{hopper,halfcheetah,walker2d}/{random,medium,medium-replay}-v0`` (MuJoCo v5, reduced D4RL).

* random: uniform actions (1M steps by default, as D4RL).
* medium: 1M steps of the SB3 SAC 'medium' policy (the best-evaluated snapshot of a 150k-step SAC run) with
  N(0, 0.1 x half-range) action noise.
* medium-replay: that SAC run's replay buffer up to the medium snapshot (the default size means "all of it").

The behaviour policy costs 35-45 CPU-minutes per env, so the Hopper and HalfCheetah ones ship with the package
(``recipes/weights``: the medium actor as safetensors + JSON, the replay buffer as a compact npz) and their
datasets regenerate by rollout alone. Walker2d's is not shipped: the first ``make_dataset("walker2d/medium-v0")``
(or ``medium-replay``) trains it. Retrain any of them with
``OMP_NUM_THREADS=1 python -m diffagents.data.recipes.train_behaviour <env>``; files go to
``$DIFFAGENTS_BEHAVIOUR_DIR`` (default ``~/.cache/diffagents/behaviour``), which is searched before the package.

Reference scores are D4RL's published ones (random and expert policies of the v2 datasets), so normalized
scores are on the familiar D4RL scale (the v5 envs differ slightly from the v2-era v3 envs).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import gymnasium as gym
import numpy as np

from diffagents.data.recipes.base import EpisodeRecorder, Recipe, RecipeOutput, register, rollout_gym
from diffagents.data.recipes.behaviour import find_file, load_actor
from diffagents.data.recipes.pendulum import noisy_actor_policy, replay_recorder, uniform_policy

ENVS = {"hopper": "Hopper-v5", "halfcheetah": "HalfCheetah-v5", "walker2d": "Walker2d-v5"}
D4RL_REF_SCORES = {"hopper": (-20.272305, 3234.3), "halfcheetah": (-280.178953, 12135.0),
                   "walker2d": (1.629008, 4592.3)}
NOISE = 0.1
REPLAY_DEFAULT = 150_000  # "all of the stored buffer"


def ensure_behaviour(name: str) -> None:
    """Train the SAC behaviour policy of ``name`` if its files are missing (35-45 CPU-minutes)."""
    if find_file(f"{name}_medium.safetensors") is not None and find_file(f"{name}_replay.npz") is not None:
        return
    from diffagents.data.recipes.train_behaviour import train

    warnings.warn(
        f"training the {name} SAC behaviour policy (35-45 CPU-minutes); run `OMP_NUM_THREADS=1 python -m "
        f"diffagents.data.recipes.train_behaviour {name}` to do it ahead of time", UserWarning, stacklevel=3,
    )
    train(name)


def _output(name: str, rec: EpisodeRecorder, algorithm: str, how: str) -> RecipeOutput:
    lo, hi = D4RL_REF_SCORES[name]
    return RecipeOutput(
        buffers=rec.buffers, algorithm_name=algorithm, env=ENVS[name], eval_env=ENVS[name],
        ref_min_score=lo, ref_max_score=hi, metadata=rec.stats(),
        description=f"{ENVS[name]}. {how} Behaviour return {rec.summary()}. Reference scores: D4RL's published "
        f"random (min) and expert (max) returns for {name}.",
    )


def _builder(name: str, kind: str) -> Callable[[int, int], RecipeOutput]:
    def build(size: int, seed: int) -> RecipeOutput:
        if kind == "random":
            env = gym.make(ENVS[name])
            rec = EpisodeRecorder(size)
            rollout_gym(env, uniform_policy(env.action_space, np.random.default_rng(seed)), rec, seed)
            return _output(name, rec, "uniform-random", "Uniform random actions.")
        ensure_behaviour(name)
        _, info = load_actor(f"{name}_medium")
        trained = (f"SB3 SAC ({info.get('train_steps')} steps, {info.get('train_seconds')} s on 1 CPU thread; "
                   f"medium snapshot at step {info.get('snapshot', {}).get('step')} with eval return "
                   f"{info.get('snapshot', {}).get('return_mean', float('nan')):.1f}; retrain: {info.get('command')}).")
        if kind == "medium-replay":
            rec = replay_recorder(f"{name}_replay.npz", None if size == REPLAY_DEFAULT else size)
            return _output(name, rec, "sac-medium-replay", f"Replay buffer up to the medium policy of {trained}")
        env = gym.make(ENVS[name])
        rec = EpisodeRecorder(size)
        rollout_gym(env, noisy_actor_policy(f"{name}_medium", np.random.default_rng(seed), NOISE), rec, seed)
        return _output(name, rec, "sac-medium", f"Medium policy of {trained} N(0, {NOISE} x half-range) noise.")

    return build


for _name in ENVS:
    for _kind, _size in (("random", 1_000_000), ("medium", 1_000_000), ("medium-replay", REPLAY_DEFAULT)):
        register(Recipe(f"diffagents/{_name}/{_kind}-v0", f"{ENVS[_name]}, {_kind} (reduced D4RL)", _size,
                        _builder(_name, _kind)))
