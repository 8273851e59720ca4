"""``diffagents/pendulum/{random,medium,expert,replay}-v0`` on Pendulum-v1 (SB3 SAC behaviour policies).

* random: uniform actions.
* medium: an early SAC snapshot (10-episode return in [-800, -400]) with N(0, 0.1 * half-range) action noise.
* expert: the final SAC policy (12k steps) with the same noise.
* replay: the SAC run's replay buffer (every transition collected during training).

The policies are committed as ``recipes/weights/pendulum_*.safetensors`` (+ JSON) and the buffer as
``pendulum_replay.npz``; retrain with ``python -m diffagents.data.recipes.train_behaviour pendulum``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np

from diffagents.data.errors import DataError
from diffagents.data.recipes.base import (
    EpisodeRecorder,
    Recipe,
    RecipeOutput,
    evaluate_gym,
    register,
    rollout_gym,
)
from diffagents.data.recipes.behaviour import expand_replay, find_file, load_actor

ENV_ID = "Pendulum-v1"
NOISE = 0.1  # std of Gaussian action noise, as a fraction of the half action range
REF_EPISODES = 100
REF_SEED = 10_000
REPLAY_DEFAULT = 12_000  # "all of the stored buffer"
# Measured with recompute_reference_scores() (100 episodes, seeds 10000-10099): uniform random and the
# noise-free expert policy.
REF_MIN_SCORE = -1182.32
REF_MAX_SCORE = -132.61


def noisy_actor_policy(name: str, rng: np.random.Generator, noise: float) -> Callable[[Any], np.ndarray]:
    """Deterministic stored actor plus Gaussian noise (``noise`` x half-range), clipped to the bounds."""
    actor, _ = load_actor(name)
    low, high = actor.low.numpy(), actor.high.numpy()
    half = (high - low) / 2.0

    def policy(obs: Any) -> np.ndarray:
        a = actor.act(obs)
        if noise > 0:
            a = a + rng.normal(0.0, noise, size=a.shape) * half
        return np.clip(a, low, high).astype(np.float32)

    return policy


def uniform_policy(space: gym.Space, rng: np.random.Generator) -> Callable[[Any], np.ndarray]:
    """Uniform random actions from ``rng`` for a Box action space."""
    assert isinstance(space, gym.spaces.Box), f"action_space: expected a Box, got {space}"
    low, high, dtype = space.low, space.high, space.dtype
    return lambda _: rng.uniform(low, high).astype(dtype)


def replay_recorder(npz_name: str, size: int | None) -> EpisodeRecorder:
    """Episodes of a stored SB3 replay buffer (split at terminations/truncations), first ``size`` steps."""
    path = find_file(npz_name)
    if path is None:
        raise DataError(f"replay buffer {npz_name!r}: expected a file from train_behaviour, got nothing")
    with np.load(path) as z:
        data = expand_replay({k: z[k] for k in z.files})
    n = len(data["rewards"])
    if size is not None and size > n:
        raise DataError(f"size: expected at most {n} steps for the stored replay buffer, got {size}")
    rec = EpisodeRecorder(size or n)
    ends = np.flatnonzero(data["terminations"] | data["truncations"]) + 1
    starts = np.concatenate([[0], ends])
    stops = np.concatenate([ends, [n]])
    for s, e in zip(starts, stops):  # one iteration per episode
        if e <= s or rec.full:
            continue
        obs = np.concatenate([data["observations"][s:e], data["next_observations"][e - 1 : e]])
        rec.add(obs, data["actions"][s:e], data["rewards"][s:e], data["terminations"][s:e], data["truncations"][s:e])
    return rec


def recompute_reference_scores(episodes: int = REF_EPISODES) -> tuple[float, float]:
    """(uniform random, noise-free expert) mean returns on Pendulum-v1."""
    env = gym.make(ENV_ID)
    lo, _ = evaluate_gym(env, uniform_policy(env.action_space, np.random.default_rng(REF_SEED)), episodes, REF_SEED)
    hi, _ = evaluate_gym(env, noisy_actor_policy("pendulum_expert", np.random.default_rng(0), 0.0), episodes, REF_SEED)
    return lo, hi


def _output(rec: EpisodeRecorder, algorithm: str, how: str) -> RecipeOutput:
    return RecipeOutput(
        buffers=rec.buffers, algorithm_name=algorithm, env=ENV_ID, eval_env=ENV_ID,
        ref_min_score=REF_MIN_SCORE, ref_max_score=REF_MAX_SCORE, metadata=rec.stats(),
        description=f"Pendulum-v1. {how} Behaviour return {rec.summary()}. Reference scores: uniform random "
        f"(min) and the noise-free SAC expert (max), {REF_EPISODES} episodes each.",
    )


def _build_policy(kind: str) -> Callable[[int, int], RecipeOutput]:
    def build(size: int, seed: int) -> RecipeOutput:
        env = gym.make(ENV_ID)
        rng = np.random.default_rng(seed)
        rec = EpisodeRecorder(size)
        if kind == "random":
            rollout_gym(env, uniform_policy(env.action_space, rng), rec, seed)
            return _output(rec, "uniform-random", "Uniform random actions.")
        _, info = load_actor(f"pendulum_{kind}")
        rollout_gym(env, noisy_actor_policy(f"pendulum_{kind}", rng, NOISE), rec, seed)
        snap = info.get("snapshot", {})
        how = (f"SB3 SAC {kind} policy (snapshot at {snap.get('step')} of {info.get('train_steps')} training "
               f"steps, {info.get('train_seconds')} s on 1 CPU thread, eval return "
               f"{snap.get('return_mean', float('nan')):.1f}) with N(0, {NOISE} x half-range) action noise. "
               f"Retrain: {info.get('command')}.")
        return _output(rec, f"sac-{kind}", how)

    return build


def build_replay(size: int, seed: int) -> RecipeOutput:
    rec = replay_recorder("pendulum_replay.npz", None if size == REPLAY_DEFAULT else size)
    return _output(rec, "sac-replay", "Replay buffer of the SB3 SAC training run (all collected transitions).")


for _kind, _summary in (("random", "uniform random"), ("medium", "early SAC snapshot + noise"),
                        ("expert", "final SAC policy + noise")):
    register(Recipe(f"diffagents/pendulum/{_kind}-v0", f"Pendulum-v1, {_summary}", 100_000, _build_policy(_kind)))
register(Recipe("diffagents/pendulum/replay-v0", "Pendulum-v1, SAC replay buffer", REPLAY_DEFAULT, build_replay))
